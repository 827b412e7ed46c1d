package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"herald.dev/platform/sqldb/sqldbtest"
)

// buildHerald builds the herald binary the bench spawns as its server.
func buildHerald(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "herald")
	out, err := exec.Command("go", "build", "-o", bin, "herald.dev/cmd/herald").CombinedOutput()
	if err != nil {
		t.Fatalf("build herald: %v\n%s", err, out)
	}
	return bin
}

// serverScenarios are the scenarios that run against Herald itself.
var serverScenarios = []string{"accept", "rate10k", "e2e5k", "priority"}

// smokeOptions are tiny phases of the given scenarios.
func smokeOptions(t *testing.T, out *bytes.Buffer, scenarios ...string) Options {
	return Options{
		Binary: buildHerald(t), Scenarios: scenarios,
		Duration: time.Second, Concurrency: 16, GroupSize: 2000, HighRate: 50, Users: 100, Out: out,
	}
}

// checkServerFigures fails unless every figure of the server scenarios is
// in the report.
func checkServerFigures(t *testing.T, rep *Report, out *bytes.Buffer) {
	t.Helper()
	if rep.Accept == nil || rep.Accept.OK == 0 || rep.Accept.Errors != 0 {
		t.Fatalf("accept phase: %+v\n%s", rep.Accept, out)
	}
	if rep.Rate10k == nil || rep.Rate10k.OK == 0 || rep.Rate10k.Target != 10000 {
		t.Fatalf("rate10k: %+v\n%s", rep.Rate10k, out)
	}
	if rep.Rate5k == nil || rep.Rate5k.OK == 0 || rep.E2E5k["medium"].Count != rep.Rate5k.OK {
		t.Fatalf("e2e5k: %+v, hand-offs %+v\n%s", rep.Rate5k, rep.E2E5k, out)
	}
	if rep.Priority == nil || rep.Priority.Delivered != 2000 || rep.Priority.High.Count == 0 ||
		rep.Priority.FanoutPerSecond <= 0 || rep.Priority.CPUPerDeliveryUS <= 0 {
		t.Fatalf("priority: %+v\n%s", rep.Priority, out)
	}
	if rep.Disk == nil || rep.Disk.Fsync.Count != diskRounds {
		t.Fatalf("idle disk probe: %+v", rep.Disk)
	}
	if rep.DiskE2E5k == nil || rep.DiskE2E5k.Fsync.Count == 0 {
		t.Fatalf("disk probe during e2e5k: %+v", rep.DiskE2E5k)
	}
	if rep.CPUPerAcceptUS <= 0 || rep.PeakRSSMB <= 0 {
		t.Fatalf("server CPU %v µs per accept, peak RSS %v MB", rep.CPUPerAcceptUS, rep.PeakRSSMB)
	}
	left, _ := filepath.Glob(filepath.Join(os.TempDir(), "herald-bench-fsync-*"))
	if len(left) != 0 {
		t.Fatalf("disk probe files left behind: %v", left)
	}
}

// TestRunSmoke runs the bench end to end on embedded SQLite with tiny
// phases: the bare baseline, a real server, the app, the users, every
// scenario including a group fan-out, and every figure of the report filled
// in.
func TestRunSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a server")
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, smokeOptions(t, &out, append([]string{"baseline"}, serverScenarios...)...))
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if rep.Baseline == nil || rep.Baseline.OK == 0 || rep.Ratio <= 0 {
		t.Fatalf("baseline %+v, accept/baseline ratio %v", rep.Baseline, rep.Ratio)
	}
	checkServerFigures(t, rep, &out)
	if self, _ := ReadProc(os.Getpid()); self.WriteCalls > 0 && rep.ServerWriteKB["accept"] <= 0 {
		// /proc/<pid>/io is readable here, so the server's writes count
		// (unless its directory is on tmpfs, which counts none).
		if fs, _ := exec.Command("stat", "-f", "-c", "%T", os.TempDir()).Output(); !bytes.Contains(fs, []byte("tmpfs")) {
			t.Fatalf("no storage writes recorded for the accept phase: %v", rep.ServerWriteKB)
		}
	}
}

// TestRunOnMySQL runs every server scenario on MariaDB, checks every
// figure, the database server's CPU beside the server's, and that the
// run's database is gone afterwards.
func TestRunOnMySQL(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a server")
	}
	base := sqldbtest.MySQLURL(t) // skips without MariaDB, like the rest of the MySQL half
	before := len(benchDatabases(t, base))
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	o := smokeOptions(t, &out, serverScenarios...)
	o.DatabaseURL = base
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	checkServerFigures(t, rep, &out)
	if after := len(benchDatabases(t, base)); after != before {
		t.Fatalf("%d bench databases before the run, %d after", before, after)
	}
	// The database server's CPU is reported when this process can see it.
	var why bytes.Buffer
	if (&Options{DatabaseURL: base, Out: &why}).databasePID() == 0 {
		t.Logf("database CPU not checked: %s", why.String())
		return
	}
	if rep.DBCPUPerAcceptUS <= 0 || rep.DatabaseCPU["accept"] <= 0 || rep.Priority.DBCPUPerDeliveryUS <= 0 {
		t.Fatalf("database CPU %.1f µs per accept, %.1f %% during the phase, %.1f µs per delivery; want all > 0\n%s",
			rep.DBCPUPerAcceptUS, rep.DatabaseCPU["accept"], rep.Priority.DBCPUPerDeliveryUS, out.String())
	}
}

// TestRunProfiles: --profile writes the server's CPU profile of a phase,
// gzip-compressed as pprof serves it.
func TestRunProfiles(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a server")
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	o := smokeOptions(t, &out, "accept")
	o.ProfileDir = t.TempDir()
	if _, err := Run(ctx, o); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	b, err := os.ReadFile(filepath.Join(o.ProfileDir, "accept-00.pprof"))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 100 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("accept-00.pprof: %d bytes, not a gzip-compressed profile", len(b))
	}
}

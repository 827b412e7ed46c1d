package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// Run executes the selected scenarios and returns the report.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		o.Binary = exe
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 64
	}
	if o.GroupSize <= 0 {
		o.GroupSize = 1_000_000
	}
	if o.HighRate <= 0 {
		o.HighRate = 1000
	}
	if o.Users <= 0 {
		o.Users = 1000
	}
	db := "embedded SQLite"
	if o.DatabaseURL != "" {
		db = "MariaDB " + o.DatabaseURL
	}
	rep := &Report{Machine: machine(), Database: db, Date: time.Now().UTC().Format(time.RFC3339), ServerCPU: map[string]float64{}}
	o.logf("# herald bench: %s on %s", db, rep.Machine)

	if has(o.Scenarios, "baseline") {
		r, err := o.baseline(ctx)
		if err != nil {
			return rep, fmt.Errorf("baseline: %w", err)
		}
		rep.Baseline = &r
		o.logf("baseline (bare fiber, closed loop c=%d, %s): %s", o.Concurrency, o.Duration, r)
	}

	needServer := has(o.Scenarios, "accept") || has(o.Scenarios, "rate10k") || has(o.Scenarios, "e2e5k") || has(o.Scenarios, "priority")
	if !needServer {
		return rep, nil
	}
	// The server's data directory is made under os.TempDir (startHerald);
	// with MariaDB this is the bench's disk, not necessarily the database's.
	if d, err := DiskSync(ctx, os.TempDir(), diskRounds, 0); err != nil {
		o.logf("%v", err)
	} else {
		rep.Disk = &DiskResult{Dir: os.TempDir(), Fsync: d}
		o.logf("disk under %s, idle: %s", rep.Disk.Dir, rep.Disk)
	}
	s, err := o.startHerald(ctx)
	if err != nil {
		return rep, err
	}
	defer s.stop(o.KeepDir)
	if err := s.importUsers(o.Users, ""); err != nil {
		return rep, err
	}
	pid := s.cmd.Process.Pid
	dbPid := o.databasePID()
	// measure runs a phase and returns the server's CPU time and storage
	// writes (bytes) during it, and the database server's CPU time.
	measure := func(name string, f func() error) (time.Duration, int64, time.Duration, error) {
		before, _ := ReadProc(pid)
		dbBefore := readDB(dbPid)
		t := time.Now()
		stopProfile := s.profile(o.ProfileDir, name)
		err := f()
		after, _ := ReadProc(pid)
		dbAfter := readDB(dbPid)
		if perr := stopProfile(); perr != nil {
			o.logf("%s: %v", name, perr)
		}
		wall := time.Since(t)
		rep.ServerCPU[name] = CPUPercent(before, after, wall)
		if dbPid > 0 {
			if rep.DatabaseCPU == nil {
				rep.DatabaseCPU = map[string]float64{}
			}
			rep.DatabaseCPU[name] = CPUPercent(dbBefore, dbAfter, wall)
		}
		rep.PeakRSSMB = float64(after.PeakKB) / 1024
		return after.CPU - before.CPU, after.WriteBytes - before.WriteBytes, dbAfter.CPU - dbBefore.CPU, err
	}
	// perNotification records a phase's storage writes per notification.
	perNotification := func(name string, n uint64, written int64) {
		if n > 0 && written > 0 {
			if rep.ServerWriteKB == nil {
				rep.ServerWriteKB = map[string]float64{}
			}
			rep.ServerWriteKB[name] = float64(written) / 1024 / float64(n)
			o.logf("%s: server wrote %.1f KiB to storage per notification", name, rep.ServerWriteKB[name])
		}
	}
	var handed uint64
	if has(o.Scenarios, "accept") {
		cpu, written, dbCPU, err := measure("accept", func() error {
			r := ClosedLoop(ctx, NewClient(s.addr, s.key, o.Concurrency), "/v1/notifications", sendBody(o.Users, "medium"), o.Concurrency, o.Duration)
			rep.Accept = &r
			o.logf("accept max (closed loop c=%d, %s): %s", o.Concurrency, o.Duration, r)
			handed += r.OK
			_, err := s.drain(handed, 5*time.Minute)
			return err
		})
		if err != nil {
			return rep, err
		}
		perNotification("accept", rep.Accept.OK, written)
		if rep.Accept.OK > 0 {
			rep.CPUPerAcceptUS = float64(cpu.Microseconds()) / float64(rep.Accept.OK)
			o.logf("server CPU per accepted notification (accepted and dispatched): %.0f µs", rep.CPUPerAcceptUS)
			if dbPid > 0 {
				rep.DBCPUPerAcceptUS = float64(dbCPU.Microseconds()) / float64(rep.Accept.OK)
				o.logf("database server CPU per accepted notification: %.0f µs", rep.DBCPUPerAcceptUS)
			}
		}
		if rep.Baseline != nil && rep.Baseline.Rate > 0 {
			rep.Ratio = rep.Accept.Rate / rep.Baseline.Rate
			o.logf("accept rate = %.2f × the bare-fiber baseline", rep.Ratio)
		}
	}
	openLoop := func(name string, rate float64) (*Result, map[string]Summary, error) {
		var res Result
		var st benchStats
		_, written, _, err := measure(name, func() error {
			if err := s.reset(); err != nil {
				return err
			}
			res = OpenLoop(ctx, NewClient(s.addr, s.key, 512), "/v1/notifications", sendBody(o.Users, "medium"), rate, o.Duration, 512)
			var err error
			st, err = s.drain(res.OK, 5*time.Minute)
			return err
		})
		o.logf("%s (open loop %.0f/s, %s): %s", name, rate, o.Duration, res)
		perNotification(name, res.OK, written)
		o.logf("%s end to end (request scheduled → adapter hand-off): p50 %.2f ms p99 %.2f ms p99.9 %.2f ms (%d hand-offs)",
			name, st.E2E["medium"].P50, st.E2E["medium"].P99, st.E2E["medium"].P999, st.E2E["medium"].Count)
		return &res, st.E2E, err
	}
	if has(o.Scenarios, "rate10k") {
		r, e2e, err := openLoop("rate10k", 10000)
		rep.Rate10k, rep.E2E10k = r, e2e
		if err != nil {
			return rep, err
		}
	}
	if has(o.Scenarios, "e2e5k") {
		// The disk probe runs alongside the phase's load (and its drain).
		pctx, stopProbe := context.WithCancel(ctx)
		type probed struct {
			d   Summary
			err error
		}
		probe := make(chan probed, 1)
		go func() {
			d, err := DiskSync(pctx, os.TempDir(), int(o.Duration/diskPause)+1, diskPause)
			probe <- probed{d, err}
		}()
		r, e2e, err := openLoop("e2e5k", 5000)
		stopProbe()
		if p := <-probe; p.err != nil {
			o.logf("%v", p.err)
		} else if p.d.Count > 0 {
			rep.DiskE2E5k = &DiskResult{Dir: os.TempDir(), Fsync: p.d}
			o.logf("disk during e2e5k: %s", rep.DiskE2E5k)
		}
		rep.Rate5k, rep.E2E5k = r, e2e
		if err != nil {
			return rep, err
		}
	}
	if has(o.Scenarios, "priority") {
		stopProfile := s.profile(o.ProfileDir, "priority")
		pr, err := o.priority(ctx, s, pid, dbPid)
		if perr := stopProfile(); perr != nil {
			o.logf("priority: %v", perr)
		}
		rep.Priority = pr
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func (o *Options) baseline(ctx context.Context) (Result, error) {
	addr, err := freeAddr()
	if err != nil {
		return Result{}, err
	}
	cmd := exec.CommandContext(ctx, o.Binary, "bench-baseline", "--addr", addr)
	if err := cmd.Start(); err != nil {
		return Result{}, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return Result{}, fmt.Errorf("baseline server did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ClosedLoop(ctx, NewClient(addr, "", o.Concurrency), "/v1/notifications", sendBody(o.Users, "medium"), o.Concurrency, o.Duration), nil
}

// priority imports a GroupSize-member group, sends one low-priority
// notification to it, and while it fans out streams high-priority sends at
// HighRate/s, measuring their end-to-end latency and the fan-out rate.
func (o *Options) priority(ctx context.Context, s *server, pid, dbPid int) (*PriorityResult, error) {
	pr := &PriorityResult{GroupSize: o.GroupSize}
	t := time.Now()
	o.logf("importing %d group members...", o.GroupSize)
	if err := s.importUsers(o.GroupSize, "everyone"); err != nil {
		return pr, err
	}
	pr.ImportSeconds = time.Since(t).Seconds()
	o.logf("imported in %.1f s", pr.ImportSeconds)
	if err := s.reset(); err != nil {
		return pr, err
	}
	// The fan-out's peak, not the import's or an earlier phase's (what
	// those left resident still counts).
	if err := ResetPeak(pid); err != nil {
		o.logf("%v: the peak RSS below covers the whole run", err)
	}
	cpu0, _ := ReadProc(pid)
	db0 := readDB(dbPid)
	body := `{"content":{"*":{"title":"Maintenance tonight","body":"The service will be down 02:00-03:00."}},"recipients":[{"group_id":"everyone"}],"channels":["bench"],"priority":"low","category":"ops"}`
	sendAt := time.Now()
	code, b, err := s.client.Do("POST", "/v1/notifications", []byte(body), "")
	if err != nil || code != 202 {
		return pr, fmt.Errorf("group send: %d %s %v", code, b, err)
	}
	// high-priority stream until the fan-out completes (bounded)
	hctx, stop := context.WithTimeout(ctx, 10*time.Minute)
	var wg sync.WaitGroup
	var high Result
	wg.Add(1)
	go func() {
		defer wg.Done()
		high = OpenLoop(hctx, NewClient(s.addr, s.key, 64), "/v1/notifications", sendBody(o.Users, "high"), o.HighRate, 10*time.Minute, 64)
	}()
	var st benchStats
	for {
		st, err = s.stats()
		if err != nil {
			break
		}
		// The high stream runs for at least one phase duration, so a small
		// group that fans out in a few milliseconds still has high sends
		// measured against it.
		done := st.Handoffs["low"] >= uint64(o.GroupSize) && time.Since(sendAt) >= o.Duration
		if done || time.Since(sendAt) > 10*time.Minute {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	wg.Wait()
	// Wait for the accepted high sends to be handed off too, so their
	// end-to-end figures are complete (the fan-out's end is the low
	// lane's last hand-off, LastBy["low"], whatever the stream did after).
	if err == nil {
		st, err = s.drainHandoffs(uint64(o.GroupSize)+high.OK, time.Minute)
	}
	if err != nil {
		o.logf("priority: %v", err)
		st, _ = s.stats()
	}
	pr.Delivered = st.Handoffs["low"]
	pr.FanoutSeconds = time.Unix(0, st.LastBy["low"]).Sub(sendAt).Seconds()
	if pr.FanoutSeconds > 0 {
		pr.FanoutPerSecond = float64(pr.Delivered) / pr.FanoutSeconds
	}
	pr.High = st.E2E["high"]
	pr.HighAPI = high.Latency.Summarize()
	ps, _ := ReadProc(pid)
	pr.PeakRSSMB = float64(ps.PeakKB) / 1024
	if pr.Delivered > 0 {
		pr.CPUPerDeliveryUS = float64((ps.CPU - cpu0.CPU).Microseconds()) / float64(pr.Delivered)
		if dbPid > 0 {
			pr.DBCPUPerDeliveryUS = float64((readDB(dbPid).CPU - db0.CPU).Microseconds()) / float64(pr.Delivered)
		}
	}
	o.logf("fan-out: %d deliveries in %.1f s = %.0f deliveries/s; server peak RSS %.0f MB, CPU %.1f µs per delivery",
		pr.Delivered, pr.FanoutSeconds, pr.FanoutPerSecond, pr.PeakRSSMB, pr.CPUPerDeliveryUS)
	if pr.DBCPUPerDeliveryUS > 0 {
		o.logf("fan-out: database server CPU %.1f µs per delivery", pr.DBCPUPerDeliveryUS)
	}
	o.logf("high priority at %.0f/s during the fan-out: end to end p50 %.2f ms p99 %.2f ms p99.9 %.2f ms (%d); api p99 %.2f ms",
		o.HighRate, pr.High.P50, pr.High.P99, pr.High.P999, pr.High.Count, pr.HighAPI.P99)
	if pr.Delivered < uint64(o.GroupSize) {
		return pr, fmt.Errorf("fan-out incomplete: %d of %d", pr.Delivered, o.GroupSize)
	}
	return pr, nil
}

// JSON renders the report.
func (r *Report) JSON() []byte {
	b, _ := json.MarshalIndent(r, "", "  ")
	return b
}

// databasePID is the process of the MariaDB server of --database-url when
// that server listens on this machine (a loopback host), else 0: its CPU
// is then reported beside the server's.
func (o *Options) databasePID() int {
	if o.DatabaseURL == "" {
		return 0
	}
	u, err := url.Parse(o.DatabaseURL)
	if err != nil {
		return 0
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		o.logf("database server at %s is not on this machine: its CPU is not measured", host)
		return 0
	}
	port := 3306
	if p, err := strconv.Atoi(u.Port()); err == nil {
		port = p
	}
	pid, err := ListenerPID(port)
	if err != nil {
		o.logf("database server CPU not measured: %v", err)
		return 0
	}
	o.logf("database server: pid %d, listening on port %d", pid, port)
	return pid
}

// readDB reads the database server's process (pid 0: nothing, zero stats).
func readDB(pid int) ProcStats {
	if pid <= 0 {
		return ProcStats{}
	}
	s, _ := ReadProc(pid)
	return s
}

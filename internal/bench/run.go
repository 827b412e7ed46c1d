package bench

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"herald.dev/platform/sqldb"
)

// Options select the scenarios and their sizes.
type Options struct {
	// Binary is the herald executable to spawn (default: this one).
	Binary string
	// DatabaseURL is empty for embedded SQLite, or a MySQL server URL whose
	// database part is replaced by a fresh database per run.
	DatabaseURL string
	Scenarios   []string // baseline, accept, rate10k, e2e5k, priority (includes fanout)
	Duration    time.Duration
	Concurrency int
	GroupSize   int
	HighRate    float64
	Users       int
	Out         io.Writer
	// KeepDir keeps the server's data directory.
	KeepDir bool
	// ProfileDir, when set, receives CPU profiles of the server for each
	// scenario (<scenario>-NN.pprof, 5-second slices), taken from its
	// /debug/pprof endpoint.
	ProfileDir string
}

// Report collects the figures of one run.
type Report struct {
	Machine  string             `json:"machine"`
	Database string             `json:"database"`
	Date     string             `json:"date"`
	Baseline *Result            `json:"baseline,omitempty"`
	Accept   *Result            `json:"accept_max,omitempty"`
	Ratio    float64            `json:"accept_vs_baseline,omitempty"`
	Rate10k  *Result            `json:"rate_10k,omitempty"`
	Rate5k   *Result            `json:"rate_5k,omitempty"`
	E2E10k   map[string]Summary `json:"e2e_at_10k,omitempty"`
	E2E5k    map[string]Summary `json:"e2e_at_5k,omitempty"`
	Priority *PriorityResult    `json:"priority,omitempty"`
	// Disk is the fsync latency of the disk under the server's data
	// directory, measured before the server starts; DiskE2E5k the same
	// during the e2e5k phase.
	Disk      *DiskResult        `json:"disk,omitempty"`
	DiskE2E5k *DiskResult        `json:"disk_during_e2e5k,omitempty"`
	ServerCPU map[string]float64 `json:"server_cpu_percent"`
	// CPUPerAcceptUS is the server's CPU time during the accept phase
	// (accepting and dispatching, until drained) per accepted notification:
	// steadier than rates on a shared machine when comparing two builds.
	CPUPerAcceptUS float64 `json:"server_cpu_us_per_accept,omitempty"`
	// ServerWriteKB is what the server wrote to storage per notification
	// accepted in each phase (write_bytes of /proc/<pid>/io, KiB): its
	// write-ahead log, checkpoints and analytics together.
	ServerWriteKB map[string]float64 `json:"server_write_kb_per_notification,omitempty"`
	PeakRSSMB     float64            `json:"server_peak_rss_mb"`
	// DatabaseCPU and DBCPUPerAcceptUS are the same CPU figures for the
	// database server's process, when it runs on this machine (MariaDB on
	// a loopback address, found by its listening port): on MariaDB it does
	// as much of the work per notification as Herald does.
	DatabaseCPU      map[string]float64 `json:"database_cpu_percent,omitempty"`
	DBCPUPerAcceptUS float64            `json:"database_cpu_us_per_accept,omitempty"`
}

// PriorityResult is the high-priority stream during a big low-priority fan-out.
type PriorityResult struct {
	GroupSize       int     `json:"group_size"`
	ImportSeconds   float64 `json:"import_seconds"`
	FanoutSeconds   float64 `json:"fanout_seconds"`
	FanoutPerSecond float64 `json:"fanout_deliveries_per_s"`
	Delivered       uint64  `json:"low_handoffs"`
	High            Summary `json:"high_e2e"`
	HighAPI         Summary `json:"high_api"`
	PeakRSSMB       float64 `json:"server_peak_rss_mb"`
	// CPUPerDeliveryUS is the server's CPU time from the group send to the
	// last hand-off per low-priority delivery (the high stream included).
	CPUPerDeliveryUS float64 `json:"server_cpu_us_per_delivery"`
	// DBCPUPerDeliveryUS is the database server's, when it is measured.
	DBCPUPerDeliveryUS float64 `json:"database_cpu_us_per_delivery,omitempty"`
}

type benchStats struct {
	Handoffs map[string]uint64  `json:"handoffs"`
	E2E      map[string]Summary `json:"e2e"`
	First    int64              `json:"first_unix_nano"`
	LastBy   map[string]int64   `json:"last_by_priority_unix_nano"`
	Busy     int                `json:"busy"`
}

type server struct {
	cmd    *exec.Cmd
	addr   string
	client *Client
	key    string
	dir    string
	// dropDB drops the run's MariaDB database (nil on SQLite).
	dropDB func() error
	logf   func(format string, args ...any)
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitReady(addr string, d time.Duration) error {
	c := NewClient(addr, "", 1)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if st, _, err := c.Do("GET", "/healthz", nil, ""); err == nil && st == 200 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("server on %s not ready after %s", addr, d)
}

func (o *Options) logf(format string, args ...any) {
	fmt.Fprintf(o.Out, format+"\n", args...)
}

// freshMySQL creates a database of its own for one bench run on the server
// of raw and returns its URL and a function that drops it again: each run
// leaves up to a few GB (a 1,000,000-member fan-out), so that they do not
// pile up in the server and its buffer pool.
func freshMySQL(raw string) (string, func() error, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", nil, err
	}
	name := fmt.Sprintf("herald_bench_%d", time.Now().UnixNano())
	u.Path = "/mysql"
	dsn, err := sqldb.MySQLDSN(u.String())
	if err != nil {
		return "", nil, err
	}
	admin := func(stmt string) error {
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = db.Exec(stmt)
		return err
	}
	if err := admin("CREATE DATABASE " + name + " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		return "", nil, fmt.Errorf("create bench database: %w", err)
	}
	drop := func() error {
		if err := admin("DROP DATABASE IF EXISTS " + name); err != nil {
			return fmt.Errorf("drop bench database %s: %w", name, err)
		}
		return nil
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

func (o *Options) startHerald(ctx context.Context) (*server, error) {
	dir, err := os.MkdirTemp("", "herald-bench-")
	if err != nil {
		return nil, err
	}
	dbURL := o.DatabaseURL
	var dropDB func() error
	if dbURL != "" {
		if dbURL, dropDB, err = freshMySQL(dbURL); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	started := false
	defer func() { // a server that did not start leaves nothing behind, unless kept
		if !started && !o.KeepDir {
			if dropDB != nil {
				_ = dropDB()
			}
			os.RemoveAll(dir)
		}
	}()
	common := []string{"--data-dir", dir}
	if dbURL != "" {
		common = append(common, "--database-url", dbURL)
	}
	out, err := exec.CommandContext(ctx, o.Binary, append([]string{"app", "create", "--name", "bench"}, common...)...).Output()
	if err != nil {
		return nil, fmt.Errorf("app create: %w", err)
	}
	var app struct {
		Key string `json:"api_key"`
	}
	if err := json.Unmarshal(out, &app); err != nil || app.Key == "" {
		return nil, fmt.Errorf("app create printed %q", out)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--addr", addr}, common...)
	cmd := exec.Command(o.Binary, args...)
	cmd.Env = append(os.Environ(), "HERALD_BENCH=1", "HERALD_LOG_LEVEL=warn")
	logFile, _ := os.Create(filepath.Join(dir, "server.log"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if err := waitReady(addr, 60*time.Second); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	started = true
	return &server{cmd: cmd, addr: addr, key: app.Key, dir: dir, dropDB: dropDB, logf: o.logf, client: NewClient(addr, app.Key, 8)}, nil
}

func (s *server) stop(keep bool) {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = s.cmd.Process.Kill()
		}
	}
	if keep {
		return
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
	if s.dropDB != nil {
		if err := s.dropDB(); err != nil {
			s.logf("%v", err)
		}
	}
}

func (s *server) stats() (benchStats, error) {
	var st benchStats
	code, body, err := s.client.Do("GET", "/debug/bench", nil, "")
	if err != nil {
		return st, err
	}
	if code != 200 {
		return st, fmt.Errorf("/debug/bench: HTTP %d (is HERALD_BENCH=1 honoured?)", code)
	}
	return st, json.Unmarshal(body, &st)
}

// profile profiles the server's CPU until the returned function is called
// and writes the profiles to dir/name-NN.pprof. With dir empty it does
// nothing.
func (s *server) profile(dir, name string) func() error {
	if dir == "" {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	stop := make(chan struct{})
	client := NewClient(s.addr, "", 1)
	go func() {
		// A pprof CPU profile covers a fixed number of seconds, so the
		// phase is profiled in 5-second slices (the last one may run past
		// its end); `go tool pprof` merges the files given together.
		var all [][]byte
		for {
			code, b, err := client.Do("GET", "/debug/pprof/profile?seconds=5", nil, "")
			if err != nil || code != 200 {
				done <- fmt.Errorf("cpu profile: %d %v", code, err)
				return
			}
			all = append(all, b)
			select {
			case <-stop:
				done <- writeProfiles(dir, name, all)
				return
			default:
			}
		}
	}()
	return func() error {
		close(stop)
		return <-done
	}
}

func writeProfiles(dir, name string, profiles [][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i, b := range profiles {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%02d.pprof", name, i)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (s *server) reset() error {
	_, _, err := s.client.Do("POST", "/debug/bench/reset", nil, "")
	return err
}

// importUsers creates n users (u0..u{n-1}); with group != "" they are members of it.
func (s *server) importUsers(n int, group string) error {
	if group != "" {
		body := fmt.Sprintf(`{"id":%q,"name":%q,"kind":"group"}`, group, group)
		if code, b, err := s.client.Do("POST", "/v1/groups", []byte(body), ""); err != nil || code >= 300 {
			return fmt.Errorf("create group: %d %s %v", code, b, err)
		}
	}
	const chunk = 100_000
	for start := 0; start < n; start += chunk {
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		for i := start; i < min(start+chunk, n); i++ {
			if group != "" {
				fmt.Fprintf(w, `{"id":"u%d","name":"User %d","groups":[%q]}`+"\n", i, i, group)
			} else {
				fmt.Fprintf(w, `{"id":"u%d","name":"User %d"}`+"\n", i, i)
			}
		}
		w.Flush()
		code, b, err := s.client.Do("POST", "/v1/users/import", buf.Bytes(), "application/x-ndjson")
		if err != nil || code >= 300 {
			return fmt.Errorf("import users: %d %s %v", code, b, err)
		}
	}
	return nil
}

// sendBody builds a send request to one of the users on the bench channel.
func sendBody(users int, priority string) BodyFunc {
	return func(buf []byte, seq int64, t time.Time) []byte {
		buf = append(buf, `{"content":{"*":{"title":"Order shipped","body":"Your order is on its way."}},"data":{"t0":"`...)
		buf = strconv.AppendInt(buf, t.UnixNano(), 10)
		buf = append(buf, `","order":"`...)
		buf = strconv.AppendInt(buf, seq, 10)
		buf = append(buf, `"},"recipients":[{"user_id":"u`...)
		buf = strconv.AppendInt(buf, seq%int64(users), 10)
		buf = append(buf, `"}],"channels":["bench"],"priority":"`...)
		buf = append(buf, priority...)
		buf = append(buf, `","category":"orders"}`...)
		return buf
	}
}

// drain waits until the server has handed off want deliveries in total (or
// stalls), then until it holds no more work (completions, delivery rows,
// analytics events: at most a minute), so the next phase starts on a quiet
// server.
func (s *server) drain(want uint64, limit time.Duration) (benchStats, error) {
	st, err := s.drainHandoffs(want, limit)
	if err != nil {
		return st, err
	}
	for quiet := time.Now().Add(time.Minute); st.Busy > 0 && time.Now().Before(quiet); {
		time.Sleep(100 * time.Millisecond)
		next, err := s.stats()
		if err != nil {
			return st, err
		}
		st.Busy = next.Busy
	}
	return st, nil
}

func (s *server) drainHandoffs(want uint64, limit time.Duration) (benchStats, error) {
	deadline := time.Now().Add(limit)
	var last uint64
	stalled := time.Now()
	for {
		st, err := s.stats()
		if err != nil {
			return st, err
		}
		total := st.Handoffs["high"] + st.Handoffs["medium"] + st.Handoffs["low"]
		if total >= want {
			return st, nil
		}
		if total != last {
			last, stalled = total, time.Now()
		}
		if time.Now().After(deadline) || time.Since(stalled) > 30*time.Second {
			return st, fmt.Errorf("drain: %d of %d hand-offs", total, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func machine() string {
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		mem = strings.Join(strings.Fields(line)[1:], " ")
	}
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				_, model, _ = strings.Cut(l, ":")
				break
			}
		}
	}
	return fmt.Sprintf("%d cores (%s), %s memory, %s/%s, %s", runtime.NumCPU(), strings.TrimSpace(model), mem, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s || x == "all" {
			return true
		}
	}
	return false
}

package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"time"

	"herald.dev/internal/bench"
)

func init() {
	extraCommands["bench"] = benchCmd
	extraCommands["bench-baseline"] = benchBaseline
}

const benchUsage = `herald bench — load generator and benchmark scenarios

Spawns a herald server (embedded SQLite, or MariaDB with --database-url) with the
no-I/O bench adapter, creates the app, users and group it needs, and measures:
  baseline   a bare fiber server decoding the same JSON (closed loop)
  accept     maximum durable accept rate (closed loop)
  rate10k    API latency at a fixed 10,000/s (open loop)
  e2e5k      end-to-end latency (request → adapter hand-off) at a fixed 5,000/s
  priority   a high-priority stream during a low-priority fan-out to a big group

With --against OTHER it runs the server scenarios --pairs times on this build (A)
and on OTHER (B), alternating, and prints each figure per run, the median B/A
and in how many pairs B did better.
`

func benchCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, benchUsage); fs.PrintDefaults() }
	scen := fs.String("scenarios", "all", "comma list: baseline,accept,rate10k,e2e5k,priority or all")
	dur := fs.Duration("duration", 10*time.Second, "duration of each load phase")
	conc := fs.Int("concurrency", 256, "closed-loop concurrency")
	group := fs.Int("group-size", 1_000_000, "members of the fan-out group")
	high := fs.Float64("high-rate", 1000, "high-priority sends per second during the fan-out")
	dbURL := fs.String("database-url", "", "empty = embedded SQLite; mysql://root@127.0.0.1:3306/ = a fresh database on that server")
	jsonOut := fs.String("json", "", "also write the report as JSON to this file")
	keep := fs.Bool("keep", false, "keep the server's data directory and, with --database-url, its MariaDB database (both are removed otherwise)")
	profile := fs.String("profile", "", "write a CPU profile of the server for each scenario into this directory (go tool pprof FILE)")
	against := fs.String("against", "", "compare with this other herald binary: alternating runs of both, a fresh server each (see --pairs)")
	pairs := fs.Int("pairs", 3, "with --against, how many runs of each build")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	opts := bench.Options{
		DatabaseURL: *dbURL, Scenarios: strings.Split(*scen, ","), Duration: *dur, Concurrency: *conc,
		GroupSize: *group, HighRate: *high, Out: stdout, KeepDir: *keep, ProfileDir: *profile,
	}
	if *against != "" {
		if *keep || *profile != "" {
			return fmt.Errorf("bench: --against runs many servers; --keep and --profile apply to single runs")
		}
		c, err := bench.Compare(ctx, opts, *against, *pairs)
		if c != nil {
			c.Print(stdout)
			if *jsonOut != "" {
				b, _ := json.MarshalIndent(c, "", "  ")
				if werr := os.WriteFile(*jsonOut, b, 0o644); werr != nil && err == nil {
					err = werr
				}
			}
		}
		return err
	}
	rep, err := bench.Run(ctx, opts)
	if rep != nil && *jsonOut != "" {
		if werr := os.WriteFile(*jsonOut, rep.JSON(), 0o644); werr != nil && err == nil {
			err = werr
		}
	}
	if rep != nil {
		fmt.Fprintf(stdout, "\n%s\n", rep.JSON())
	}
	return err
}

func benchBaseline(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench-baseline", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	return bench.ServeBaseline(ln)
}

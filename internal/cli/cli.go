// Package cli parses herald's command line and runs the sub-commands.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"herald.dev/internal/server"
	"herald.dev/platform/auth"
	"herald.dev/platform/config"
	"herald.dev/platform/sqldb"
)

// Version is set at build time with -ldflags "-X herald.dev/internal/cli.Version=v1.2.3".
var Version = "dev"

const usage = `herald — unified enterprise notification platform

Usage:
  herald serve   [--config FILE] [--target all|api,outbound] [--addr :8080] [--data-dir DIR] [--database-url URL] [--set key=value]...
  herald migrate [--config FILE] [--database-url URL]
  herald app create --name NAME [--config FILE]
  herald config dump [--config FILE]
  herald version

Configuration is layered: defaults, then --config FILE (YAML, see config.example.yml),
then HERALD_* environment variables, then flags.
`

// Main runs herald with args and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(args[1:], stderr)
	case "migrate":
		err = migrate(args[1:], stdout)
	case "app":
		if len(args) < 2 || args[1] != "create" {
			fmt.Fprint(stderr, "usage: herald app create --name NAME\n")
			return 2
		}
		err = appCreate(args[2:], stdout)
	case "config":
		if len(args) < 2 || args[1] != "dump" {
			fmt.Fprint(stderr, "usage: herald config dump [--config FILE]\n")
			return 2
		}
		err = configDump(args[2:], stdout)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "herald %s %s\n", Version, buildInfo())
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
	default:
		if extra, ok := extraCommands[args[0]]; ok {
			err = extra(args[1:], stdout, stderr)
			break
		}
		fmt.Fprintf(stderr, "herald: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "herald: %v\n", err)
		return 1
	}
	return 0
}

// extraCommands lets other files register sub-commands (bench).
var extraCommands = map[string]func(args []string, stdout, stderr io.Writer) error{}

func buildInfo() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, t string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			t = s.Value
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return strings.TrimSpace(fmt.Sprintf("%s %s %s", bi.GoVersion, rev, t))
}

type setFlags []string

func (s *setFlags) String() string     { return strings.Join(*s, ",") }
func (s *setFlags) Set(v string) error { *s = append(*s, v); return nil }

// common flags shared by sub-commands.
type common struct {
	config, addr, dataDir, dbURL, target string
	sets                                 setFlags
}

func (c *common) register(fs *flag.FlagSet, withServe bool) {
	fs.StringVar(&c.config, "config", os.Getenv("HERALD_CONFIG"), "YAML configuration file")
	fs.StringVar(&c.dataDir, "data-dir", "", "data directory (embedded SQLite and keys)")
	fs.StringVar(&c.dbURL, "database-url", "", "database URL: empty = embedded SQLite, mysql://user:pass@host:port/db")
	fs.Var(&c.sets, "set", "override any config key, e.g. --set outbound.workers=32 (repeatable)")
	if withServe {
		fs.StringVar(&c.addr, "addr", "", "HTTP listen address (default :8080)")
		fs.StringVar(&c.target, "target", "", "targets to run: all, or a comma list of api,outbound")
	}
}

func (c *common) load() (config.Config, error) {
	cfg, err := config.Load(c.config, os.Environ())
	if err != nil {
		return cfg, err
	}
	if c.addr != "" {
		cfg.HTTP.Addr = c.addr
	}
	if c.dataDir != "" {
		cfg.DataDir = c.dataDir
	}
	if c.dbURL != "" {
		cfg.Database.URL = c.dbURL
	}
	if c.target != "" {
		cfg.Targets = c.target
	}
	for _, kv := range c.sets {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return cfg, fmt.Errorf("--set %q: want key=value", kv)
		}
		if err := cfg.Set(k, v); err != nil {
			return cfg, err
		}
	}
	return cfg, cfg.Validate()
}

func serve(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var c common
	c.register(fs, true)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	if limit, ok := memoryLimit(cfg.MemoryLimitMB, os.Getenv("GOMEMLIMIT")); ok {
		debug.SetMemoryLimit(limit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return server.Run(ctx, cfg, server.Options{Version: Version, Log: stderr})
}

// memoryLimit is the soft memory limit serve sets from memory_limit_mb:
// none when it is 0 or when GOMEMLIMIT is set (the runtime has applied it).
// Near the limit the garbage collector runs more often, so a process that
// streams large fan-outs returns freed heap to the system sooner instead of
// growing to twice its live heap.
func memoryLimit(mb int, env string) (int64, bool) {
	if mb <= 0 || env != "" {
		return 0, false
	}
	return int64(mb) << 20, true
}

func openDB(ctx context.Context, cfg config.Config) (*sqldb.DB, error) {
	return sqldb.Open(ctx, cfg.Database.URL, sqldb.Options{DataDir: cfg.DataDir, ReadURL: cfg.Database.ReadURL, MaxOpen: cfg.Database.MaxOpen, CacheMB: cfg.Database.CacheMB})
}

func migrate(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	var c common
	c.register(fs, false)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	ctx := context.Background()
	db, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := db.MigrateAll(ctx)
	for _, m := range applied {
		fmt.Fprintf(stdout, "applied %s %04d_%s\n", m.Component, m.Version, m.Name)
	}
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "schema is up to date")
	}
	return nil
}

func appCreate(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("app create", flag.ContinueOnError)
	var c common
	c.register(fs, false)
	name := fs.String("name", "", "the app's name (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if strings.TrimSpace(*name) == "" {
		return errors.New("app create: --name is required")
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	ctx := context.Background()
	db, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.MigrateAll(ctx); err != nil {
		return err
	}
	app, key, err := auth.NewStore(db, 0).CreateApp(ctx, *name)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{
		"id": app.ID, "name": app.Name, "api_key": key, "webhook_secret": app.Settings.WebhookSecret,
		"note": "the api_key is shown once; Herald stores only its hash",
	})
}

func configDump(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("config dump", flag.ContinueOnError)
	var c common
	c.register(fs, true)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	b, err := cfg.Dump()
	if err != nil {
		return err
	}
	_, err = stdout.Write(b)
	return err
}

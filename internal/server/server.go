// Package server wires Herald's modules into one process. Each module is a
// library (New + Mount/Run); this package only connects them according to
// the configuration and the selected targets.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/auth"
	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
	"herald.dev/platform/messages"
	"herald.dev/platform/queue"
	"herald.dev/platform/sqldb"
)

// Options carry what the binary knows beyond the config.
type Options struct {
	Version string
	Log     io.Writer
	// Listener, when set, is used instead of listening on cfg.HTTP.Addr (tests).
	Listener net.Listener
	// Ready, when set, receives the server once it serves.
	Ready func(*Server)
	// Senders overrides adapters by channel (tests and the benchmark).
	Senders map[domain.Channel]contracts.Sender
}

// Targets says which parts run in this process.
type Targets struct{ API, Outbound bool }

// ParseTargets parses "all" or a comma list of api, outbound.
func ParseTargets(s string) (Targets, error) {
	var t Targets
	for _, part := range strings.Split(s, ",") {
		switch strings.TrimSpace(part) {
		case "all", "":
			t.API, t.Outbound = true, true
		case "api":
			t.API = true
		case "outbound":
			t.Outbound = true
		default:
			return t, fmt.Errorf("unknown target %q: want all, api or outbound", part)
		}
	}
	return t, nil
}

// Server is a running Herald process.
type Server struct {
	Config  config.Config
	DB      *sqldb.DB
	Auth    *auth.Store
	Store   *messages.Store
	Queue   queue.Queue
	App     *fiber.App
	Addr    string
	Targets Targets

	logger  *log.Logger
	closers []func()
	runners []func(ctx context.Context) error
	ready   sync.WaitGroup
}

// Logf logs a line about a problem; it is always printed.
func (s *Server) Logf(format string, args ...any) { s.logger.Printf(format, args...) }

// Infof logs a routine line (start-up, migrations, shutdown); log_level warn
// or error silences it.
func (s *Server) Infof(format string, args ...any) {
	if s.Config.LogLevel == "" || s.Config.LogLevel == "info" || s.Config.LogLevel == "debug" {
		s.logger.Printf(format, args...)
	}
}

// Run starts the configured targets and blocks until ctx ends, then shuts
// down gracefully: stop accepting requests, finish in-flight requests and
// deliveries, flush batches, close the database.
func Run(ctx context.Context, cfg config.Config, opts Options) error {
	s, err := Build(ctx, cfg, opts)
	if err != nil {
		return err
	}
	return s.Serve(ctx, opts)
}

// Serve runs a built server until ctx ends.
func (s *Server) Serve(ctx context.Context, opts Options) error {
	runCtx, cancelRun := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errc := make(chan error, len(s.runners)+1)
	for _, r := range s.runners {
		wg.Add(1)
		go func(r func(context.Context) error) {
			defer wg.Done()
			if err := r(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- err
			}
		}(r)
	}
	if s.App != nil {
		ln := opts.Listener
		if ln == nil {
			var err error
			ln, err = net.Listen("tcp", s.Config.HTTP.Addr)
			if err != nil {
				cancelRun()
				wg.Wait()
				s.close()
				return fmt.Errorf("listen %s: %w", s.Config.HTTP.Addr, err)
			}
		}
		s.Addr = ln.Addr().String()
		go func() {
			if err := s.App.Listener(ln); err != nil {
				errc <- fmt.Errorf("http: %w", err)
			}
		}()
	}
	s.Infof("herald %s serving targets=%s on %s (database %s, queue %s)", opts.Version, s.targetList(), s.Addr, s.DB.Name, s.Config.Queue.Driver)
	if opts.Ready != nil {
		opts.Ready(s)
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		s.Logf("fatal: %v", runErr)
	}
	s.Infof("shutting down")
	if s.App != nil {
		if err := s.App.ShutdownWithTimeout(30 * time.Second); err != nil {
			s.Logf("http shutdown: %v", err)
		}
	}
	cancelRun()
	wg.Wait()
	s.close()
	s.Infof("stopped")
	return runErr
}

func (s *Server) targetList() string {
	var t []string
	if s.Targets.API {
		t = append(t, "api")
	}
	if s.Targets.Outbound {
		t = append(t, "outbound")
	}
	return strings.Join(t, ",")
}

func (s *Server) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

func (s *Server) onClose(f func()) { s.closers = append(s.closers, f) }

// readyCheck answers /readyz.
func (s *Server) readyCheck(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	if err := s.DB.Ping(ctx); err != nil {
		return httpx.CodeUnavailable.New("database: %v", err)
	}
	return c.JSON(fiber.Map{"status": "ready"})
}

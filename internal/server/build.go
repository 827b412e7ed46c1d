package server

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/gofiber/fiber/v2"

	"herald.dev/adapters/providers"
	"herald.dev/adapters/registry"
	"herald.dev/analytics"
	"herald.dev/analytics/backend"
	"herald.dev/analytics/sqlstore"
	"herald.dev/dashboard"
	"herald.dev/outbound"
	"herald.dev/platform/auth"
	"herald.dev/platform/config"
	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
	"herald.dev/platform/messages"
	"herald.dev/platform/queue/memqueue"
	"herald.dev/platform/queue/rocketmq"
	"herald.dev/platform/sqldb"
	profilesvc "herald.dev/profile-svc"
	"herald.dev/services"
	"herald.dev/services/otp"
	templatesvc "herald.dev/templates-svc"

	_ "herald.dev/adapters/all" // registers every channel adapter
)

// Build opens the database, migrates it, and wires every module the targets need.
func Build(ctx context.Context, cfg config.Config, opts Options) (s *Server, err error) {
	targets, err := ParseTargets(cfg.Targets)
	if err != nil {
		return nil, err
	}
	logOut := opts.Log
	if logOut == nil {
		logOut = os.Stderr
	}
	s = &Server{Config: cfg, Targets: targets, logger: log.New(logOut, "herald ", log.LstdFlags|log.Lmicroseconds)}
	defer func() {
		if err != nil {
			s.close()
		}
	}()

	db, err := sqldb.Open(ctx, cfg.Database.URL, sqldb.Options{DataDir: cfg.DataDir, ReadURL: cfg.Database.ReadURL, MaxOpen: cfg.Database.MaxOpen, CacheMB: cfg.Database.CacheMB})
	if err != nil {
		return nil, err
	}
	s.DB = db
	s.onClose(func() { db.Close() })
	applied, err := db.MigrateAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	for _, m := range applied {
		s.Infof("migrated %s to %d (%s)", m.Component, m.Version, m.Name)
	}
	if err := db.CheckAll(ctx); err != nil {
		return nil, err
	}

	tokenSecret, err := secretFromConfigOrFile(cfg.Security.TokenSecret, cfg.DataDir, "token.key")
	if err != nil {
		return nil, err
	}
	encKey, err := secretFromConfigOrFile(cfg.Security.EncryptionKey, cfg.DataDir, "encryption.key")
	if err != nil {
		return nil, err
	}

	s.Auth = auth.NewStore(db, 0)
	s.Store = messages.New(db, messages.Options{CommitWindow: cfg.Database.CommitWindow, CommitBatch: cfg.Database.CommitBatch})
	s.onClose(s.Store.Close)
	if err := s.Store.SetUserIndex(ctx, cfg.Database.UserIndex); err != nil {
		return nil, err
	}

	// Lanes.
	switch cfg.Queue.Driver {
	case "rocketmq":
		q, err := rocketmq.NewWithOptions(cfg.Queue.RocketMQ, rocketmq.Options{AgeLimit: cfg.Queue.AgeLimit, Visibility: cfg.Queue.Visibility})
		if err != nil {
			return nil, fmt.Errorf("rocketmq: %w", err)
		}
		s.Queue = q
	default:
		s.Queue = memqueue.New(memqueue.Options{Capacity: cfg.Queue.LaneCapacity, AgeLimit: cfg.Queue.AgeLimit, Visibility: cfg.Queue.Visibility})
	}
	s.onClose(func() { s.Queue.Close() })

	// Tracker.
	// On embedded SQLite the tracker writes to a database file of its own, so
	// analytics never queue for the single writer of the message store. Its
	// writer appends packed event rows, so a quarter of the store's page
	// cache serves it (min 8 MiB).
	adb := db
	if db.Dialect == sqldb.SQLite && cfg.Analytics.Driver != "cassandra" {
		adb, err = sqldb.Open(ctx, "sqlite://"+filepath.Join(cfg.DataDir, "analytics.db"), sqldb.Options{CacheMB: max(8, cfg.Database.CacheMB/4)})
		if err != nil {
			return nil, fmt.Errorf("analytics database: %w", err)
		}
		s.onClose(func() { adb.Close() })
		if _, err := adb.Migrate(ctx, sqlstore.Migrations); err != nil {
			return nil, fmt.Errorf("migrate analytics database: %w", err)
		}
	}
	dbs := map[string]*sqldb.DB{"herald": db}
	if adb != db {
		dbs["analytics"] = adb
	}
	registerDBMetrics(dbs)
	ab, err := backend.Open(ctx, cfg.Analytics, adb)
	if err != nil {
		return nil, err
	}
	s.onClose(ab.Close)
	sink := ab.Sink
	tracker := analytics.NewTracker(sink, analytics.Options{Logf: s.Logf})
	s.onClose(func() { tracker.Close() })

	templates := templatesvc.New(db, templatesvc.Options{})
	profiles := profilesvc.New(db, profilesvc.Options{})
	provs := providers.New(db, encKey, cfg.Providers)

	svc, err := services.New(services.Deps{
		DB: db, Store: s.Store, Queue: s.Queue, Renderer: templates, Directory: profiles, Tracker: tracker,
		Config: cfg, TokenSecret: tokenSecret, Logf: s.Logf,
	})
	if err != nil {
		return nil, err
	}
	s.onClose(svc.Close)
	otpSvc, err := otp.New(otp.Deps{DB: db, Store: s.Store, Queue: s.Queue, Renderer: templates, Tracker: tracker, Secret: tokenSecret, Logf: s.Logf}, otp.Options{})
	if err != nil {
		return nil, err
	}

	var benchRec *BenchRecorder
	if os.Getenv("HERALD_BENCH") == "1" {
		benchRec = NewBenchRecorder()
	}

	if targets.Outbound {
		deps := registry.Deps{Config: cfg, Logf: s.Logf, Inbox: svc.Inbox(), Apps: s.Auth, Providers: provs}
		if benchRec != nil {
			deps.Observer = benchRec
		}
		senders, err := registry.Build(deps)
		if err != nil {
			return nil, err
		}
		for ch, snd := range opts.Senders {
			senders[ch] = snd
		}
		s.onClose(func() { registry.Close(senders) })
		defaults := make([]domain.Channel, 0, len(cfg.Outbound.DefaultChannels))
		for _, c := range cfg.Outbound.DefaultChannels {
			defaults = append(defaults, domain.Channel(c))
		}
		fallback := map[string][]domain.Channel{}
		for cat, chain := range cfg.Outbound.Fallback {
			for _, c := range chain {
				fallback[cat] = append(fallback[cat], domain.Channel(c))
			}
		}
		h, err := outbound.New(outbound.Deps{
			Store: s.Store, Queue: s.Queue, Directory: profiles, Renderer: templates, Senders: senders,
			Tracker: tracker, Config: cfg.Outbound, DefaultChannels: defaults, Fallback: fallback, Logf: s.Logf,
			Tuning: outbound.Tuning{AgeLimit: cfg.Queue.AgeLimit},
		})
		if err != nil {
			return nil, err
		}
		if cfg.Queue.Driver == "embedded" {
			// The lanes are this process's own, so the handler that
			// drains them claims immediate sends as they are accepted.
			svc.SetHolder(h)
		}
		if benchRec != nil {
			benchRec.Busy = func() int {
				st := h.Stats()
				return st.Messages + st.Unrecorded + tracker.Stats().Buffered
			}
		}
		s.runners = append(s.runners, h.Run)
		s.runners = append(s.runners, otpSvc.Run)
		s.runners = append(s.runners, func(ctx context.Context) error {
			analytics.RunRetention(ctx, ab.Sweeper, cfg.Analytics.Retention, time.Hour, s.Logf)
			return nil
		})
		registerOutboundMetrics(h, s.Queue)
	}

	// HTTP: the API target serves everything; an outbound-only process still
	// serves health, readiness and metrics.
	app := httpx.NewAppWith(httpx.AppOptions{BodyLimit: cfg.HTTP.BodyLimit, IdleTimeout: cfg.HTTP.IdleTimeout, Logf: s.Logf})
	app.Use(metricsMiddleware())
	app.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	app.Get("/readyz", s.readyCheck)
	app.Get("/metrics", metricsHandler())
	if benchRec != nil {
		benchRec.Mount(app)
	}
	if targets.API {
		svc.MountPublic(app)
		v1 := app.Group("/v1", auth.Middleware(s.Auth))
		templates.Mount(v1)
		profiles.Mount(v1)
		svc.Mount(v1)
		otpSvc.Mount(v1)
		provs.Mount(v1)
		analytics.NewAPI(sink).Mount(v1)
		doc := openAPIDoc(opts.Version, templates.OpenAPI(), profiles.OpenAPI(), svc.OpenAPI(), otpSvc.OpenAPI(), provs.OpenAPI(), analytics.NewAPI(sink).OpenAPI())
		app.Get("/openapi.json", func(c *fiber.Ctx) error { return c.JSON(doc) })
	}
	if targets.API {
		cookieKey, err := secretFromConfigOrFile(cfg.Security.CookieKey, cfg.DataDir, "cookie.key")
		if err != nil {
			return nil, err
		}
		dash, err := dashboard.New(dashboard.Options{API: dashboard.InProcess(app), CookieKey: cookieKey, BasePath: "/admin", Logf: s.Logf})
		if err != nil {
			return nil, err
		}
		dash.Mount(app)
		app.Get("/", func(c *fiber.Ctx) error { return c.Redirect("/admin/", fiber.StatusFound) })
	}
	s.App = app
	return s, nil
}

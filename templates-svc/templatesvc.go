// Package templatesvc owns Herald's message templates: per-app CRUD under a
// stable code, per-channel variants (email, sms, in-app, chat, otp, webhook),
// locales with fallback, declared or derived variables, immutable versions
// with soft delete, previews, and rendering with Go templates.
//
// The Service implements contracts.Renderer for the send path: Check and
// Render read through two in-memory caches, parsed versions (immutable, kept
// in a bounded CLOCK/LRU cache) and the latest version of each code (updated
// on every write made through this Service, and expiring after a short TTL
// so that writes made by other instances are seen).
//
// Every record is keyed by app id; another app's template does not exist.
package templatesvc

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is this package's schema source (component "templates").
var Migrations = sqldb.Source{Component: "templates", FS: mustSub(migrations, "migrations")}

func init() { sqldb.Register(Migrations.Component, Migrations.FS) }

func mustSub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return s
}

var _ contracts.Renderer = (*Service)(nil)

var (
	// ErrNotFound is contracts.ErrTemplateNotFound: no such template (or
	// version) for the app, or the template was deleted.
	ErrNotFound = contracts.ErrTemplateNotFound
	// ErrExists means a live template already has the code.
	ErrExists = errors.New("template already exists")
	// ErrVersionConflict means an update named a base version that is no
	// longer the latest.
	ErrVersionConflict = errors.New("template version conflict")
)

// Options tune a Service. Zero values take the defaults.
type Options struct {
	// CacheSize bounds the parsed versions kept in memory, and separately
	// the cached "latest version" entries (default 10,000 each).
	CacheSize int
	// LatestTTL bounds how long this process serves a cached latest version
	// of a code; it is how long a write made by another instance can take
	// to be used here (default 5s). Writes made through this Service apply
	// at once.
	LatestTTL time.Duration
	// MaxOutput bounds the rendered size of one field in bytes (default 1 MiB).
	MaxOutput int
	// Now is the clock for cache expiry (tests); by default a coarse clock
	// that ticks every 50ms (reading the system clock on every Check costs
	// more than the rest of the lookup).
	Now func() time.Time
}

// Service is the template service: store, HTTP handlers and Renderer.
type Service struct {
	db     *sqldb.DB
	opts   Options
	now    func() int64 // unix ns
	ttl    int64        // ns
	gen    atomic.Uint64
	latest *clockCache[codeKey, latestEntry]
	parsed *clockCache[versionKey, *compiled]
	lf     flight[codeKey, latestLoad]
	vf     flight[versionKey, *compiled]
}

// latestEntry caches the latest version of a code: c is nil when the code
// has no live template.
type latestEntry struct {
	c       *compiled
	expires int64 // unix ns
}

// New returns a Service on db, whose "templates" migrations must have been applied.
func New(db *sqldb.DB, opts Options) *Service {
	if opts.CacheSize <= 0 {
		opts.CacheSize = 10_000
	}
	if opts.LatestTTL <= 0 {
		opts.LatestTTL = 5 * time.Second
	}
	if opts.MaxOutput <= 0 {
		opts.MaxOutput = 1 << 20
	}
	now := coarse.Load
	if opts.Now != nil {
		now = func() int64 { return opts.Now().UnixNano() }
	} else {
		startCoarseClock()
	}
	return &Service{
		db:     db,
		opts:   opts,
		now:    now,
		ttl:    int64(opts.LatestTTL),
		latest: newClockCache[codeKey, latestEntry](opts.CacheSize, hashCode),
		parsed: newClockCache[versionKey, *compiled](opts.CacheSize, hashVersion),
	}
}

// Check implements contracts.Renderer: it returns the latest version of a
// live template, or ErrTemplateNotFound, or *contracts.MissingVariableError
// naming the required variables absent from data. The returned Channels
// slice is shared: do not modify it.
func (s *Service) Check(ctx context.Context, appID, code string, data map[string]any) (contracts.TemplateInfo, error) {
	c, err := s.latestCompiled(ctx, appID, code)
	if err != nil {
		return contracts.TemplateInfo{}, err
	}
	if m := c.missing(data); m != nil {
		return contracts.TemplateInfo{}, &contracts.MissingVariableError{Variables: m}
	}
	return c.info, nil
}

// Render implements contracts.Renderer: it renders channel ch of a version
// (0 = the latest) for locale (exact tag, then its language, then the
// template's default variants). A version named explicitly renders even after
// the template was deleted, so notifications accepted before the delete are
// still delivered.
//
// Failures that retrying cannot fix (unknown template or version, no variant
// for the channel, missing variables, an execution error) are returned as
// permanent *contracts.SendError values wrapping ErrTemplateNotFound,
// ErrNoVariant, *contracts.MissingVariableError or *RenderError, so
// contracts.Classify does not retry them while errors.Is/As still match.
func (s *Service) Render(ctx context.Context, appID, code string, version int, locale string, ch domain.Channel, data map[string]any) (domain.Content, error) {
	var c *compiled
	var err error
	if version == 0 {
		c, err = s.latestCompiled(ctx, appID, code)
	} else {
		c, err = s.versionCompiled(ctx, appID, code, version)
	}
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return domain.Content{}, contracts.Permanent("render template "+code, err)
		}
		return domain.Content{}, err
	}
	content, _, err := c.render(ch, locale, data)
	if err != nil {
		return domain.Content{}, contracts.Permanent(fmt.Sprintf("render template %s v%d %s", code, c.info.Version, ch), err)
	}
	return content, nil
}

// latestCompiled returns the parsed latest version of a live template.
func (s *Service) latestCompiled(ctx context.Context, appID, code string) (*compiled, error) {
	if !ValidCode(code) {
		return nil, ErrNotFound
	}
	k := codeKey{appID, code}
	if e, ok := s.latest.Get(k); ok && s.now() < e.expires {
		if e.c == nil {
			return nil, ErrNotFound
		}
		return e.c, nil
	}
	for {
		// a load joined through the flight may have started before a write
		// this caller already saw complete; such a result is not used
		seen := s.gen.Load()
		r, err := s.lf.do(k, func() (latestLoad, error) {
			gen := s.gen.Load()
			lctx, cancel := loadContext(ctx)
			defer cancel()
			v, err := s.loadLatestVersion(lctx, appID, code)
			var c *compiled
			switch {
			case errors.Is(err, ErrNotFound):
			case err != nil:
				return latestLoad{}, err
			default:
				if c, err = s.versionCompiled(lctx, appID, code, v); err != nil {
					return latestLoad{}, err
				}
			}
			e := latestEntry{c: c, expires: s.now() + s.ttl}
			s.latest.PutIf(k, e, func() bool { return s.gen.Load() == gen })
			return latestLoad{c: c, gen: gen}, nil
		})
		if err != nil {
			return nil, err
		}
		if r.gen < seen {
			continue
		}
		if r.c == nil {
			return nil, ErrNotFound
		}
		return r.c, nil
	}
}

type latestLoad struct {
	c   *compiled
	gen uint64
}

// versionCompiled returns a parsed version (cached forever: versions are immutable).
func (s *Service) versionCompiled(ctx context.Context, appID, code string, version int) (*compiled, error) {
	if version <= 0 || !ValidCode(code) {
		return nil, ErrNotFound
	}
	k := versionKey{appID, code, version}
	if c, ok := s.parsed.Get(k); ok {
		return c, nil
	}
	return s.vf.do(k, func() (*compiled, error) {
		lctx, cancel := loadContext(ctx)
		defer cancel()
		b, _, err := s.loadVersionBody(lctx, appID, code, version)
		if err != nil {
			return nil, err
		}
		return s.compiledBody(appID, code, version, b)
	})
}

// compiledBody returns the parsed form of a stored version body, from the
// cache or by compiling (and caching) it.
func (s *Service) compiledBody(appID, code string, version int, b *body) (*compiled, error) {
	k := versionKey{appID, code, version}
	if c, ok := s.parsed.Get(k); ok {
		return c, nil
	}
	c, fe := compile(b, false, s.opts.MaxOutput)
	if len(fe) > 0 {
		return nil, fmt.Errorf("template %s v%d: stored version does not compile: %v", code, version, fe.problem())
	}
	c.info.Code, c.info.Version = code, version
	s.parsed.Put(k, c)
	return c, nil
}

// loadContext detaches a shared cache load from one caller's cancellation
// (other callers wait for it) but bounds it.
func loadContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}

// wrote records a write made through this Service: the parsed new version
// is cached, and the code's latest entry is dropped so the next Check or
// Render reads the latest pointer again (from the primary); loads that
// started before the write will not cache what they read.
func (s *Service) wrote(appID, code string, c *compiled) {
	s.gen.Add(1)
	if c != nil {
		s.parsed.Put(versionKey{appID, code, c.info.Version}, c)
	}
	s.latest.Delete(codeKey{appID, code})
}

var (
	coarse     atomic.Int64 // unix ns
	coarseOnce sync.Once
)

// startCoarseClock starts the process-wide coarse clock (one goroutine, once).
func startCoarseClock() {
	coarseOnce.Do(func() {
		coarse.Store(time.Now().UnixNano())
		go func() {
			for t := range time.Tick(50 * time.Millisecond) {
				coarse.Store(t.UnixNano())
			}
		}()
	})
}

// Package profilesvc owns Herald's recipients: an app's users (contact
// addresses, external identities, webhook URL, locale and time zone), its
// groups and business modules (nested through parent links), each user's
// channel and category preferences, unsubscribes and quiet hours, and a
// streamed bulk import. It implements contracts.Directory, the read side the
// outbound pipeline resolves recipients through.
//
// Every record is keyed by app id; another app's record does not exist (404).
package profilesvc

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"io/fs"
	"time"

	"github.com/go-sql-driver/mysql"

	"herald.dev/platform/contracts"
	"herald.dev/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is this package's schema source (component "profiles").
var Migrations = sqldb.Source{Component: "profiles", FS: mustSub(migrations, "migrations")}

func init() { sqldb.Register(Migrations.Component, Migrations.FS) }

func mustSub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return s
}

var _ contracts.Directory = (*Service)(nil)

// Errors returned by the Go API besides the contracts sentinels
// (contracts.ErrUserNotFound, contracts.ErrGroupNotFound). Client mistakes
// are returned as *httpx.Problem values naming the field.
var (
	// ErrGroupExists means POST /groups named an id already in use.
	ErrGroupExists = errors.New("group already exists")
	// ErrGroupHasChildren means a group with subgroups cannot be deleted.
	ErrGroupHasChildren = errors.New("group has subgroups")
)

// Limits.
const (
	MaxIDLen          = 128
	MaxNameLen        = 200
	MaxGroupsPerUser  = 100
	MaxMembersPerCall = 10_000
	MaxCategories     = 100
	MaxUnsubscribed   = 100
	MaxGroupDepth     = 32
	DefaultPageLimit  = 50
	MaxPageLimit      = 1000
)

// Options tune a Service. Zero values take the defaults.
type Options struct {
	// CacheSize bounds the number of profiles kept in memory (default 100,000).
	CacheSize int
	// CacheTTL bounds how long a cached profile is served; it is how long a
	// write made by another instance can take to be seen here (default 10s).
	// Writes made through this Service invalidate immediately.
	CacheTTL time.Duration
	// ImportBatch is the number of users per multi-row upsert and transaction
	// during imports (default 1000).
	ImportBatch int
	// MaxImportErrors caps the errors listed in an import result (default 100).
	MaxImportErrors int
}

// Service is the profile service: store, HTTP handlers and Directory.
type Service struct {
	db    *sqldb.DB
	opts  Options
	cache *profileCache
}

// New returns a Service on db, whose "profiles" migrations must have been applied.
func New(db *sqldb.DB, opts Options) *Service {
	if opts.CacheSize <= 0 {
		opts.CacheSize = 100_000
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = 10 * time.Second
	}
	if opts.ImportBatch <= 0 {
		opts.ImportBatch = 1000
	}
	if opts.ImportBatch > 2000 {
		opts.ImportBatch = 2000 // 14 parameters a row stay under SQLite's 32,766
	}
	if opts.MaxImportErrors <= 0 {
		opts.MaxImportErrors = 100
	}
	return &Service{db: db, opts: opts, cache: newProfileCache(opts.CacheSize, opts.CacheTTL)}
}

// tx runs fn in a write transaction, retrying a MySQL deadlock a few times
// (concurrent group moves and membership changes lock rows in different orders).
func (s *Service) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		err = s.db.Tx(ctx, fn)
		if !isDeadlock(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 5 * time.Millisecond):
		}
	}
	return err
}

func isDeadlock(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}

// shareLock is the locking-read suffix that makes an existence check inside a
// write transaction hold until commit (SQLite has a single writer already).
func (s *Service) shareLock() string {
	if s.db.Dialect == sqldb.MySQL {
		return " LOCK IN SHARE MODE"
	}
	return ""
}

// forUpdate is the exclusive locking-read suffix.
func (s *Service) forUpdate() string {
	if s.db.Dialect == sqldb.MySQL {
		return " FOR UPDATE"
	}
	return ""
}

func ms(t int64) time.Time { return time.UnixMilli(t).UTC() }

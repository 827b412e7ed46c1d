// Package sqldb opens Herald's database in one of two dialects, embedded
// SQLite (pure Go, WAL) or MySQL, and runs each module's numbered migrations.
//
// A DB carries two pools: W for writes and R for reads. On SQLite W has a
// single connection (SQLite has one writer; serialising in the pool avoids
// SQLITE_BUSY) and R has several; on MySQL both point at the primary unless a
// read replica is configured.
package sqldb

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Dialect names the SQL flavour.
type Dialect string

const (
	SQLite Dialect = "sqlite"
	MySQL  Dialect = "mysql"
)

// DB is a database handle with separate write and read pools.
type DB struct {
	W       *sql.DB
	R       *sql.DB
	Dialect Dialect
	// Name is a printable description with credentials removed.
	Name string

	stmts stmtCache
	cache cacheTotals // the writer's page-cache counters (WriterCacheStats)
}

// Options tune Open.
type Options struct {
	// DataDir holds the SQLite file when URL is empty.
	DataDir string
	// ReadURL is an optional MySQL replica for reads.
	ReadURL string
	// MaxOpen bounds each MySQL pool (default 32).
	MaxOpen int
	// CacheMB is the SQLite writer's page cache in MiB (default 32).
	// Readers get ReadCacheMB each (default 8): mostly headroom in the
	// process's shared page budget (see sqliteDSN).
	CacheMB, ReadCacheMB int
}

// Open opens rawURL: "" (embedded SQLite in opts.DataDir/herald.db),
// "sqlite:///path/to/file.db", or "mysql://user:pass@host:port/db?params".
func Open(ctx context.Context, rawURL string, opts Options) (*DB, error) {
	switch {
	case rawURL == "" || strings.HasPrefix(rawURL, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(rawURL, "sqlite://"), "sqlite:")
		if path == "" {
			dir := opts.DataDir
			if dir == "" {
				dir = "./herald-data"
			}
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return nil, fmt.Errorf("create data dir %s: %w", dir, err)
			}
			path = filepath.Join(dir, "herald.db")
		}
		return openSQLite(ctx, path, opts)
	case strings.HasPrefix(rawURL, "mysql://"):
		return openMySQL(ctx, rawURL, opts)
	}
	return nil, fmt.Errorf("database url %q: want empty, sqlite:///path or mysql://user:pass@host:port/db", Redact(rawURL))
}

func sqliteDSN(path string, readOnly bool, opts Options) string {
	q := url.Values{}
	// The page caches live outside the Go heap. The one writer keeps the
	// B-tree pages it is appending to (32 MiB by default).
	//
	// The driver builds SQLite with SQLITE_ENABLE_MEMORY_MANAGEMENT, so
	// every connection of the process draws on one shared page budget, the
	// sum of their cache sizes, with one LRU list. Once the pages in use
	// exceed that budget, SQLite frees each page as soon as it is released,
	// whoever owns it. The writer, whose cache is always full, then reads
	// its hottest B-tree interior pages back from the WAL for every row it
	// inserts. With 1 MiB readers this cost a group fan-out a third of its
	// rate (docs/benchmarks.md, "2026-12-04, later").
	//
	// A reader's cache is emptied whenever another connection has written
	// since its last query, so under writes a reader holds only what its last
	// query touched (a few hundred pages for a fan-out's member page). Its
	// 8 MiB is mostly headroom in the shared budget, which keeps the budget
	// above what is in use; it costs memory only for a query that
	// touches that much. TestWriterCacheSurvivesReaders measures the
	// writer's cache misses.
	mb := cmp.Or(opts.CacheMB, 32)
	if readOnly {
		mb = cmp.Or(opts.ReadCacheMB, 8)
	}
	cache := fmt.Sprintf("cache_size(-%d)", mb*1024)
	for _, p := range []string{
		"journal_mode(WAL)",
		"synchronous(FULL)",
		"busy_timeout(10000)",
		"foreign_keys(ON)",
		"temp_store(MEMORY)",
		cache,
	} {
		q.Add("_pragma", p)
	}
	if !readOnly {
		q.Set("_txlock", "immediate")
		// Checkpoint the WAL every 4,096 pages (16 MB) instead of SQLite's
		// 1,000: a page written by many commits in between (a hot index
		// page during a fan-out) is copied into the database once per
		// checkpoint, and checkpoints cost a tenth of the writer's time
		// during a fan-out at the default. Larger values stall the one
		// commit that checkpoints for longer. The WAL file is truncated
		// back to 64 MB after a checkpoint.
		q.Add("_pragma", "wal_autocheckpoint(4096)")
		q.Add("_pragma", "journal_size_limit(67108864)")
	}
	return "file:" + path + "?" + q.Encode()
}

func openSQLite(ctx context.Context, path string, opts Options) (*DB, error) {
	w, err := sql.Open("sqlite", sqliteDSN(path, false, opts))
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", sqliteDSN(path, true, opts))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	return &DB{W: w, R: r, Dialect: SQLite, Name: "sqlite:" + path}, nil
}

// MySQLDSN converts mysql://user:pass@host:port/db?x=y to a go-sql-driver DSN.
func MySQLDSN(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("parse mysql url: %w", err)
	}
	cfg := mysql.NewConfig()
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	if !strings.Contains(cfg.Addr, ":") {
		cfg.Addr += ":3306"
	}
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	if cfg.DBName == "" {
		return "", errors.New("mysql url has no database name")
	}
	cfg.ParseTime = false
	cfg.MultiStatements = true
	cfg.InterpolateParams = true
	cfg.Params = map[string]string{}
	for k, v := range u.Query() {
		cfg.Params[k] = v[0]
	}
	if _, ok := cfg.Params["charset"]; !ok {
		cfg.Params["charset"] = "utf8mb4"
	}
	cfg.Timeout = 5 * time.Second
	return cfg.FormatDSN(), nil
}

func openMySQL(ctx context.Context, rawURL string, opts Options) (*DB, error) {
	open := func(raw string) (*sql.DB, error) {
		dsn, err := MySQLDSN(raw)
		if err != nil {
			return nil, err
		}
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			return nil, err
		}
		n := opts.MaxOpen
		if n <= 0 {
			n = 32
		}
		db.SetMaxOpenConns(n)
		db.SetMaxIdleConns(n)
		db.SetConnMaxLifetime(time.Hour)
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := db.PingContext(pctx); err != nil {
			db.Close()
			return nil, err
		}
		return db, nil
	}
	w, err := open(rawURL)
	if err != nil {
		return nil, fmt.Errorf("open mysql %s: %w", Redact(rawURL), err)
	}
	r := w
	if opts.ReadURL != "" {
		if r, err = open(opts.ReadURL); err != nil {
			w.Close()
			return nil, fmt.Errorf("open mysql replica %s: %w", Redact(opts.ReadURL), err)
		}
	}
	return &DB{W: w, R: r, Dialect: MySQL, Name: Redact(rawURL)}, nil
}

// Close closes both pools.
func (db *DB) Close() error {
	db.closeStmts()
	err := db.W.Close()
	if db.R != db.W {
		if e := db.R.Close(); err == nil {
			err = e
		}
	}
	return err
}

// Ping checks the write pool.
func (db *DB) Ping(ctx context.Context) error { return db.W.PingContext(ctx) }

// Redact removes the password from a database URL.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// InsertIgnore returns the dialect's "insert, skipping duplicates" prefix.
func (db *DB) InsertIgnore() string {
	if db.Dialect == MySQL {
		return "INSERT IGNORE"
	}
	return "INSERT OR IGNORE"
}

// Upsert returns the suffix that updates cols on a duplicate of the key
// columns: "ON CONFLICT(k) DO UPDATE SET c=excluded.c" or
// "ON DUPLICATE KEY UPDATE c=VALUES(c)".
func (db *DB) Upsert(keys []string, cols ...string) string {
	var b strings.Builder
	if db.Dialect == MySQL {
		b.WriteString("ON DUPLICATE KEY UPDATE ")
		for i, c := range cols {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s=VALUES(%s)", c, c)
		}
		return b.String()
	}
	fmt.Fprintf(&b, "ON CONFLICT(%s) DO UPDATE SET ", strings.Join(keys, ","))
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=excluded.%s", c, c)
	}
	return b.String()
}

// IsDuplicate reports whether err is a unique-key violation.
func IsDuplicate(err error) bool {
	if err == nil {
		return false
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1062
	}
	s := err.Error()
	return strings.Contains(s, "UNIQUE constraint failed") || strings.Contains(s, "constraint failed: UNIQUE")
}

// Placeholders returns "?, ?, ?" with n marks.
func Placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// Tx runs fn in a write transaction, committing on nil and rolling back otherwise.
func (db *DB) Tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Now returns the current time in Unix milliseconds.
func Now() int64 { return time.Now().UnixMilli() }

// IsRetryable reports whether err is a MySQL deadlock or lock-wait timeout
// (or SQLite busy), after which the whole transaction may simply be retried.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1213 || me.Number == 1205
	}
	s := err.Error()
	return strings.Contains(s, "SQLITE_BUSY") || strings.Contains(s, "database is locked")
}

// TxRetry is Tx that runs fn again after a deadlock or lock timeout
// (IsRetryable), up to eight attempts with short growing pauses. fn must be
// safe to run more than once.
func (db *DB) TxRetry(ctx context.Context, fn func(*sql.Tx) error) error {
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		if err = db.Tx(ctx, fn); !IsRetryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 2 * time.Millisecond):
		}
	}
	return err
}

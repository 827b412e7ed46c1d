package sqldb

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"modernc.org/sqlite"
)

// CacheStats are page-cache counters of the SQLite writer connection since
// the database was opened: pages found in its cache, and pages it had to
// read from the file or the WAL. A busy writer that misses often has lost
// its cache (see sqliteDSN on the shared page budget).
type CacheStats struct {
	Hits, Misses int64
}

// ErrNotSQLite is returned by WriterCacheStats on MySQL.
var ErrNotSQLite = errors.New("not an SQLite database")

// cacheTotals accumulates the connection's counters. SQLite keeps them as
// 32-bit ints, which a busy writer overflows within the hour, so each read
// resets them and adds them here.
type cacheTotals struct {
	mu sync.Mutex
	CacheStats
}

// WriterCacheStats reads the writer connection's page-cache counters. It
// waits for the writer like any write does.
func (db *DB) WriterCacheStats(ctx context.Context) (CacheStats, error) {
	if db.Dialect != SQLite {
		return CacheStats{}, ErrNotSQLite
	}
	c, err := db.W.Conn(ctx)
	if err != nil {
		return CacheStats{}, fmt.Errorf("writer cache stats: %w", err)
	}
	defer c.Close()
	db.cache.mu.Lock()
	defer db.cache.mu.Unlock()
	err = c.Raw(func(dc any) error {
		st, ok := dc.(sqlite.DBStatus)
		if !ok {
			return fmt.Errorf("driver connection %T has no status counters", dc)
		}
		hits, _, err := st.Status(sqlite.DBStatusCacheHit, true)
		if err != nil {
			return err
		}
		misses, _, err := st.Status(sqlite.DBStatusCacheMiss, true)
		if err != nil {
			return err
		}
		db.cache.Hits += int64(hits)
		db.cache.Misses += int64(misses)
		return nil
	})
	if err != nil {
		return CacheStats{}, fmt.Errorf("writer cache stats: %w", err)
	}
	return db.cache.CacheStats, nil
}

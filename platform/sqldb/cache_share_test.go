package sqldb_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"herald.dev/platform/sqldb"
)

// cacheMisses is the writer's count of pages it had to read because they
// were not in its page cache.
func cacheMisses(t *testing.T, db *sqldb.DB) int64 {
	t.Helper()
	st, err := db.WriterCacheStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Misses
}

// TestWriterCacheSurvivesReaders appends rows while readers stream ranges
// of another table, as a group fan-out does. Every connection of the process
// shares one page-cache budget (the sum of their cache sizes), and once the
// pages in use exceed it SQLite drops each page as soon as it is released:
// the writer then reads its hottest B-tree pages back from the WAL for every
// row. With 1 MiB reader caches the writer below missed its cache about
// 1,200 times over these 50,000 rows; with the default reader cache it
// should not miss at all.
func TestWriterCacheSurvivesReaders(t *testing.T) {
	ctx := context.Background()
	// A small writer cache, so that it is full from the start as a busy
	// writer's always is.
	db, err := sqldb.Open(ctx, "", sqldb.Options{DataDir: t.TempDir(), CacheMB: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.W.Exec(`CREATE TABLE u (id TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
		CREATE TABLE d (id TEXT PRIMARY KEY, n TEXT, v TEXT) WITHOUT ROWID;
		CREATE INDEX d_n ON d (n, id)`); err != nil {
		t.Fatal(err)
	}
	insert := func(n int, q string, args func(i int) []any) {
		tx, err := db.W.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if _, err := tx.Exec(q, args(i)...); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	const users = 30_000
	long := strings.Repeat("v", 120)
	insert(users, `INSERT INTO u VALUES (?, ?)`, func(i int) []any { return []any{fmt.Sprintf("u%07d", i), long} })

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				from := fmt.Sprintf("u%07d", (i*7919+r*3137)%(users-2000))
				rows, err := db.R.Query(`SELECT id, v FROM u WHERE id > ? ORDER BY id LIMIT 2000`, from)
				if err != nil {
					t.Error(err)
					return
				}
				for rows.Next() {
				}
				rows.Close()
			}
		}(r)
	}
	before := cacheMisses(t, db)
	for n := 0; n < 100; n++ {
		insert(500, `INSERT INTO d VALUES (?, ?, ?)`, func(i int) []any {
			return []any{fmt.Sprintf("dlv_%08d_%04d_%040d", n, i, 0), fmt.Sprintf("ntf_%08d", n/10), long}
		})
	}
	close(stop)
	wg.Wait()
	if misses := cacheMisses(t, db) - before; misses > 50 {
		t.Errorf("the writer missed its page cache %d times while appending 50,000 rows; want at most 50", misses)
	}
}

// TestWriterCacheStats: the counters add up across reads (SQLite's own
// reset on each read), count the writer's reads only, and are refused on
// MySQL.
func TestWriterCacheStats(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "", sqldb.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.W.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	first, err := db.WriterCacheStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if _, err := db.W.Exec(`INSERT INTO t (v) VALUES (?)`, strings.Repeat("x", 500)); err != nil {
			t.Fatal(err)
		}
	}
	second, err := db.WriterCacheStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second.Hits <= first.Hits || second.Misses < first.Misses {
		t.Fatalf("after 100 inserts: %+v, before %+v; want more hits and no fewer misses", second, first)
	}
	var n int
	for i := 0; i < 50; i++ { // reads on the reader pool: not the writer's
		if err := db.R.QueryRow(`SELECT count(*) FROM t`).Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	third, err := db.WriterCacheStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if third != second {
		t.Fatalf("reader queries moved the writer's counters: %+v, then %+v", second, third)
	}
	my := &sqldb.DB{Dialect: sqldb.MySQL}
	if _, err := my.WriterCacheStats(ctx); !errors.Is(err, sqldb.ErrNotSQLite) {
		t.Fatalf("MySQL: %v, want ErrNotSQLite", err)
	}
}

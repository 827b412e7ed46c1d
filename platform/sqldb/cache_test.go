package sqldb_test

import (
	"context"
	"testing"

	"herald.dev/platform/sqldb"
)

// TestSQLiteCacheSizes checks that the writer and every reader get the page
// cache Options asks for (or the defaults), since the caches live outside
// the Go heap and decide much of the process's memory.
func TestSQLiteCacheSizes(t *testing.T) {
	for _, tc := range []struct {
		name          string
		opts          sqldb.Options
		writer, reads int // KiB
	}{
		{"defaults", sqldb.Options{}, 32 * 1024, 8 * 1024},
		{"set", sqldb.Options{CacheMB: 8, ReadCacheMB: 2}, 8 * 1024, 2 * 1024},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.DataDir = t.TempDir()
			db, err := sqldb.Open(context.Background(), "", tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var w, r int
			if err := db.W.QueryRow("PRAGMA cache_size").Scan(&w); err != nil {
				t.Fatal(err)
			}
			if err := db.R.QueryRow("PRAGMA cache_size").Scan(&r); err != nil {
				t.Fatal(err)
			}
			// A negative cache_size is a size in KiB.
			if w != -tc.writer || r != -tc.reads {
				t.Errorf("cache_size writer %d reader %d; want %d and %d", w, r, -tc.writer, -tc.reads)
			}
		})
	}
}

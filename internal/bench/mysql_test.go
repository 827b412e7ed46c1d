package bench

import (
	"database/sql"
	"net/url"
	"strings"
	"testing"

	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
)

// TestFreshMySQLIsDropped: each MariaDB run gets a database of its own,
// and dropping it after the run leaves none behind on the server.
func TestFreshMySQLIsDropped(t *testing.T) {
	base := sqldbtest.MySQLURL(t) // skips without MariaDB, like the rest of the MySQL half
	raw, drop, err := freshMySQL(base)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if !strings.HasPrefix(name, "herald_bench_") {
		t.Fatalf("database %q", name)
	}
	exists := func() bool {
		t.Helper()
		u.Path = "/mysql"
		dsn, err := sqldb.MySQLDSN(u.String())
		if err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?`, name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	if !exists() {
		t.Fatalf("database %s was not created", name)
	}
	if err := drop(); err != nil {
		t.Fatal(err)
	}
	if exists() {
		t.Fatalf("database %s is still there after the drop", name)
	}
	if err := drop(); err != nil { // idempotent
		t.Fatalf("second drop: %v", err)
	}
}

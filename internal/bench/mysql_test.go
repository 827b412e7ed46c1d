package bench

import (
	"database/sql"
	"net/url"
	"slices"
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
	if !slices.Contains(benchDatabases(t, base), name) {
		t.Fatalf("database %s was not created", name)
	}
	if err := drop(); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(benchDatabases(t, base), name) {
		t.Fatalf("database %s is still there after the drop", name)
	}
	if err := drop(); err != nil { // idempotent
		t.Fatalf("second drop: %v", err)
	}
}

// benchDatabases lists the bench's databases (herald_bench_*) on the
// MariaDB server of base.
func benchDatabases(t *testing.T, base string) []string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
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
	rows, err := db.Query(`SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'herald\_bench\_%'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// Package sqldbtest runs a test against every SQL dialect: embedded SQLite
// always, and MySQL/MariaDB when HERALD_TEST_MYSQL_URL names a server
// (mysql://root@127.0.0.1:3306/ — the database part is ignored). Each call
// gets a fresh, migrated database. Under CI (CI=true) a missing MySQL server
// fails the test instead of skipping it.
package sqldbtest

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"

	"herald.dev/platform/ids"
	"herald.dev/platform/sqldb"
)

// EnvMySQL names the environment variable holding the test server URL.
const EnvMySQL = "HERALD_TEST_MYSQL_URL"

// Each runs fn once per dialect as a subtest ("sqlite", "mysql") with a
// fresh database migrated with the given sources (all registered sources when none are given).
func Each(t *testing.T, fn func(t *testing.T, db *sqldb.DB), sources ...sqldb.Source) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLite(t, sources...)) })
	t.Run("mysql", func(t *testing.T) { fn(t, MySQL(t, sources...)) })
}

func migrate(t testing.TB, db *sqldb.DB, sources []sqldb.Source) {
	t.Helper()
	if len(sources) == 0 {
		sources = sqldb.Registered()
	}
	if _, err := db.Migrate(context.Background(), sources...); err != nil {
		t.Fatalf("migrate: %v", err)
	}
}

// SQLite opens a fresh migrated SQLite database in a temp dir.
func SQLite(t testing.TB, sources ...sqldb.Source) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), "", sqldb.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	migrate(t, db, sources)
	return db
}

// MySQLURL returns a URL for a fresh database on the test server, creating
// it and dropping it at cleanup. It skips (or fails under CI) without a server.
func MySQLURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvMySQL)
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set, but CI=true: the MySQL half of the suite must run in CI", EnvMySQL)
		}
		t.Skipf("MySQL half skipped: set %s=mysql://root@127.0.0.1:3306/ (make test starts MariaDB and sets it)", EnvMySQL)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvMySQL, err)
	}
	name := "ht_" + strings.ToLower(strings.ReplaceAll(ids.New(""), "-", ""))
	u.Path = "/mysql"
	dsn, err := sqldb.MySQLDSN(u.String())
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("CREATE DATABASE " + name + " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		admin.Close()
		t.Fatalf("create test database on %s: %v", sqldb.Redact(base), err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec("DROP DATABASE IF EXISTS " + name)
		admin.Close()
	})
	u.Path = "/" + name
	return u.String()
}

// MySQL opens a fresh migrated database on the test server.
func MySQL(t testing.TB, sources ...sqldb.Source) *sqldb.DB {
	t.Helper()
	raw := MySQLURL(t)
	db, err := sqldb.Open(context.Background(), raw, sqldb.Options{MaxOpen: 16})
	if err != nil {
		t.Fatalf("open mysql: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	migrate(t, db, sources)
	return db
}

// Must fails the test on err.
func Must(t testing.TB, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}

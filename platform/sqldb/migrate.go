package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// ErrSchemaTooNew is returned when the database holds a migration this binary does not know.
var ErrSchemaTooNew = errors.New("database schema is newer than this binary")

// Migration is one numbered step of one component.
type Migration struct {
	Component string
	Version   int
	Name      string
	SQL       string
}

// Source is a component's embedded migrations: FS holds sqlite/NNNN_name.sql and mysql/NNNN_name.sql.
type Source struct {
	Component string
	FS        fs.FS
}

var registry []Source

// Register adds a component's migrations to the global set applied by MigrateAll.
// Modules call it from init(); a duplicate component name panics.
func Register(component string, fsys fs.FS) {
	for _, s := range registry {
		if s.Component == component {
			panic("sqldb: migrations registered twice for " + component)
		}
	}
	registry = append(registry, Source{Component: component, FS: fsys})
}

// Registered returns the registered sources in registration order.
func Registered() []Source { return append([]Source(nil), registry...) }

// Load reads the migrations of one source for a dialect, sorted by version.
func Load(src Source, d Dialect) ([]Migration, error) {
	dir := string(d)
	entries, err := fs.ReadDir(src.FS, dir)
	if err != nil {
		return nil, fmt.Errorf("read %s migrations for %s: %w", src.Component, dir, err)
	}
	var out []Migration
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		if !ok {
			return nil, fmt.Errorf("migration %s: want NNNN_name.sql", e.Name())
		}
		v, err := strconv.Atoi(num)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: bad version number", e.Name())
		}
		b, err := fs.ReadFile(src.FS, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		out = append(out, Migration{Component: src.Component, Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("%s migrations: version %d missing", src.Component, i+1)
		}
	}
	return out, nil
}

const schemaTable = `CREATE TABLE IF NOT EXISTS herald_schema (
	component VARCHAR(64) NOT NULL,
	version INTEGER NOT NULL,
	name VARCHAR(200) NOT NULL,
	applied_at BIGINT NOT NULL,
	PRIMARY KEY (component, version)
)`

// Versions returns the highest applied version per component.
func (db *DB) Versions(ctx context.Context) (map[string]int, error) {
	if _, err := db.W.ExecContext(ctx, schemaTable); err != nil {
		return nil, fmt.Errorf("create schema table: %w", err)
	}
	rows, err := db.W.QueryContext(ctx, `SELECT component, MAX(version) FROM herald_schema GROUP BY component`)
	if err != nil {
		return nil, fmt.Errorf("read schema versions: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var c string
		var v int
		if err := rows.Scan(&c, &v); err != nil {
			return nil, err
		}
		out[c] = v
	}
	return out, rows.Err()
}

// Migrate applies the pending migrations of the given sources, each step in its
// own transaction together with its schema-version row. It refuses with
// ErrSchemaTooNew when the database is ahead of the binary. It returns the
// migrations it applied.
func (db *DB) Migrate(ctx context.Context, sources ...Source) ([]Migration, error) {
	have, err := db.Versions(ctx)
	if err != nil {
		return nil, err
	}
	var applied []Migration
	for _, src := range sources {
		ms, err := Load(src, db.Dialect)
		if err != nil {
			return applied, err
		}
		cur := have[src.Component]
		if cur > len(ms) {
			return applied, fmt.Errorf("%w: %s is at version %d, this binary knows %d", ErrSchemaTooNew, src.Component, cur, len(ms))
		}
		for _, m := range ms[cur:] {
			err := db.Tx(ctx, func(tx *sql.Tx) error {
				for _, stmt := range splitStatements(m.SQL) {
					if _, err := tx.ExecContext(ctx, stmt); err != nil {
						return fmt.Errorf("%s migration %d (%s): %w", m.Component, m.Version, m.Name, err)
					}
				}
				_, err := tx.ExecContext(ctx, `INSERT INTO herald_schema (component, version, name, applied_at) VALUES (?, ?, ?, ?)`,
					m.Component, m.Version, m.Name, Now())
				return err
			})
			if err != nil {
				return applied, err
			}
			applied = append(applied, m)
		}
	}
	return applied, nil
}

// MigrateAll applies every registered component's migrations.
func (db *DB) MigrateAll(ctx context.Context) ([]Migration, error) {
	return db.Migrate(ctx, registry...)
}

// CheckAll returns an error when any registered component is behind or ahead
// of the binary; serve uses it after migrating to refuse an unknown schema.
func (db *DB) CheckAll(ctx context.Context) error {
	have, err := db.Versions(ctx)
	if err != nil {
		return err
	}
	for _, src := range registry {
		ms, err := Load(src, db.Dialect)
		if err != nil {
			return err
		}
		if have[src.Component] > len(ms) {
			return fmt.Errorf("%w: %s is at version %d, this binary knows %d", ErrSchemaTooNew, src.Component, have[src.Component], len(ms))
		}
		if have[src.Component] < len(ms) {
			return fmt.Errorf("%s schema is at version %d, want %d: run herald migrate", src.Component, have[src.Component], len(ms))
		}
	}
	return nil
}

// splitStatements splits a migration file on semicolons at line ends.
// Migration files keep one statement per ';'-terminated block and no
// semicolons inside string literals.
func splitStatements(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ";\n") {
		lines := strings.Split(part, "\n")
		var keep []string
		for _, l := range lines {
			if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "--") {
				continue
			}
			keep = append(keep, l)
		}
		stmt := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(strings.Join(keep, "\n")), ";"))
		if stmt != "" {
			out = append(out, stmt)
		}
	}
	return out
}

// Package backend opens the analytics sink that Herald's configuration
// selects (analytics.driver: sql or cassandra), for the binary's wiring.
package backend

import (
	"context"
	"fmt"

	"herald.dev/analytics"
	"herald.dev/analytics/cassandra"
	"herald.dev/analytics/sqlstore"
	"herald.dev/platform/config"
	"herald.dev/platform/sqldb"
)

// Backend is an opened sink.
type Backend struct {
	Sink analytics.Sink
	// Sweeper deletes old raw events (nil for Cassandra, which expires them
	// with a TTL); run it with analytics.RunRetention.
	Sweeper analytics.Sweeper
	// Driver is "sql" or "cassandra".
	Driver string
	close  func()
}

// Close releases the sink's connections (the SQL database is the caller's).
func (b *Backend) Close() {
	if b.close != nil {
		b.close()
	}
}

// Open returns the sink for cfg: "sql" (or empty) uses db, which must carry
// the "analytics" migrations; "cassandra" connects to cfg.CassandraHosts and
// creates the keyspace and tables when missing.
func Open(ctx context.Context, cfg config.Analytics, db *sqldb.DB) (*Backend, error) {
	switch cfg.Driver {
	case "", "sql":
		if db == nil {
			return nil, fmt.Errorf("analytics driver sql: no database")
		}
		s := sqlstore.New(db)
		return &Backend{Sink: s, Sweeper: s, Driver: "sql"}, nil
	case "cassandra":
		s, err := cassandra.Open(ctx, cassandra.FromConfig(cfg))
		if err != nil {
			return nil, fmt.Errorf("analytics driver cassandra: %w", err)
		}
		return &Backend{Sink: s, Driver: "cassandra", close: s.Close}, nil
	}
	return nil, fmt.Errorf("analytics driver %q: want sql or cassandra", cfg.Driver)
}

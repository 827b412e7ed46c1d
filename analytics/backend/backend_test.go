package backend_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"herald.dev/analytics/backend"
	"herald.dev/analytics/cassandra"
	"herald.dev/analytics/sqlstore"
	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/ids"
	"herald.dev/platform/sqldb/sqldbtest"
)

func TestOpenSQL(t *testing.T) {
	db := sqldbtest.SQLite(t, sqlstore.Migrations)
	for _, driver := range []string{"", "sql"} {
		b, err := backend.Open(context.Background(), config.Analytics{Driver: driver}, db)
		if err != nil || b.Driver != "sql" || b.Sweeper == nil {
			t.Fatalf("Open(%q) = %+v, %v", driver, b, err)
		}
		app := ids.New("app")
		if err := b.Sink.WriteEvents(context.Background(), []contracts.Event{{AppID: app, NotificationID: "n", Type: contracts.EventAccepted, At: time.Now()}}); err != nil {
			t.Fatal(err)
		}
		if evs, err := b.Sink.Events(context.Background(), app, "n"); err != nil || len(evs) != 1 {
			t.Fatalf("Events = %v, %v", evs, err)
		}
		b.Close()
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := backend.Open(ctx, config.Analytics{Driver: "mongo"}, nil); err == nil || !strings.Contains(err.Error(), "want sql or cassandra") {
		t.Errorf("unknown driver: %v", err)
	}
	if _, err := backend.Open(ctx, config.Analytics{Driver: "sql"}, nil); err == nil {
		t.Error("sql without a database succeeded")
	}
	if _, err := backend.Open(ctx, config.Analytics{Driver: "cassandra"}, nil); err == nil || !strings.Contains(err.Error(), "no hosts") {
		t.Errorf("cassandra without hosts: %v", err)
	}
}

func TestOpenCassandra(t *testing.T) {
	hosts := os.Getenv("HERALD_TEST_CASSANDRA_HOSTS")
	if hosts == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("HERALD_TEST_CASSANDRA_HOSTS is not set, but CI=true")
		}
		t.Skip("Cassandra backend skipped: set HERALD_TEST_CASSANDRA_HOSTS=127.0.0.1 (deploy/scripts/cassandra.sh start)")
	}
	// A fixed keyspace, kept between runs (the cassandra package's tests
	// cover creating a fresh one): creating keyspaces is slow on a test node.
	const ks = "herald_test_backend"
	b, err := backend.Open(context.Background(), config.Analytics{Driver: "cassandra", CassandraHosts: strings.Split(hosts, ","), CassandraKeyspace: ks}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cs, ok := b.Sink.(*cassandra.Store)
	if !ok || b.Driver != "cassandra" || b.Sweeper != nil || cs.Keyspace() != ks {
		t.Fatalf("backend = %+v", b)
	}
	app := ids.New("app")
	if err := b.Sink.WriteEvents(context.Background(), []contracts.Event{{AppID: app, NotificationID: "n", Type: contracts.EventAccepted, At: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if evs, err := b.Sink.Events(context.Background(), app, "n"); err != nil || len(evs) != 1 {
		t.Fatalf("Events = %v, %v", evs, err)
	}
}

package cassandra_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"herald.dev/analytics"
	"herald.dev/analytics/analyticstest"
	"herald.dev/analytics/cassandra"
	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/ids"
)

// EnvHosts names the test server(s): deploy/scripts/cassandra.sh start prints the value.
const EnvHosts = "HERALD_TEST_CASSANDRA_HOSTS"

func hosts(t *testing.T) []string {
	t.Helper()
	v := os.Getenv(EnvHosts)
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set, but CI=true: the Cassandra sink must be tested in CI (deploy/scripts/cassandra.sh start)", EnvHosts)
		}
		t.Skipf("Cassandra sink skipped: set %s=127.0.0.1 (start a server with deploy/scripts/cassandra.sh start; make test does both)", EnvHosts)
	}
	return strings.Split(v, ",")
}

var (
	keyspaceOnce sync.Once
	keyspace     string
)

// TestMain drops the run's keyspace at the end.
func TestMain(m *testing.M) {
	code := m.Run()
	if keyspace != "" {
		cl := gocql.NewCluster(strings.Split(os.Getenv(EnvHosts), ",")...)
		cl.ProtoVersion, cl.DisableInitialHostLookup, cl.Timeout = 3, true, time.Minute
		if s, err := cl.CreateSession(); err == nil {
			_ = s.Query("DROP KEYSPACE IF EXISTS " + keyspace).Exec()
			s.Close()
		}
	}
	os.Exit(code)
}

// open returns a store on the run's keyspace (created by the first Open:
// every test uses fresh app ids, so they can share it).
func open(t *testing.T, cfg cassandra.Config) *cassandra.Store {
	t.Helper()
	cfg.Hosts = hosts(t)
	keyspaceOnce.Do(func() { keyspace = "herald_test_" + strings.ToLower(ids.Random(6)) })
	cfg.Keyspace = keyspace
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := cassandra.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestConformance(t *testing.T) {
	s := open(t, cassandra.Config{})
	analyticstest.Run(t, func(*testing.T) analytics.Sink { return s })
}

func TestOpenIsIdempotentAndKeepsData(t *testing.T) {
	s := open(t, cassandra.Config{})
	ctx := context.Background()
	app, n := ids.New("app"), ids.New("ntf")
	if err := s.WriteEvents(ctx, []contracts.Event{{AppID: app, NotificationID: n, Type: contracts.EventAccepted, At: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	// A second process opening the same keyspace finds the schema in place.
	again, err := cassandra.Open(ctx, cassandra.Config{Hosts: hosts(t), Keyspace: s.Keyspace()})
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	defer again.Close()
	got, err := again.Events(ctx, app, n)
	if err != nil || len(got) != 1 {
		t.Fatalf("Events through the second store = %+v, %v", got, err)
	}
}

func TestEventsExpireWithTTL(t *testing.T) {
	s := open(t, cassandra.Config{EventTTL: 3 * time.Hour})
	ctx := context.Background()
	app, n := ids.New("app"), ids.New("ntf")
	if err := s.WriteEvents(ctx, []contracts.Event{{AppID: app, NotificationID: n, Type: contracts.EventSent, Channel: domain.ChannelSMS, At: time.Now(), LatencyMS: 5}}); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"events_by_notification", "events_by_day"} {
		var ttl int
		q := "SELECT TTL(type) FROM " + s.Keyspace() + "." + table + " WHERE app_id = ? AND "
		args := []any{app}
		if table == "events_by_day" {
			q += "day = ?"
			args = append(args, int(time.Now().UTC().Unix()/86400))
		} else {
			q += "notification_id = ?"
			args = append(args, n)
		}
		if err := s.Session().Query(q, args...).Scan(&ttl); err != nil {
			t.Fatalf("%s: read TTL: %v", table, err)
		}
		if ttl <= 3*3600-120 || ttl > 3*3600 {
			t.Errorf("%s: TTL %d s, want about %d", table, ttl, 3*3600)
		}
	}
}

func TestRetriedBatchDoesNotDuplicateEvents(t *testing.T) {
	s := open(t, cassandra.Config{})
	ctx := context.Background()
	app, n := ids.New("app"), ids.New("ntf")
	batch := []contracts.Event{
		{AppID: app, NotificationID: n, Type: contracts.EventAccepted, At: time.Now()},
		{AppID: app, NotificationID: n, DeliveryID: "d1", Channel: domain.ChannelEmail, Type: contracts.EventSent, At: time.Now(), LatencyMS: 9},
	}
	for i := 0; i < 2; i++ { // the tracker retrying the same batch
		if err := s.WriteEvents(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Events(ctx, app, n)
	if err != nil || len(got) != 2 {
		t.Fatalf("trace after a retried batch = %d events, %v; want 2", len(got), err)
	}
}

func TestTrackerEndToEnd(t *testing.T) {
	s := open(t, cassandra.Config{})
	tr := analytics.NewTracker(s, analytics.Options{BatchSize: 200})
	app := ids.New("app")
	at := time.Now().UTC()
	for i := 0; i < 1000; i++ {
		tr.Track(contracts.Event{AppID: app, NotificationID: ids.New("ntf"), DeliveryID: ids.New("dlv"), Channel: domain.ChannelInApp,
			Type: contracts.EventDelivered, At: at, LatencyMS: int64(i + 1)})
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if st := tr.Stats(); st.Written != 1000 || st.Dropped != 0 || st.Lost != 0 {
		t.Fatalf("tracker stats %+v", st)
	}
	sum, err := s.Summary(context.Background(), app, at.Add(-time.Hour), at.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Counts[contracts.EventDelivered] != 1000 || sum.SuccessRate == nil || *sum.SuccessRate != 1 {
		t.Errorf("summary after tracking 1000 events: %+v", sum)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := cassandra.Open(ctx, cassandra.Config{}); err == nil || !strings.Contains(err.Error(), "no hosts") {
		t.Errorf("Open without hosts: %v", err)
	}
	if _, err := cassandra.Open(ctx, cassandra.Config{Hosts: []string{"127.0.0.1"}, Keyspace: "bad-name; DROP"}); err == nil || !strings.Contains(err.Error(), "keyspace") {
		t.Errorf("Open with a bad keyspace: %v", err)
	}
	if _, err := cassandra.Open(ctx, cassandra.Config{Hosts: []string{"127.0.0.1:1"}, ConnectTimeout: time.Second}); err == nil {
		t.Errorf("Open on a closed port succeeded")
	}
	c := cassandra.FromConfig(config.Analytics{Driver: "cassandra", CassandraHosts: []string{"a", "b"}, CassandraKeyspace: "ks", Retention: 48 * time.Hour})
	if len(c.Hosts) != 2 || c.Keyspace != "ks" || c.EventTTL != 48*time.Hour {
		t.Errorf("FromConfig = %+v", c)
	}
	if c := cassandra.FromConfig(config.Analytics{}); c.EventTTL >= 0 {
		t.Errorf("FromConfig without retention: TTL %v, want none (negative)", c.EventTTL)
	}
}

// BenchmarkWriteEvents measures the sink's write rate in the tracker's
// default batches of 500 (event rows, counters and maxima).
func BenchmarkWriteEvents(b *testing.B) {
	if os.Getenv(EnvHosts) == "" {
		b.Skipf("set %s", EnvHosts)
	}
	keyspaceOnce.Do(func() { keyspace = "herald_test_" + strings.ToLower(ids.Random(6)) })
	s, err := cassandra.Open(context.Background(), cassandra.Config{Hosts: strings.Split(os.Getenv(EnvHosts), ","), Keyspace: keyspace})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	app := ids.New("app")
	chans := []domain.Channel{domain.ChannelEmail, domain.ChannelSMS, domain.ChannelInApp, domain.ChannelWebhook}
	batch := make([]contracts.Event, 500)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for j := range batch {
			n := ids.New("ntf")
			if j%4 != 0 {
				n = batch[j-j%4].NotificationID
			}
			batch[j] = contracts.Event{AppID: app, NotificationID: n, DeliveryID: ids.New("dlv"), Channel: chans[j%4], Category: "billing",
				Type: []string{contracts.EventQueued, contracts.EventSent}[j%2], At: time.Now(), LatencyMS: int64(j + i)}
		}
		b.StartTimer()
		if err := s.WriteEvents(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
}

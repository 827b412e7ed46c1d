package sqlstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"herald.dev/analytics"
	"herald.dev/analytics/analyticstest"
	"herald.dev/analytics/sqlstore"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/ids"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
)

func TestConformance(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s := sqlstore.New(db)
		analyticstest.Run(t, func(*testing.T) analytics.Sink { return s })
	}, sqlstore.Migrations)
}

func TestSweepDeletesOldEventsKeepsRollups(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := sqlstore.New(db)
		app := ids.New("app")
		now := time.Now().UTC()
		var old, fresh []string
		var evs []contracts.Event
		for i := 0; i < 12; i++ { // 12 old events: more than one delete chunk is not needed, but several notifications are
			n := ids.New("ntf")
			old = append(old, n)
			evs = append(evs, contracts.Event{AppID: app, NotificationID: n, Type: contracts.EventAccepted, At: now.Add(-40 * 24 * time.Hour)})
		}
		for i := 0; i < 3; i++ {
			n := ids.New("ntf")
			fresh = append(fresh, n)
			evs = append(evs, contracts.Event{AppID: app, NotificationID: n, Type: contracts.EventAccepted, At: now.Add(-time.Hour)})
		}
		if err := s.WriteEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
		n, err := s.Sweep(ctx, now.Add(-30*24*time.Hour))
		if err != nil || n != 12 {
			t.Fatalf("Sweep = %d, %v; want 12 deleted", n, err)
		}
		for _, id := range old {
			if got, _ := s.Events(ctx, app, id); len(got) != 0 {
				t.Errorf("old notification %s still has events after the sweep", id)
			}
		}
		for _, id := range fresh {
			if got, _ := s.Events(ctx, app, id); len(got) != 1 {
				t.Errorf("fresh notification %s lost its events in the sweep", id)
			}
		}
		sum, err := s.Summary(ctx, app, now.Add(-41*24*time.Hour), now)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Counts[contracts.EventAccepted] != 15 {
			t.Errorf("rollups after the sweep count %d accepted, want 15 (rollups are kept)", sum.Counts[contracts.EventAccepted])
		}
		if n, err := s.Sweep(ctx, now.Add(-30*24*time.Hour)); err != nil || n != 0 {
			t.Errorf("second Sweep = %d, %v; want 0", n, err)
		}
	}, sqlstore.Migrations)
}

func TestSweepLateEventsAndStop(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := sqlstore.New(db)
		app := ids.New("app")
		at := func(ms int64) contracts.Event {
			return contracts.Event{AppID: app, NotificationID: "n", Type: contracts.EventSent, At: time.UnixMilli(ms)}
		}
		// 1000..1009 old, then new ones with an old straggler written late.
		var evs []contracts.Event
		for i := int64(0); i < 10; i++ {
			evs = append(evs, at(1000+i))
		}
		evs = append(evs, at(5000), at(5001), at(1500), at(5002))
		if err := s.WriteEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
		n, err := s.Sweep(ctx, time.UnixMilli(2000))
		if err != nil || n != 11 {
			t.Fatalf("Sweep = %d, %v; want the 10 old events and the straggler", n, err)
		}
		got, _ := s.Events(ctx, app, "n")
		if len(got) != 3 || got[0].At.UnixMilli() != 5000 {
			t.Errorf("left %+v; want the three new events", got)
		}
		if n, err := s.Sweep(ctx, time.UnixMilli(1)); err != nil || n != 0 {
			t.Errorf("Sweep with nothing old enough = %d, %v", n, err)
		}
	}, sqlstore.Migrations)
}

func TestSweepManyChunks(t *testing.T) {
	db := sqldbtest.SQLite(t, sqlstore.Migrations)
	ctx := context.Background()
	s := sqlstore.New(db)
	app := ids.New("app")
	evs := make([]contracts.Event, 12000)
	for i := range evs {
		evs[i] = contracts.Event{AppID: app, NotificationID: "n", Type: contracts.EventQueued, At: time.UnixMilli(int64(1_000_000 + i))}
	}
	if err := s.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	n, err := s.Sweep(ctx, time.UnixMilli(1_000_000+11_000))
	if err != nil || n != 11000 {
		t.Fatalf("Sweep = %d, %v; want 11000", n, err)
	}
	if got, _ := s.Events(ctx, app, "n"); len(got) != 1000 {
		t.Errorf("%d events left, want 1000", len(got))
	}
}

func benchWrite(b *testing.B, db *sqldb.DB) {
	s := sqlstore.New(db)
	app := ids.New("app")
	chans := []string{"email", "sms", "inapp", "webhook"}
	batch := make([]contracts.Event, benchBatch)
	for i := range batch {
		batch[i] = contracts.Event{AppID: app, NotificationID: ids.New("ntf"), DeliveryID: ids.New("dlv"), Channel: domain.Channel(chans[i%4]),
			Category: "billing", Type: []string{contracts.EventQueued, contracts.EventSent}[i%2], At: time.Now(), LatencyMS: int64(i)}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Fresh, time-ordered ids as in production (a notification's few
		// events share one): index inserts land at the right edge.
		b.StopTimer()
		for j := range batch {
			if j%4 == 0 {
				batch[j].NotificationID = ids.New("ntf")
			} else {
				batch[j].NotificationID = batch[j-j%4].NotificationID
			}
			batch[j].At = time.Now()
		}
		b.StartTimer()
		if err := s.WriteEvents(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkWriteEvents measures the sink's sustained write rate in the
// tracker's default batches of 500 (events + rollup upserts in one transaction).
func BenchmarkWriteEvents(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchWrite(b, sqldbtest.SQLite(b, sqlstore.Migrations)) })
	b.Run("mysql", func(b *testing.B) { benchWrite(b, sqldbtest.MySQL(b, sqlstore.Migrations)) })
}

var benchBatch = 500

// A fan-out's events arrive in one batch: they are stored in packed rows and
// read back complete, in order, with every field; the sweep counts events,
// not rows.
func TestPackedEvents(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := sqlstore.New(db)
		app := ids.New("app")
		big, small := ids.New("ntf"), ids.New("ntf")
		at := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
		var evs []contracts.Event
		const n = 1000
		for i := 0; i < n; i++ {
			e := contracts.Event{AppID: app, NotificationID: big, DeliveryID: fmt.Sprintf("dlv_%04d", i), UserID: fmt.Sprintf("u%d", i),
				Channel: domain.ChannelInApp, Category: "ops", Priority: domain.PriorityLow, Type: contracts.EventSent,
				At: at.Add(time.Duration(i%7) * time.Millisecond), LatencyMS: int64(i)}
			if i == 3 {
				e.Type, e.Error = contracts.EventFailed, "quote \" backslash \\ <tag> & 中文 \x01"
			}
			evs = append(evs, e)
			if i%100 == 0 {
				evs = append(evs, contracts.Event{AppID: app, NotificationID: small, Type: contracts.EventAccepted, At: at})
			}
		}
		if err := s.WriteEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
		var rows int
		if err := db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM analytics_events WHERE notification_id = ?`, big).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows >= n/10 {
			t.Fatalf("%d rows for %d events of one notification: not packed", rows, n)
		}
		got, err := s.Events(ctx, app, big)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != n {
			t.Fatalf("%d events read back, want %d", len(got), n)
		}
		seen := map[string]contracts.Event{}
		for i, e := range got {
			if i > 0 && e.At.Before(got[i-1].At) {
				t.Fatalf("event %d at %v before event %d at %v", i, e.At, i-1, got[i-1].At)
			}
			seen[e.DeliveryID] = e
		}
		for i := 0; i < n; i++ {
			want := evs[0]
			for _, e := range evs {
				if e.DeliveryID == fmt.Sprintf("dlv_%04d", i) {
					want = e
				}
			}
			e, ok := seen[want.DeliveryID]
			want.At = want.At.UTC()
			if !ok || e != want {
				t.Fatalf("event %s: got %+v, want %+v", want.DeliveryID, e, want)
			}
		}
		if got, _ := s.Events(ctx, app, small); len(got) != n/100 {
			t.Fatalf("small notification: %d events, want %d", len(got), n/100)
		}
		deleted, err := s.Sweep(ctx, time.Now())
		if err != nil || deleted != int64(n+n/100) {
			t.Fatalf("Sweep = %d, %v; want %d events", deleted, err, n+n/100)
		}
	})
}

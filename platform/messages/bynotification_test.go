package messages_test

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"testing"
	"testing/fstest"

	"herald.dev/platform/domain"
	"herald.dev/platform/messages"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
)

// TestDeliveriesByNotification checks that every lookup of a notification's
// deliveries finds exactly its rows, whether their ids carry the
// notification's prefix (DeliveryID) or are hash ids from before it, which
// on SQLite are found through different indexes (ByNotification).
func TestDeliveriesByNotification(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := messages.New(db, messages.Options{})
		defer s.Close()

		a, b := newNotif("app_bn"), newNotif("app_bn") // b sorts right after a: its rows must not leak in
		old := newNotif("app_bn")
		old.ID = "ntf_0123456789abcdef0123456789abcdef" // an id that is no ULID
		var want = map[string][]string{}
		var rows []*messages.Delivery
		add := func(n *messages.Notification, id, user string, st domain.DeliveryStatus) {
			rows = append(rows, &messages.Delivery{ID: id, AppID: n.AppID, NotificationID: n.ID, Recipient: user, UserID: user,
				Channel: domain.ChannelEmail, Status: st})
			want[n.ID] = append(want[n.ID], id)
		}
		for _, n := range []*messages.Notification{a, b, old} {
			if _, err := s.Accept(ctx, n); err != nil {
				t.Fatal(err)
			}
			for i, st := range []domain.DeliveryStatus{domain.DeliverySent, domain.DeliveryQueued, domain.DeliveryFailed} {
				user := fmt.Sprintf("u%d", i)
				add(n, messages.DeliveryID(n.ID, user, domain.ChannelEmail), user, st)
				// A hash id, as rows written before the prefix have.
				add(n, fmt.Sprintf("dlv_%032x", i+len(want)*10), "h"+user, st)
			}
		}
		if err := s.SaveDeliveries(ctx, rows); err != nil {
			t.Fatal(err)
		}

		for _, n := range []*messages.Notification{a, b, old} {
			ds, err := s.Deliveries(ctx, n.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got := idsOf(ds); !sameSet(got, want[n.ID]) {
				t.Errorf("Deliveries(%s) = %v, want %v", n.ID, got, want[n.ID])
			}
			ds, err = s.DeliveriesOfApp(ctx, "app_bn", n.ID)
			if err != nil || !sameSet(idsOf(ds), want[n.ID]) {
				t.Errorf("DeliveriesOfApp(%s) = %v, %v", n.ID, idsOf(ds), err)
			}
			if ds, err := s.DeliveriesOfApp(ctx, "app_other", n.ID); err != nil || len(ds) != 0 {
				t.Errorf("another app sees %d deliveries of %s (%v)", len(ds), n.ID, err)
			}
			if open, err := s.OpenDeliveries(ctx, n.ID); err != nil || open != 2 {
				t.Errorf("OpenDeliveries(%s) = %d, %v; want 2", n.ID, open, err)
			}
			final, err := s.FinalDeliveryIDs(ctx, n.ID)
			if err != nil || len(final) != 4 {
				t.Errorf("FinalDeliveryIDs(%s) = %v, %v; want 4 rows", n.ID, final, err)
			}
			reset, err := s.ResetFailed(ctx, "app_bn", n.ID)
			if err != nil || len(reset) != 2 {
				t.Errorf("ResetFailed(%s) = %d rows, %v; want 2", n.ID, len(reset), err)
			}
		}

		if db.Dialect == sqldb.SQLite {
			// Only the hash ids are in the partial index.
			var n int
			if err := db.R.QueryRow(`SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_notification_legacy WHERE notification_id <> '' AND ` +
				`substr(id, 1, 30) <> 'dlv_' || substr(notification_id, 5, 26)`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 3*3+3 { // the hash rows, and the prefixed rows of the id that is no ULID
				t.Errorf("the partial index holds %d rows, want 12", n)
			}
		}
	})
}

func idsOf(ds []*messages.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestDeliveryPrefixMigration upgrades a database written under the first
// schema, whose rows the old full index held, and finds them afterwards.
func TestDeliveryPrefixMigration(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "", sqldb.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	first, err := fs.ReadFile(messages.Migrations.FS, "sqlite/0001_messages.sql")
	if err != nil {
		t.Fatal(err)
	}
	v1 := sqldb.Source{Component: "messages", FS: fstest.MapFS{"sqlite/0001_messages.sql": {Data: first}}}
	if _, err := db.Migrate(ctx, v1); err != nil {
		t.Fatal(err)
	}
	n := newNotif("app_mig")
	ids := []string{messages.DeliveryID(n.ID, "u1", domain.ChannelEmail), "dlv_00000000000000000000000000000abc"}
	for i, id := range ids {
		if _, err := db.W.Exec(`INSERT INTO deliveries (id, app_id, notification_id, recipient, channel, status, created_at, updated_at)
			VALUES (?, 'app_mig', ?, ?, 'email', 'sent', 1, 1)`, id, n.ID, fmt.Sprintf("u%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	applied, err := db.Migrate(ctx, messages.Migrations)
	if err != nil || len(applied) == 0 {
		t.Fatalf("upgrade applied %v, %v", applied, err)
	}
	s := messages.New(db, messages.Options{})
	defer s.Close()
	ds, err := s.Deliveries(ctx, n.ID)
	if err != nil || !sameSet(idsOf(ds), ids) {
		t.Fatalf("after the upgrade Deliveries = %v, %v; want %v", idsOf(ds), err, ids)
	}
}

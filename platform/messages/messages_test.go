package messages_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"herald.dev/platform/domain"
	"herald.dev/platform/ids"
	"herald.dev/platform/messages"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
)

func newNotif(app string) *messages.Notification {
	now := time.Now().UTC()
	return &messages.Notification{
		ID: ids.New("ntf"), AppID: app, Status: domain.MessageAccepted, Priority: domain.PriorityMedium,
		Kind: domain.KindNotice, Category: "billing", TemplateCode: "welcome", TemplateVersion: 2,
		Payload: messages.Payload{Data: map[string]any{"name": "Ada", "big": json.Number("9007199254740993")}, Recipients: []domain.Recipient{{UserID: "u1"}}},
		NextAt:  now.Add(time.Minute), CreatedAt: now, UpdatedAt: now,
	}
}

func TestStore(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := messages.New(db, messages.Options{})
		defer s.Close()

		t.Run("accept and get", func(t *testing.T) {
			n := newNotif("app_a")
			res, err := s.Accept(ctx, n)
			if err != nil || res.ID != n.ID || res.Duplicate {
				t.Fatalf("accept = %+v, %v", res, err)
			}
			got, err := s.Get(ctx, "app_a", n.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.TemplateVersion != 2 || got.Payload.Data["name"] != "Ada" || got.Payload.Recipients[0].UserID != "u1" {
				t.Fatalf("round trip lost data: %+v", got)
			}
			if got.Payload.Data["big"] != json.Number("9007199254740993") {
				t.Fatalf("a large integer lost digits: %v", got.Payload.Data["big"])
			}
			if _, err := s.Get(ctx, "app_b", n.ID); !errors.Is(err, messages.ErrNotFound) {
				t.Fatalf("other app reads notification: %v", err)
			}
		})

		t.Run("take", func(t *testing.T) {
			n := newNotif("app_a")
			if _, err := s.Accept(ctx, n); err != nil {
				t.Fatal(err)
			}
			if got := s.Take(n.ID); got == nil || got.ID != n.ID || got.Status != domain.MessageAccepted {
				t.Fatalf("Take after accept = %+v", got)
			}
			if got := s.Take(n.ID); got != nil {
				t.Fatal("a notification was taken twice")
			}
			// Claimed at accept: the claimer keeps its own copy.
			p := newNotif("app_a")
			p.Status = domain.MessageProcessing
			if _, err := s.Accept(ctx, p); err != nil {
				t.Fatal(err)
			}
			if got := s.Take(p.ID); got != nil {
				t.Fatalf("a notification written processing was kept for Take: %+v", got)
			}
		})

		t.Run("idempotency", func(t *testing.T) {
			a := newNotif("app_a")
			a.IdempotencyKey, a.RequestHash = "k1", "h1"
			if _, err := s.Accept(ctx, a); err != nil {
				t.Fatal(err)
			}
			b := newNotif("app_a")
			b.IdempotencyKey, b.RequestHash = "k1", "h1"
			res, err := s.Accept(ctx, b)
			if err != nil || !res.Duplicate || res.ID != a.ID {
				t.Fatalf("repeat = %+v, %v; want duplicate of %s", res, err, a.ID)
			}
			c := newNotif("app_a")
			c.IdempotencyKey, c.RequestHash = "k1", "other"
			if _, err := s.Accept(ctx, c); !errors.Is(err, messages.ErrIdempotencyConflict) {
				t.Fatalf("conflict = %v", err)
			}
			d := newNotif("app_b") // same key, other app: independent
			d.IdempotencyKey, d.RequestHash = "k1", "other"
			if res, err := s.Accept(ctx, d); err != nil || res.Duplicate {
				t.Fatalf("other app = %+v, %v", res, err)
			}
			if _, err := s.Get(ctx, "app_a", c.ID); !errors.Is(err, messages.ErrNotFound) {
				t.Fatal("conflicting request was written")
			}
		})

		t.Run("concurrent group commit", func(t *testing.T) {
			const n = 400
			var wg sync.WaitGroup
			errs := make(chan error, n)
			idsOut := make(chan string, n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					x := newNotif("app_c")
					if i%4 == 0 { // a quarter share 10 keys: 10 winners, the rest duplicates
						x.IdempotencyKey, x.RequestHash = fmt.Sprintf("key-%d", i%40), "same"
					}
					res, err := s.Accept(ctx, x)
					if err != nil {
						errs <- err
						return
					}
					if !res.Duplicate {
						idsOut <- res.ID
					}
				}(i)
			}
			wg.Wait()
			close(errs)
			close(idsOut)
			for err := range errs {
				t.Fatal(err)
			}
			var count int
			if err := db.R.QueryRow(`SELECT COUNT(*) FROM notifications WHERE app_id = 'app_c'`).Scan(&count); err != nil {
				t.Fatal(err)
			}
			if want := 300 + 10; count != want || len(idsOut) != want {
				t.Fatalf("rows %d, answered new %d, want %d", count, len(idsOut), want)
			}
		})

		t.Run("deliveries never leave a final state", func(t *testing.T) {
			n := newNotif("app_a")
			if _, err := s.Accept(ctx, n); err != nil {
				t.Fatal(err)
			}
			d := &messages.Delivery{AppID: "app_a", NotificationID: n.ID, Recipient: "u1", UserID: "u1", Channel: domain.ChannelEmail,
				Address: "a@example.com", Status: domain.DeliveryQueued, Attempts: 1, Error: "timeout", NextAt: time.Now().Add(-time.Second)}
			if err := s.SaveDeliveries(ctx, []*messages.Delivery{d}); err != nil {
				t.Fatal(err)
			}
			if d.ID != messages.DeliveryID(n.ID, "u1", domain.ChannelEmail) {
				t.Fatalf("delivery id %s is not deterministic", d.ID)
			}
			due, err := s.DueDeliveries(ctx, time.Now(), 10)
			if err != nil || len(due) != 1 || due[0].ID != d.ID {
				t.Fatalf("due = %v, %v", due, err)
			}
			sent := *d
			sent.Status, sent.Attempts, sent.Error, sent.SentAt, sent.NextAt = domain.DeliverySent, 2, "", time.Now(), time.Time{}
			if err := s.SaveDeliveries(ctx, []*messages.Delivery{&sent}); err != nil {
				t.Fatal(err)
			}
			late := *d // a stale retry outcome arriving after the send
			late.Status, late.Attempts = domain.DeliveryQueued, 3
			if err := s.SaveDeliveries(ctx, []*messages.Delivery{&late}); err != nil {
				t.Fatal(err)
			}
			got, err := s.GetDelivery(ctx, d.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != domain.DeliverySent || got.Attempts != 2 || got.SentAt.IsZero() {
				t.Fatalf("final delivery was changed: %+v", got)
			}
			open, err := s.OpenDeliveries(ctx, n.ID)
			if err != nil || open != 0 {
				t.Fatalf("open = %d, %v", open, err)
			}
		})

		t.Run("due, transition, list, reset", func(t *testing.T) {
			n := newNotif("app_d")
			n.NextAt = time.Now().Add(-time.Second)
			if _, err := s.Accept(ctx, n); err != nil {
				t.Fatal(err)
			}
			due, err := s.Due(ctx, time.Now(), 100, domain.MessageAccepted)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, x := range due {
				found = found || x.ID == n.ID
			}
			if !found {
				t.Fatal("accepted notification not due")
			}
			if c, err := s.Transition(ctx, []string{n.ID}, domain.MessageProcessing, time.Time{}, "", domain.MessageAccepted); err != nil || c != 1 {
				t.Fatalf("transition = %d, %v", c, err)
			}
			if c, _ := s.Transition(ctx, []string{n.ID}, domain.MessageProcessing, time.Time{}, "", domain.MessageAccepted); c != 0 {
				t.Fatal("transition from a status it is not in")
			}
			f := &messages.Delivery{AppID: "app_d", NotificationID: n.ID, Recipient: "u9", UserID: "u9", Channel: domain.ChannelWebhook,
				Status: domain.DeliveryFailed, Attempts: 8, Error: "500"}
			if err := s.SaveDeliveries(ctx, []*messages.Delivery{f}); err != nil {
				t.Fatal(err)
			}
			list, _, err := s.List(ctx, "app_d", messages.Filter{UserID: "u9", Channel: domain.ChannelWebhook})
			if err != nil || len(list) != 1 || list[0].ID != n.ID {
				t.Fatalf("list by user = %v, %v", list, err)
			}
			if list, _, _ := s.List(ctx, "app_d", messages.Filter{UserID: "nobody"}); len(list) != 0 {
				t.Fatal("list by unknown user returned rows")
			}
			reset, err := s.ResetFailed(ctx, "app_d", n.ID)
			if err != nil || len(reset) != 1 || reset[0].Status != domain.DeliveryPending {
				t.Fatalf("reset = %v, %v", reset, err)
			}
			if reset, _ := s.ResetFailed(ctx, "app_other", n.ID); len(reset) != 0 {
				t.Fatal("other app reset deliveries")
			}
		})

		t.Run("pagination", func(t *testing.T) {
			for i := 0; i < 7; i++ {
				if _, err := s.Accept(ctx, newNotif("app_p")); err != nil {
					t.Fatal(err)
				}
			}
			seen := map[string]bool{}
			cursor := ""
			for page := 0; page < 10; page++ {
				list, next, err := s.List(ctx, "app_p", messages.Filter{Limit: 3, Cursor: cursor})
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range list {
					if seen[n.ID] {
						t.Fatalf("%s twice", n.ID)
					}
					seen[n.ID] = true
				}
				if next == "" {
					break
				}
				cursor = next
			}
			if len(seen) != 7 {
				t.Fatalf("paged through %d of 7", len(seen))
			}
		})
	})
}

func BenchmarkAccept(b *testing.B) {
	db := sqldbtest.SQLite(b)
	s := messages.New(db, messages.Options{})
	defer s.Close()
	ctx := context.Background()
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Accept(ctx, newNotif("app_bench")); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkSaveDeliveries writes the rows of one big fan-out, rows per
// transaction as the sub-benchmark name says.
func BenchmarkSaveDeliveries(b *testing.B) {
	for _, per := range []int{256, 2048} {
		b.Run(fmt.Sprintf("tx%d", per), func(b *testing.B) {
			db := sqldbtest.SQLite(b)
			s := messages.New(db, messages.Options{})
			defer s.Close()
			ctx := context.Background()
			n := newNotif("app_bench")
			if _, err := s.Accept(ctx, n); err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			batch := make([]*messages.Delivery, 0, per)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				u := fmt.Sprintf("u%d", i)
				batch = append(batch, &messages.Delivery{AppID: "app_bench", NotificationID: n.ID, Recipient: u, UserID: u,
					Channel: domain.ChannelInApp, Address: u, Status: domain.DeliverySent, Attempts: 1, SentAt: now})
				if len(batch) == cap(batch) || i == b.N-1 {
					if err := s.SaveDeliveries(ctx, batch); err != nil {
						b.Fatal(err)
					}
					batch = batch[:0]
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// Delivery ids are deterministic, fit the 64-character id columns, keep
// DeliveryKey unique, and sort by recipient within a notification.
func TestDeliveryIDOrder(t *testing.T) {
	ntf := "ntf_01JD8Y3Z6XK4Q2W7E5R9T1Y3U5"
	var prev string
	keys := map[[12]byte]bool{}
	for i := 0; i < 2000; i++ {
		for _, ch := range []domain.Channel{domain.ChannelEmail, domain.ChannelInApp} {
			id := messages.DeliveryID(ntf, fmt.Sprintf("u%06d", i), ch)
			if len(id) != 64 || !strings.HasPrefix(id, "dlv_01JD8Y3Z6XK4Q2W7E5R9T1Y3U5") {
				t.Fatalf("id %q: want 64 characters after the notification's ULID", id)
			}
			if id != messages.DeliveryID(ntf, fmt.Sprintf("u%06d", i), ch) {
				t.Fatal("not deterministic")
			}
			k, ok := messages.DeliveryKey(id)
			if !ok || keys[k] {
				t.Fatalf("DeliveryKey of %q: %v, duplicate %v", id, ok, keys[k])
			}
			keys[k] = true
			if ch == domain.ChannelEmail {
				if id[:46] < prev {
					t.Fatalf("u%06d sorts before the previous recipient", i)
				}
				prev = id[:46]
			}
		}
	}
	if a, b := messages.DeliveryID(ntf, "u1", domain.ChannelEmail), messages.DeliveryID(ntf, "u10", domain.ChannelEmail); a[:46] >= b[:46] {
		t.Errorf("u1 (%s) should sort before u10 (%s)", a, b)
	}
	if id := messages.DeliveryID("n1", "u1", domain.ChannelEmail); len(id) != 36 {
		t.Errorf("non-ULID notification id: %q", id)
	}
}

// Complete marks only processing notifications done, each with its own
// fan-out total (0 keeps the recorded one), and counts what changed.
func TestComplete(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := messages.New(db, messages.Options{})
		defer s.Close()
		var cs []messages.Completion
		var ns []*messages.Notification
		for i := 0; i < 300; i++ { // more than one IN list
			n := newNotif("app_c")
			if _, err := s.Accept(ctx, n); err != nil {
				t.Fatal(err)
			}
			ns = append(ns, n)
			if i == 299 {
				continue // stays accepted: not claimable by Complete
			}
			if ok, _, err := s.Claim(ctx, n.ID, time.Now().Add(time.Minute)); err != nil || !ok {
				t.Fatalf("claim: %v %v", ok, err)
			}
			cs = append(cs, messages.Completion{ID: n.ID, Total: i % 3})
		}
		if err := s.SetDeliveriesTotal(ctx, ns[0].ID, 7); err != nil { // total 0 keeps this
			t.Fatal(err)
		}
		cs = append(cs, messages.Completion{ID: ns[299].ID, Total: 5})
		c, err := s.Complete(ctx, cs)
		if err != nil || c != 299 {
			t.Fatalf("Complete = %d, %v; want 299", c, err)
		}
		for i, n := range ns {
			got, err := s.Load(ctx, n.ID)
			if err != nil {
				t.Fatal(err)
			}
			want, total := domain.MessageDone, i%3
			switch i {
			case 0:
				total = 7
			case 299:
				want, total = domain.MessageAccepted, 0
			}
			if got.Status != want || got.DeliveriesTotal != total || (want == domain.MessageDone && (got.CompletedAt.IsZero() || !got.NextAt.IsZero())) {
				t.Fatalf("notification %d: %s total %d completed %v next %v; want %s total %d", i, got.Status, got.DeliveriesTotal, got.CompletedAt, got.NextAt, want, total)
			}
		}
	})
}

// TestUserIndex turns the per-user delivery index off and on again: off,
// the index is gone and a user filter is refused (other filters work);
// on, it is back and the filter finds rows written while it was off.
func TestUserIndex(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := messages.New(db, messages.Options{})
		defer s.Close()
		hasIndex := func() bool {
			t.Helper()
			has, err := s.HasUserIndex(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return has
		}
		if !hasIndex() {
			t.Fatal("the migrations did not create deliveries_user")
		}
		for range 2 { // twice: setting the state it is already in is a no-op
			if err := s.SetUserIndex(ctx, false); err != nil {
				t.Fatal(err)
			}
		}
		if hasIndex() {
			t.Fatal("deliveries_user still there after SetUserIndex(false)")
		}

		n := newNotif("app_ui")
		if _, err := s.Accept(ctx, n); err != nil {
			t.Fatal(err)
		}
		d := &messages.Delivery{AppID: "app_ui", NotificationID: n.ID, Recipient: "u7", UserID: "u7", Channel: domain.ChannelEmail,
			Status: domain.DeliverySent}
		if err := s.SaveDeliveries(ctx, []*messages.Delivery{d}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.List(ctx, "app_ui", messages.Filter{UserID: "u7"}); !errors.Is(err, messages.ErrNoUserIndex) {
			t.Fatalf("list by user without the index = %v, want ErrNoUserIndex", err)
		}
		if list, _, err := s.List(ctx, "app_ui", messages.Filter{Channel: domain.ChannelEmail}); err != nil || len(list) != 1 {
			t.Fatalf("list by channel without the index = %v, %v", list, err)
		}

		for range 2 {
			if err := s.SetUserIndex(ctx, true); err != nil {
				t.Fatal(err)
			}
		}
		if !hasIndex() {
			t.Fatal("deliveries_user missing after SetUserIndex(true)")
		}
		list, _, err := s.List(ctx, "app_ui", messages.Filter{UserID: "u7"})
		if err != nil || len(list) != 1 || list[0].ID != n.ID {
			t.Fatalf("list by user after re-creating the index = %v, %v", list, err)
		}
	})
}

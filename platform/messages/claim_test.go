package messages_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald.dev/platform/domain"
	"herald.dev/platform/messages"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
)

func TestClaim(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := messages.New(db, messages.Options{})
		defer s.Close()
		var ns []*messages.Notification
		for i := 0; i < 50; i++ {
			n := newNotif("app_claim")
			if _, err := s.Accept(ctx, n); err != nil {
				t.Fatal(err)
			}
			ns = append(ns, n)
		}
		lease := time.Now().Add(time.Minute)
		// every notification claimed by 4 racing consumers: exactly one wins each
		var wins atomic.Int64
		var wg sync.WaitGroup
		for _, n := range ns {
			for k := 0; k < 4; k++ {
				wg.Add(1)
				go func(id string) {
					defer wg.Done()
					ok, resumed, err := s.Claim(ctx, id, lease)
					if resumed {
						t.Error("a first claim reported a resumed dispatch")
					}
					if err != nil {
						t.Error(err)
					}
					if ok {
						wins.Add(1)
					}
				}(n.ID)
			}
		}
		wg.Wait()
		if wins.Load() != int64(len(ns)) {
			t.Fatalf("%d claims won for %d notifications", wins.Load(), len(ns))
		}
		got, err := s.Get(ctx, "app_claim", ns[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != domain.MessageProcessing || got.DispatchedAt.IsZero() || got.NextAt.UnixMilli() != lease.UnixMilli() {
			t.Fatalf("claimed notification: %+v", got)
		}
		if ok, _, err := s.Claim(ctx, ns[0].ID, lease); ok || err != nil {
			t.Fatalf("claim of a processing notification = %v, %v", ok, err)
		}
		if ok, _, err := s.Claim(ctx, "ntf_missing", lease); ok || err != nil {
			t.Fatalf("claim of a missing notification = %v, %v", ok, err)
		}
		// reconciliation requeues it; the next claim knows it was dispatched before
		if _, err := s.Transition(ctx, []string{ns[0].ID}, domain.MessageQueued, lease, "", domain.MessageProcessing); err != nil {
			t.Fatal(err)
		}
		if ok, resumed, err := s.Claim(ctx, ns[0].ID, lease); !ok || !resumed || err != nil {
			t.Fatalf("claim of a requeued notification = %v, %v, %v; want a resumed claim", ok, resumed, err)
		}
	})
}

package services_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"herald.dev/platform/domain"
	"herald.dev/platform/messages"
	"herald.dev/platform/queue"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
)

// fakeHolder claims every notification offered, as the outbound handler of
// the process does, and records what it is given back.
type fakeHolder struct {
	mu     sync.Mutex
	held   []string
	unheld map[string]bool // id -> committed
}

func (h *fakeHolder) Hold(n *messages.Notification) bool {
	now := time.Now()
	n.Status, n.NextAt, n.DispatchedAt = domain.MessageProcessing, now.Add(2*time.Minute), now
	h.mu.Lock()
	h.held = append(h.held, n.ID)
	h.mu.Unlock()
	return true
}

func (h *fakeHolder) Unhold(id string, committed bool) {
	h.mu.Lock()
	if h.unheld == nil {
		h.unheld = map[string]bool{}
	}
	h.unheld[id] = committed
	h.mu.Unlock()
}

func (h *fakeHolder) state() ([]string, map[string]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := map[string]bool{}
	for k, v := range h.unheld {
		u[k] = v
	}
	return slices.Clone(h.held), u
}

// TestSendClaimedAtAccept: with a holder, an immediate send is written
// already claimed (processing, lease, dispatch time) yet answered and
// published as accepted; a send that wrote no row of its own, or whose
// publish failed, is given back; scheduled sends are not offered.
func TestSendClaimedAtAccept(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		h := &fakeHolder{}
		e.svc.SetHolder(h)

		id, status := e.send(welcome(nil), "Idempotency-Key", "k1")
		if status != "accepted" {
			t.Fatalf("answered %s, want accepted", status)
		}
		n, err := e.store.Get(context.Background(), e.appA, id)
		if err != nil {
			t.Fatal(err)
		}
		if n.Status != domain.MessageProcessing || n.DispatchedAt.IsZero() || time.Until(n.NextAt) < time.Minute {
			t.Fatalf("row %s dispatched %v next_at %v; want processing under the holder's lease", n.Status, n.DispatchedAt, n.NextAt)
		}
		if got := e.q.published(); len(got) != 1 || got[0].ID != id {
			t.Fatalf("published %+v", got)
		}
		held, unheld := h.state()
		if !slices.Equal(held, []string{id}) || len(unheld) != 0 {
			t.Fatalf("held %v, given back %v", held, unheld)
		}

		// A replay writes nothing of its own: the new id is given back.
		rid, _ := e.send(welcome(nil), "Idempotency-Key", "k1")
		if rid != id {
			t.Fatalf("replay answered %s, want %s", rid, id)
		}
		// A conflict too.
		if r := e.do("POST", "/v1/notifications", e.keyA, welcome(map[string]any{"priority": "low"}), "Idempotency-Key", "k1"); r.status != 409 {
			t.Fatalf("conflict: %d %s", r.status, r.body)
		}
		held, unheld = h.state()
		if len(held) != 3 || len(unheld) != 2 {
			t.Fatalf("held %v, given back %v; want 3 and the last two", held, unheld)
		}
		for _, x := range held[1:] {
			if c, ok := unheld[x]; !ok || c {
				t.Fatalf("%s given back %v (committed %v), want given back uncommitted", x, ok, c)
			}
		}

		// A failed publish gives back a committed row.
		e.q.setErr(queue.ErrFull)
		fid, _ := e.send(welcome(nil))
		e.q.setErr(nil)
		if _, unheld = h.state(); !unheld[fid] {
			t.Fatalf("failed publish of %s: given back %v, want committed", fid, unheld)
		}

		// Scheduled sends are the outbox sweeper's.
		before := len(held) + 1
		_, status = e.send(welcome(map[string]any{"send_at": time.Now().Add(time.Hour).Format(time.RFC3339)}))
		if held, _ = h.state(); status != "scheduled" || len(held) != before {
			t.Fatalf("scheduled send: status %s, %d held (want %d)", status, len(held), before)
		}
	})
}

package inbox_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
	"herald.dev/services/inbox"
)

type recorder struct {
	mu     sync.Mutex
	pushes []inbox.Event
	events []contracts.Event
}

func (r *recorder) Push(ev inbox.Event) {
	r.mu.Lock()
	cp := *ev.Item
	r.pushes = append(r.pushes, inbox.Event{Type: ev.Type, Item: &cp})
	r.mu.Unlock()
}

func (r *recorder) Track(evs ...contracts.Event) {
	r.mu.Lock()
	r.events = append(r.events, evs...)
	r.mu.Unlock()
}

func (r *recorder) pushed(typ string) []*inbox.Item {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*inbox.Item
	for _, p := range r.pushes {
		if p.Type == typ {
			out = append(out, p.Item)
		}
	}
	return out
}

func (r *recorder) tracked(typ string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func newStore(t *testing.T, db *sqldb.DB) (*inbox.Store, *recorder) {
	rec := &recorder{}
	s := inbox.NewStore(db, inbox.Options{Pusher: rec, Tracker: rec})
	t.Cleanup(s.Close)
	return s, rec
}

func item(app, user, delivery string, kind domain.Kind, todoKey string) contracts.InboxItem {
	return contracts.InboxItem{AppID: app, UserID: user, NotificationID: "ntf_" + delivery, DeliveryID: delivery,
		Kind: kind, Category: "exams", Title: "Title " + delivery, Body: "Body", TodoKey: todoKey,
		Data: map[string]any{"room": "101"}}
}

func TestDeliverIdempotentUnderConcurrency(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s, rec := newStore(t, db)
		ctx := context.Background()
		// 20 distinct deliveries, each delivered 10 times concurrently.
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for copyN := 0; copyN < 10; copyN++ {
			for i := 0; i < 20; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					if err := s.Deliver(ctx, item("app_a", "u1", fmt.Sprintf("dlv_%02d", i), domain.KindNotice, "")); err != nil {
						errs <- err
					}
				}(i)
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// And once more, sequentially, after the fact.
		if err := s.Deliver(ctx, item("app_a", "u1", "dlv_05", domain.KindNotice, "")); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.W.QueryRow(`SELECT COUNT(*) FROM inbox_items`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 20 {
			t.Fatalf("%d rows for 20 deliveries", n)
		}
		pushed := rec.pushed(inbox.EventItem)
		if len(pushed) != 20 {
			t.Fatalf("%d pushes for 20 deliveries", len(pushed))
		}
		seen := map[string]bool{}
		for i, it := range pushed {
			if seen[it.DeliveryID] {
				t.Fatalf("delivery %s pushed twice", it.DeliveryID)
			}
			seen[it.DeliveryID] = true
			if i > 0 && it.ID <= pushed[i-1].ID {
				t.Fatalf("pushes out of id order: %s after %s", it.ID, pushed[i-1].ID)
			}
		}
		items, _, err := s.List(ctx, "app_a", "u1", inbox.Filter{Limit: 100})
		if err != nil || len(items) != 20 {
			t.Fatalf("list: %d, %v", len(items), err)
		}
		if items[0].State != inbox.StateUnread || items[0].Data["room"] != "101" || items[0].Category != "exams" {
			t.Fatalf("stored %+v", items[0])
		}
	})
}

func TestDeliverRejectsBadItems(t *testing.T) {
	s, rec := newStore(t, sqldbtest.SQLite(t))
	ctx := context.Background()
	for name, it := range map[string]contracts.InboxItem{
		"no user":        {AppID: "a", DeliveryID: "d1"},
		"no delivery id": {AppID: "a", UserID: "u"},
		"todo no key":    {AppID: "a", UserID: "u", DeliveryID: "d2", Kind: domain.KindTodo},
		"bad kind":       {AppID: "a", UserID: "u", DeliveryID: "d3", Kind: "memo"},
	} {
		err := s.Deliver(ctx, it)
		var se *contracts.SendError
		if !errors.As(err, &se) || se.Retryable {
			t.Fatalf("%s: %v, want a permanent send error", name, err)
		}
	}
	if len(rec.pushed(inbox.EventItem)) != 0 {
		t.Fatal("bad items were pushed")
	}
	// A long title is cut to the column size on a character boundary.
	long := item("a", "u", "d4", domain.KindNotice, "")
	long.Title = ""
	for i := 0; i < 600; i++ {
		long.Title += "题"
	}
	if err := s.Deliver(ctx, long); err != nil {
		t.Fatal(err)
	}
	items, _, _ := s.List(ctx, "a", "u", inbox.Filter{})
	if len(items) != 1 || len([]rune(items[0].Title)) != 500 {
		t.Fatalf("title not truncated to 500 characters: %d", len([]rune(items[0].Title)))
	}
}

func TestStateTransitions(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s, rec := newStore(t, db)
		ctx := context.Background()
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(s.Deliver(ctx, item("app_a", "u1", "n1", domain.KindNotice, "")))
		must(s.Deliver(ctx, item("app_a", "u1", "r1", domain.KindReminder, "")))
		must(s.Deliver(ctx, item("app_a", "u1", "t1", domain.KindTodo, "exam-1")))
		must(s.Deliver(ctx, item("app_a", "u2", "t2", domain.KindTodo, "exam-1")))
		must(s.Deliver(ctx, item("app_a", "u3", "t3", domain.KindTodo, "exam-1")))
		must(s.Deliver(ctx, item("app_a", "u1", "t4", domain.KindTodo, "exam-2")))
		must(s.Deliver(ctx, item("app_b", "u1", "t5", domain.KindTodo, "exam-1")))

		byDelivery := map[string]string{}
		for _, it := range rec.pushed(inbox.EventItem) {
			byDelivery[it.DeliveryID] = it.ID
		}
		if unread, pending, err := s.Counts(ctx, "app_a", "u1"); err != nil || unread != 2 || pending != 2 {
			t.Fatalf("counts %d %d %v", unread, pending, err)
		}

		// Read a notice: changes once, then is a no-op.
		it, changed, err := s.MarkRead(ctx, "app_a", "u1", byDelivery["n1"])
		if err != nil || !changed || it.State != inbox.StateRead || it.ReadAt.IsZero() {
			t.Fatalf("read: %+v %v %v", it, changed, err)
		}
		if _, changed, err := s.MarkRead(ctx, "app_a", "u1", byDelivery["n1"]); err != nil || changed {
			t.Fatalf("read again: %v %v", changed, err)
		}
		// Wrong kind, wrong user, wrong app.
		if _, _, err := s.MarkRead(ctx, "app_a", "u1", byDelivery["t1"]); !errors.Is(err, inbox.ErrWrongKind) {
			t.Fatalf("reading a to-do: %v", err)
		}
		if _, _, err := s.MarkDone(ctx, "app_a", "u1", byDelivery["r1"]); !errors.Is(err, inbox.ErrWrongKind) {
			t.Fatalf("completing a reminder: %v", err)
		}
		if _, _, err := s.MarkRead(ctx, "app_a", "u2", byDelivery["n1"]); !errors.Is(err, inbox.ErrNotFound) {
			t.Fatalf("another user's item: %v", err)
		}
		if _, _, err := s.MarkDone(ctx, "app_b", "u1", byDelivery["t1"]); !errors.Is(err, inbox.ErrNotFound) {
			t.Fatalf("another app's item: %v", err)
		}
		// The user completes a to-do.
		it, changed, err = s.MarkDone(ctx, "app_a", "u1", byDelivery["t1"])
		if err != nil || !changed || it.State != inbox.StateDone || it.DoneAt.IsZero() {
			t.Fatalf("done: %+v %v %v", it, changed, err)
		}
		// Read all: the reminder only (the notice is read already, to-dos are not read).
		changedItems, err := s.MarkAllRead(ctx, "app_a", "u1")
		if err != nil || len(changedItems) != 1 || changedItems[0].ID != byDelivery["r1"] {
			t.Fatalf("read all: %v %v", changedItems, err)
		}
		// The app completes exam-1 for u2 only, then for everyone left.
		done, err := s.CompleteTodo(ctx, "app_a", "exam-1", "u2")
		if err != nil || len(done) != 1 || done[0].UserID != "u2" {
			t.Fatalf("complete for u2: %v %v", done, err)
		}
		done, err = s.CompleteTodo(ctx, "app_a", "exam-1", "")
		if err != nil || len(done) != 1 || done[0].UserID != "u3" {
			t.Fatalf("complete for all: %v %v", done, err)
		}
		if done, _ := s.CompleteTodo(ctx, "app_a", "exam-1", ""); len(done) != 0 {
			t.Fatalf("completing twice changed %d", len(done))
		}
		// Other app's to-do with the same key is untouched; exam-2 is still pending.
		if items, _, _ := s.List(ctx, "app_b", "u1", inbox.Filter{}); items[0].State != inbox.StatePending {
			t.Fatalf("app B's to-do: %s", items[0].State)
		}
		if unread, pending, _ := s.Counts(ctx, "app_a", "u1"); unread != 0 || pending != 1 {
			t.Fatalf("counts after: %d unread %d pending", unread, pending)
		}
		// Every change was pushed and tracked exactly once.
		if n := len(rec.pushed(inbox.EventState)); n != 5 {
			t.Fatalf("%d state pushes, want 5", n)
		}
		if rec.tracked(contracts.EventRead) != 2 || rec.tracked(contracts.EventDone) != 3 {
			t.Fatalf("tracked %d read, %d done", rec.tracked(contracts.EventRead), rec.tracked(contracts.EventDone))
		}

		// Filters and paging.
		todos, _, _ := s.List(ctx, "app_a", "u1", inbox.Filter{Kind: domain.KindTodo})
		pending, _, _ := s.List(ctx, "app_a", "u1", inbox.Filter{State: inbox.StatePending})
		if len(todos) != 2 || len(pending) != 1 || pending[0].TodoKey != "exam-2" {
			t.Fatalf("filters: %d todos, %d pending", len(todos), len(pending))
		}
		p1, next, _ := s.List(ctx, "app_a", "u1", inbox.Filter{Limit: 3})
		p2, next2, _ := s.List(ctx, "app_a", "u1", inbox.Filter{Limit: 3, Cursor: next})
		var all []string
		for _, it := range append(p1, p2...) {
			all = append(all, it.ID)
		}
		if len(all) != 4 || next2 != "" || !slices.IsSortedFunc(all, func(a, b string) int { return -cmpStr(a, b) }) {
			t.Fatalf("paging: %v next %q", all, next2)
		}
		after, err := s.After(ctx, "app_a", "u1", p1[1].ID, 10)
		if err != nil || len(after) != 1 || after[0].ID != p1[0].ID {
			t.Fatalf("after: %v %v", after, err)
		}
	})
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestClose(t *testing.T) {
	db := sqldbtest.SQLite(t)
	s := inbox.NewStore(db, inbox.Options{})
	if err := s.Deliver(context.Background(), item("a", "u", "d1", domain.KindNotice, "")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.Deliver(context.Background(), item("a", "u", "d2", domain.KindNotice, "")); !errors.Is(err, inbox.ErrClosed) {
		t.Fatalf("deliver after close: %v", err)
	}
}

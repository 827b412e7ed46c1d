package outbound

import (
	"context"
	"fmt"
	"testing"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/messages"
	"herald.dev/platform/queue"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
)

// acceptHeld stores a notification as the API does with a holder: claimed
// by e.h at accept. publish=false loses the lane message (a crash between
// the commit and the publish, or a lane that is gone).
func (e *env) acceptHeld(n *messages.Notification, publish bool) {
	e.t.Helper()
	e.hold(n)
	if _, err := e.store.Accept(context.Background(), n); err != nil {
		e.t.Fatal(err)
	}
	if publish {
		e.publish(n)
	}
}

// u1Env is an in-app environment whose directory knows the user u1.
func u1Env(t *testing.T, db *sqldb.DB) *env {
	e := newEnv(t, db, domain.ChannelInApp)
	e.dir.add(&contracts.Profile{UserID: "u1"})
	return e
}

// publish hands n's lane message to the handler.
func (e *env) publish(n *messages.Notification) {
	e.t.Helper()
	if err := e.q.Publish(context.Background(), queue.Message{ID: n.ID, AppID: n.AppID, Priority: n.Priority}); err != nil {
		e.t.Fatal(err)
	}
}

// wantSentOnce fails unless n reached the in-app sender exactly once.
func (e *env) wantSentOnce(n *messages.Notification) {
	e.t.Helper()
	if c := sendsTo(e.senders[domain.ChannelInApp], n.ID); c != 1 {
		e.t.Fatalf("%s sent %d times, want once", n.ID, c)
	}
}

// hold claims n, waiting for Run to start claiming.
func (e *env) hold(n *messages.Notification) {
	e.t.Helper()
	waitFor(e.t, "the handler to claim "+n.ID, func() bool { return e.h.Hold(n) })
}

func sendsTo(s *fakeSender, notificationID string) int {
	calls, _ := s.snapshot()
	c := 0
	for _, cl := range calls {
		if cl.d.NotificationID == notificationID {
			c++
		}
	}
	return c
}

// TestPreclaimFanout: notifications claimed at accept are written
// processing with this process's lease and dispatch time, and each is
// delivered once, on both dialects.
func TestPreclaimFanout(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, domain.ChannelInApp)
		for i := 0; i < 40; i++ {
			e.dir.add(&contracts.Profile{UserID: fmt.Sprintf("u%d", i)})
		}
		if e.h != nil || (&Handler{}).Hold(e.notification(users("u0"))) {
			t.Fatal("a handler that does not run claimed a notification")
		}
		e.start()
		var ns []*messages.Notification
		for i := 0; i < 40; i++ {
			n := e.notification(users(fmt.Sprintf("u%d", i)), withPriority(domain.Priorities[i%3]))
			e.hold(n)
			if _, err := e.store.Accept(context.Background(), n); err != nil {
				t.Fatal(err)
			}
			if i == 0 { // before the publish: the row is already claimed
				got, err := e.store.Load(context.Background(), n.ID)
				if err != nil {
					t.Fatal(err)
				}
				if got.Status != domain.MessageProcessing || got.DispatchedAt.IsZero() || !got.NextAt.After(e.clock.Now()) {
					t.Fatalf("accepted row %s dispatched %v next_at %v; want processing under a lease", got.Status, got.DispatchedAt, got.NextAt)
				}
			}
			e.publish(n)
			ns = append(ns, n)
		}
		for _, n := range ns {
			e.waitStatus(n.ID, domain.MessageDone)
			e.wantSentOnce(n)
		}
		waitFor(t, "no state left", func() bool { return e.h.Stats().Messages == 0 })
		// A notification already known to the handler is not claimed twice.
		n := ns[0]
		n2 := *n
		n2.Status = domain.MessageAccepted
		if e.h.Hold(&n2) != true {
			t.Fatal("an id the handler forgot could not be held")
		}
		if e.h.Hold(&n2) {
			t.Fatal("a held id was held again")
		}
		e.h.Unhold(n2.ID, false)
		if st := e.h.Stats(); st.Messages != 0 {
			t.Fatalf("%d states after Unhold without a row", st.Messages)
		}
	})
}

// TestPreclaimLostLaneMessage: a claimed notification whose lane message
// never comes is kept (lease renewed, the reconciler leaves it alone)
// while the process lives; after a crash the next process resumes it once
// the lease passes and delivers it once.
func TestPreclaimLostLaneMessage(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e1 := u1Env(t, db)
		e1.start()
		n := e1.notification(users("u1"))
		e1.acceptHeld(n, false)
		// Past the first lease: the heartbeat renews it and the reconciler
		// must not take the notification from its holder.
		e1.clock.advance(3 * time.Second)
		time.Sleep(700 * time.Millisecond) // heartbeats every StaleAfter/4 = 500 ms, sweeps every 50 ms
		got, err := e1.store.Load(context.Background(), n.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != domain.MessageProcessing || !got.NextAt.After(e1.clock.Now()) {
			t.Fatalf("held notification is %s with lease %v (now %v)", got.Status, got.NextAt, e1.clock.Now())
		}
		if c := e1.senders[domain.ChannelInApp].count.Load(); c != 0 {
			t.Fatalf("%d sends of a notification whose lane message never came", c)
		}
		e1.crash()

		e2 := u1Env(t, db)
		e2.clock.offset = 10 * time.Second // past the lease
		e2.start()
		e2.waitStatus(n.ID, domain.MessageDone)
		e2.wantSentOnce(n)
	})
}

// TestPreclaimGivenBack: a claimed notification whose publish failed is
// given back (Unhold committed) and reconciliation dispatches it soon,
// without waiting for the lease.
func TestPreclaimGivenBack(t *testing.T) {
	e := u1Env(t, sqldbtest.SQLite(t))
	e.deps.Config.StaleAfter = time.Hour // waiting for the lease would time the test out
	e.start()
	n := e.notification(users("u1"))
	e.acceptHeld(n, false)
	e.h.Unhold(n.ID, true)
	e.waitStatus(n.ID, domain.MessageDone)
	e.wantSentOnce(n)
}

// TestPreclaimShutdown: a graceful stop releases the leases of claimed
// notifications that did not start, so a restart dispatches them at once;
// a stopped handler claims nothing.
func TestPreclaimShutdown(t *testing.T) {
	db := sqldbtest.SQLite(t)
	e1 := u1Env(t, db)
	e1.deps.Config.StaleAfter = time.Hour // only the release lets the restart dispatch it in time
	e1.start()
	n := e1.notification(users("u1"))
	e1.acceptHeld(n, false)
	e1.stop()
	if e1.h.Hold(e1.notification(users("u1"))) {
		t.Fatal("a stopped handler claimed a notification")
	}
	got, err := e1.store.Load(context.Background(), n.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != domain.MessageProcessing || got.NextAt.After(time.Now()) {
		t.Fatalf("after shutdown: %s with lease %v, want processing with the lease released", got.Status, got.NextAt)
	}
	e2 := u1Env(t, db)
	e2.deps.Config.StaleAfter = time.Hour
	e2.start()
	e2.waitStatus(n.ID, domain.MessageDone)
	e2.wantSentOnce(n)
}

// TestPreclaimExpired: a claimed notification that expires while its lane
// message waits is marked expired and never sent.
func TestPreclaimExpired(t *testing.T) {
	e := u1Env(t, sqldbtest.SQLite(t))
	e.start()
	n := e.notification(users("u1"))
	n.ExpiresAt = e.clock.Now().Add(time.Second)
	e.acceptHeld(n, false)
	e.clock.advance(2 * time.Second)
	e.publish(n)
	e.waitStatus(n.ID, domain.MessageExpired)
	if c := e.senders[domain.ChannelInApp].count.Load(); c != 0 {
		t.Fatalf("an expired notification was sent %d times", c)
	}
	waitFor(t, "the expired event", func() bool { return e.track.count(contracts.EventExpired) == 1 })
	waitFor(t, "no state left", func() bool { return e.h.Stats().Messages == 0 })
}

// TestPreclaimCap: at most PreclaimCap notifications wait claimed for
// their fan-out; beyond it Hold refuses (the API then accepts as usual),
// and a started fan-out makes room again.
func TestPreclaimCap(t *testing.T) {
	e := u1Env(t, sqldbtest.SQLite(t))
	e.deps.Tuning.PreclaimCap = 2
	e.start()
	a, b, c := e.notification(users("u1")), e.notification(users("u1")), e.notification(users("u1"))
	e.acceptHeld(a, false)
	e.acceptHeld(b, false)
	if e.h.Hold(c) || c.Status != domain.MessageAccepted {
		t.Fatalf("a third notification was claimed past the cap of 2 (status %s)", c.Status)
	}
	e.accept(users("u1")) // the usual path still works
	e.publish(a)
	e.waitStatus(a.ID, domain.MessageDone)
	e.hold(c)
	e.h.Unhold(c.ID, false)
	e.h.Unhold(b.ID, true)
	e.waitStatus(b.ID, domain.MessageDone)
}

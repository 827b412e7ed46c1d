package outbound

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/messages"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
)

// finalIDs returns the ids of every final delivery row.
func finalIDs(t *testing.T, db *sqldb.DB) map[string]bool {
	t.Helper()
	rows, err := db.W.Query(`SELECT id FROM deliveries WHERE status NOT IN ('pending', 'queued')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out[id] = true
	}
	return out
}

// TestCrashResume kills the handler (no flush, no lease release) with
// thousands of deliveries in flight, starts a new one on the same database
// and checks that every accepted notification is delivered, that nothing
// recorded as final is sent again, and that a repeated send carries the
// same delivery id.
func TestCrashResume(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		const members, singles = 1500, 60
		setup := func(e *env) {
			e.dir.gen["big"] = members
			for i := 0; i < singles; i++ {
				e.dir.add(&contracts.Profile{UserID: fmt.Sprintf("s%d", i), Email: fmt.Sprintf("s%d@x.io", i)})
			}
			e.deps.Config.StaleAfter = time.Second
			e.deps.Tuning.SubQueue = 256
		}
		e1 := newEnv(t, db, domain.ChannelInApp, domain.ChannelEmail)
		setup(e1)
		budget := &atomic.Int64{}
		budget.Store(members) // then every Send hangs, like a stuck process
		e1.senders[domain.ChannelInApp].budget = budget
		e1.senders[domain.ChannelEmail].budget = budget
		e1.start()
		both := withChannels(domain.ChannelInApp, domain.ChannelEmail)
		var ns []*messages.Notification
		ns = append(ns, e1.accept([]domain.Recipient{{GroupID: "big"}}, both, withPriority(domain.PriorityLow)))
		for i := 0; i < singles; i++ {
			ns = append(ns, e1.accept(users(fmt.Sprintf("s%d", i)), both, withPriority(domain.Priorities[i%3])))
		}
		waitFor(t, "the budget to run out", func() bool { return budget.Load() < 0 })
		e1.crash()
		final := finalIDs(t, db)
		if len(final) == 0 || len(final) >= 2*(members+singles) {
			t.Fatalf("%d final rows at the crash; the test wants a crash mid-flight", len(final))
		}

		e2 := newEnv(t, db, domain.ChannelInApp, domain.ChannelEmail)
		setup(e2)
		e2.clock.offset = 10 * time.Second // past every lease and the accept-time next_at
		e2.start()
		for _, n := range ns {
			e2.waitStatus(n.ID, domain.MessageDone)
		}
		for _, ch := range []domain.Channel{domain.ChannelInApp, domain.ChannelEmail} {
			_, first := e1.senders[ch].snapshot()
			_, second := e2.senders[ch].snapshot()
			seen := map[string]int{}
			for id, c := range first {
				seen[id] += c
			}
			for id, c := range second {
				seen[id] += c
			}
			if len(seen) != members+singles {
				t.Fatalf("%s: %d distinct deliveries, want %d", ch, len(seen), members+singles)
			}
			for id, c := range seen {
				if c > 1 && final[id] {
					t.Fatalf("%s: %s was final before the crash and was sent again", ch, id)
				}
				if c > 2 {
					t.Fatalf("%s: %s sent %d times", ch, id, c)
				}
			}
		}
		for _, n := range ns {
			for _, d := range e2.deliveries(n.ID) {
				if !d.Status.Final() || d.ID != messages.DeliveryID(n.ID, d.Recipient, d.Channel) {
					t.Fatalf("row %+v", d)
				}
			}
		}
	})
}

// TestGracefulShutdownDrains: on cancel, Run stops intake, finishes what is
// in the pools, records every outcome and releases the lease, so a restart
// resumes at once and nothing is ever sent twice.
func TestGracefulShutdownDrains(t *testing.T) {
	db := sqldbtest.SQLite(t)
	const members = 1200
	e1 := newEnv(t, db, domain.ChannelInApp)
	e1.dir.gen["big"] = members
	e1.deps.Config.Workers = 1
	e1.deps.Config.StaleAfter = time.Hour // only the released lease lets the restart resume promptly
	e1.deps.Tuning.SubQueue = 64
	slow := e1.senders[domain.ChannelInApp]
	slow.behave = func(*contracts.Delivery, int) error { time.Sleep(100 * time.Microsecond); return nil }
	e1.start()
	n := e1.accept([]domain.Recipient{{GroupID: "big"}})
	waitFor(t, "some sends", func() bool { return slow.count.Load() >= 100 })
	e1.stop()
	_, sent1 := slow.snapshot()
	final := finalIDs(t, db)
	for id := range sent1 {
		if !final[id] {
			t.Fatalf("%s was sent but its outcome was not recorded at shutdown", id)
		}
	}
	if len(final) != len(sent1) {
		t.Fatalf("%d final rows for %d sends", len(final), len(sent1))
	}
	got, err := e1.store.Load(context.Background(), n.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != domain.MessageProcessing || got.NextAt.After(time.Now()) {
		t.Fatalf("after shutdown: status %s next_at %v; want processing with the lease released", got.Status, got.NextAt)
	}
	if len(sent1) >= members {
		t.Fatalf("everything was sent before the shutdown; the test wants an interrupted fan-out")
	}

	e2 := newEnv(t, db, domain.ChannelInApp)
	e2.dir.gen["big"] = members
	e2.deps.Config.StaleAfter = time.Hour
	e2.start()
	e2.waitStatus(n.ID, domain.MessageDone)
	_, sent2 := e2.senders[domain.ChannelInApp].snapshot()
	for id := range sent2 {
		if sent1[id] > 0 {
			t.Fatalf("%s sent before and after a graceful shutdown", id)
		}
	}
	if len(sent1)+len(sent2) != members {
		t.Fatalf("%d + %d sends, want %d", len(sent1), len(sent2), members)
	}
}

// TestShutdownGraceAbandonsStuckSends: a send that outlives the grace period
// is cut off and left to recovery (no outcome recorded for it).
func TestShutdownGraceAbandonsStuckSends(t *testing.T) {
	db := sqldbtest.SQLite(t)
	e := newEnv(t, db, domain.ChannelInApp)
	e.dir.add(&contracts.Profile{UserID: "u1"})
	e.deps.Tuning.ShutdownGrace = 50 * time.Millisecond
	e.senders[domain.ChannelInApp].gate = make(chan struct{}) // never opens
	e.start()
	n := e.accept(users("u1"), withChannels(domain.ChannelInApp))
	waitFor(t, "the send to start", func() bool { return e.h.Stats().Channels[domain.ChannelInApp].InFlight == 1 })
	waitFor(t, "the fan-out to finish", func() bool {
		st := e.h.Stats()
		return st.Fanouts[domain.PriorityHigh]+st.Fanouts[domain.PriorityMedium]+st.Fanouts[domain.PriorityLow] == 0
	})
	e.stop()
	if rows := e.deliveries(n.ID); len(rows) != 0 {
		t.Fatalf("an abandoned send was recorded: %v", keys(rows))
	}
	got, _ := e.store.Load(context.Background(), n.ID)
	if got.Status != domain.MessageProcessing || got.DeliveriesTotal != 1 || got.NextAt.After(time.Now()) {
		t.Fatalf("%+v", got)
	}
}

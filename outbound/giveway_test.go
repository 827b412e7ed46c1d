package outbound

import (
	"testing"
	"time"

	"herald.dev/platform/domain"
	"herald.dev/platform/sqldb/sqldbtest"
)

// TestBulkFanoutGivesWayToHighPriority: while a high-priority send is in
// flight, a low-priority group fan-out stops after its first members
// (outbound.bulk_pause, here longer than the test), a high-priority group
// fan-out does not, and the low one finishes once the high send is done.
func TestBulkFanoutGivesWayToHighPriority(t *testing.T) {
	const members = 300
	e := newEnv(t, sqldbtest.SQLite(t), domain.ChannelInApp)
	e.dir.gen["big"] = members
	e.deps.Config.BulkPause = time.Hour
	h := e.start()
	h.urgentIn.Add(1) // a high-priority accept under way

	low := e.accept([]domain.Recipient{{GroupID: "big"}}, withChannels(domain.ChannelInApp), withPriority(domain.PriorityLow))
	waitFor(t, "the low fan-out to start", func() bool { calls, _ := e.senders[domain.ChannelInApp].snapshot(); return len(calls) > 0 })
	high := e.accept([]domain.Recipient{{GroupID: "big"}}, withChannels(domain.ChannelInApp), withPriority(domain.PriorityHigh))
	e.waitStatus(high.ID, domain.MessageDone)
	time.Sleep(100 * time.Millisecond)
	calls, _ := e.senders[domain.ChannelInApp].snapshot()
	var lows int
	for _, c := range calls {
		if c.d.NotificationID == low.ID {
			lows++
		}
	}
	if lows >= yieldEvery {
		t.Fatalf("the low-priority fan-out sent %d deliveries while high-priority work was in flight; want it paused before member %d", lows, yieldEvery)
	}
	if n, _ := e.store.Load(t.Context(), low.ID); n.Status == domain.MessageDone {
		t.Fatal("the low-priority fan-out finished while paused")
	}

	h.urgentOut.Add(1) // the high-priority send is done
	done := e.waitStatus(low.ID, domain.MessageDone)
	if done.DeliveriesTotal != members {
		t.Fatalf("low fan-out total %d, want %d", done.DeliveriesTotal, members)
	}
}

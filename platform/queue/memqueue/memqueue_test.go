package memqueue

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"herald.dev/platform/domain"
	"herald.dev/platform/queue"
	"herald.dev/platform/queue/queuetest"
)

func TestConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T, ageLimit time.Duration) queue.Queue {
		return New(Options{Capacity: 1024, AgeLimit: ageLimit, Visibility: 200 * time.Millisecond})
	})
}

func msg(id string, p domain.Priority) queue.Message {
	return queue.Message{ID: id, AppID: "app_1", Priority: p}
}

func mustReceive(t *testing.T, q *Queue) queue.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := q.Receive(ctx)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return l
}

func TestCapacityIsPerLaneAndAllOrNothing(t *testing.T) {
	q := New(Options{Capacity: 3, AgeLimit: time.Hour})
	defer q.Close()
	ctx := context.Background()
	if err := q.Publish(ctx, msg("l1", domain.PriorityLow), msg("l2", domain.PriorityLow)); err != nil {
		t.Fatal(err)
	}
	// Two more lows do not fit: the whole batch, including the high, is refused.
	err := q.Publish(ctx, msg("h1", domain.PriorityHigh), msg("l3", domain.PriorityLow), msg("l4", domain.PriorityLow))
	if !errors.Is(err, queue.ErrFull) {
		t.Fatalf("publish over capacity: %v, want queue.ErrFull", err)
	}
	if d := q.Depth(domain.PriorityHigh); d != 0 {
		t.Fatalf("high depth %d after a refused batch, want 0", d)
	}
	// Other lanes have their own room; the low lane has exactly one slot.
	if err := q.Publish(ctx, msg("h1", domain.PriorityHigh), msg("m1", domain.PriorityMedium), msg("l3", domain.PriorityLow)); err != nil {
		t.Fatalf("publish within capacity: %v", err)
	}
	if err := q.Publish(ctx, msg("l4", domain.PriorityLow)); !errors.Is(err, queue.ErrFull) {
		t.Fatalf("publish to a full lane: %v, want queue.ErrFull", err)
	}
	if got := [3]int{q.Depth(domain.PriorityHigh), q.Depth(domain.PriorityMedium), q.Depth(domain.PriorityLow)}; got != [3]int{1, 1, 3} {
		t.Fatalf("depths = %v, want [1 1 3]", got)
	}
	// Drain high and medium, then take a low and Nack it while the lane is
	// refilled to capacity: the redelivery is accepted beyond capacity.
	mustReceive(t, q).Ack(ctx)
	mustReceive(t, q).Ack(ctx)
	l := mustReceive(t, q)
	if err := q.Publish(ctx, msg("l4", domain.PriorityLow)); err != nil {
		t.Fatal(err)
	}
	if err := l.Nack(ctx, 0); err != nil {
		t.Fatalf("nack into a full lane: %v", err)
	}
	if d := q.Depth(domain.PriorityLow); d != 4 {
		t.Fatalf("low depth %d, want 4 (capacity 3 plus one redelivery)", d)
	}
}

func TestStats(t *testing.T) {
	q := New(Options{AgeLimit: time.Hour})
	defer q.Close()
	ctx := context.Background()
	if err := q.Publish(ctx, msg("a", domain.PriorityHigh), msg("b", domain.PriorityLow), msg("c", domain.PriorityLow)); err != nil {
		t.Fatal(err)
	}
	a := mustReceive(t, q)
	b := mustReceive(t, q)
	if a.Message().ID != "a" || b.Message().ID != "b" {
		t.Fatalf("got %s, %s", a.Message().ID, b.Message().ID)
	}
	if err := b.Nack(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if q.InFlight() != 1 || q.Delayed() != 1 || q.Depth(domain.PriorityLow) != 1 || q.Depth(domain.PriorityHigh) != 0 {
		t.Fatalf("inflight=%d delayed=%d low=%d high=%d, want 1 1 1 0", q.InFlight(), q.Delayed(), q.Depth(domain.PriorityLow), q.Depth(domain.PriorityHigh))
	}
	if q.Depth("bogus") != 0 {
		t.Fatal("depth of an unknown lane should be 0")
	}
	a.Ack(ctx)
	if q.InFlight() != 0 {
		t.Fatalf("inflight=%d after ack", q.InFlight())
	}
}

func TestLateSettleReportsExpiry(t *testing.T) {
	q := New(Options{AgeLimit: time.Hour, Visibility: 50 * time.Millisecond})
	defer q.Close()
	ctx := context.Background()
	if err := q.Publish(ctx, msg("slow", domain.PriorityMedium)); err != nil {
		t.Fatal(err)
	}
	first := mustReceive(t, q)
	second := mustReceive(t, q) // the redelivery after the visibility timeout
	if second.Message().Deliveries != 2 {
		t.Fatalf("deliveries = %d, want 2", second.Message().Deliveries)
	}
	if err := first.Ack(ctx); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("late ack: %v, want ErrLeaseExpired", err)
	}
	if err := first.Nack(ctx, 0); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("late nack: %v, want ErrLeaseExpired", err)
	}
	if err := second.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if q.Depth(domain.PriorityMedium) != 0 || q.InFlight() != 0 {
		t.Fatal("late settle must not change the queue")
	}
}

func TestSettleAfterClose(t *testing.T) {
	q := New(Options{})
	ctx := context.Background()
	if err := q.Publish(ctx, msg("a", domain.PriorityHigh), msg("b", domain.PriorityHigh)); err != nil {
		t.Fatal(err)
	}
	a, b := mustReceive(t, q), mustReceive(t, q)
	q.Close()
	if err := a.Ack(ctx); err != nil {
		t.Fatalf("ack after close: %v, want nil", err)
	}
	if err := b.Nack(ctx, 0); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("nack after close: %v, want queue.ErrClosed", err)
	}
}

func TestDelayedNacksComeBackInDueOrder(t *testing.T) {
	q := New(Options{AgeLimit: time.Hour})
	defer q.Close()
	ctx := context.Background()
	delays := map[string]time.Duration{"d3": 90 * time.Millisecond, "d1": 30 * time.Millisecond, "d2": 60 * time.Millisecond, "d0": 0}
	for _, id := range []string{"d3", "d1", "d2", "d0"} {
		if err := q.Publish(ctx, msg(id, domain.PriorityLow)); err != nil {
			t.Fatal(err)
		}
	}
	for range delays {
		l := mustReceive(t, q)
		if err := l.Nack(ctx, delays[l.Message().ID]); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"d0", "d1", "d2", "d3"} {
		l := mustReceive(t, q)
		if l.Message().ID != want {
			t.Fatalf("got %s, want %s", l.Message().ID, want)
		}
		l.Ack(ctx)
	}
}

func TestPickRule(t *testing.T) {
	const limit = 100
	q := &Queue{ageLimit: limit}
	for _, tc := range []struct {
		name string
		at   [3]int64 // -1 = empty lane
		now  int64
		want int // the lane of the queue.AgedShare-th pick (the first is strict priority)
	}{
		{"all empty", [3]int64{-1, -1, -1}, 1000, -1},
		{"strict priority when nothing is overdue", [3]int64{990, 950, 910}, 1000, 0},
		{"medium when high is empty", [3]int64{-1, 999, 950}, 1000, 1},
		{"overdue low gets one pick in AgedShare", [3]int64{990, -1, 900}, 1000, 2},
		{"exactly at the limit counts as overdue", [3]int64{999, -1, 900}, 1000, 2},
		{"oldest overdue is the aged candidate", [3]int64{990, 850, 880}, 1000, 1},
		{"overdue top lane is served at once", [3]int64{700, -1, 800}, 1000, 0},
		{"overdue low older than overdue high", [3]int64{800, -1, 700}, 1000, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for r := range q.lanes {
				q.lanes[r].clear()
				if tc.at[r] >= 0 {
					q.lanes[r].push(entry{at: tc.at[r]})
				}
			}
			q.ageing = queue.Ageing{}
			var got int
			for i := 0; i < queue.AgedShare; i++ {
				got = q.pick(tc.now)
			}
			if got != tc.want {
				t.Fatalf("pick = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestRingGrowsWrapsAndShrinks(t *testing.T) {
	var r ring[int]
	next, want := 0, 0
	for round := range 5 {
		for range 1000 * (round + 1) {
			r.push(next)
			next++
		}
		for range 700 * (round + 1) {
			if got := r.pop(); got != want {
				t.Fatalf("pop = %d, want %d", got, want)
			}
			want++
		}
	}
	for r.len() > 0 {
		if got := r.pop(); got != want {
			t.Fatalf("pop = %d, want %d", got, want)
		}
		want++
	}
	if want != next {
		t.Fatalf("popped %d of %d", want, next)
	}
	if len(r.buf) > minRing {
		t.Fatalf("buffer of %d slots kept after draining", len(r.buf))
	}
}

func TestPublishValidation(t *testing.T) {
	q := New(Options{})
	defer q.Close()
	ctx := context.Background()
	for _, m := range []queue.Message{{ID: "", Priority: domain.PriorityHigh}, {ID: "x", Priority: "urgent"}} {
		if err := q.Publish(ctx, m); err == nil || errors.Is(err, queue.ErrFull) {
			t.Fatalf("publish %+v: %v, want a validation error", m, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := q.Publish(cctx, msg("x", domain.PriorityHigh)); !errors.Is(err, context.Canceled) {
		t.Fatalf("publish with a cancelled context: %v", err)
	}
	if err := q.Publish(ctx); err != nil {
		t.Fatalf("empty publish: %v", err)
	}
}

// BenchmarkPublishReceiveAck measures the hot path: every goroutine
// publishes one message, receives one and acks it.
func BenchmarkPublishReceiveAck(b *testing.B) {
	q := New(Options{AgeLimit: DefaultAgeLimit})
	defer q.Close()
	ctx := context.Background()
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = fmt.Sprintf("ntf_%04d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m := queue.Message{ID: ids[i&1023], AppID: "app_1", Priority: domain.Priorities[i%3]}
			if err := q.Publish(ctx, m); err != nil {
				b.Fatal(err)
			}
			l, err := q.Receive(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := l.Ack(ctx); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkHighBehindLow measures how long a high message takes to get out
// with 200,000 low messages queued: publish one high, receive it, ack it
// (ns/op), and the Receive call alone (receive-ns/op, timer overhead
// included).
// The age limit is long so the backlog never becomes overdue mid-run.
func BenchmarkHighBehindLow(b *testing.B) {
	const backlog = 200_000
	q := New(Options{Capacity: backlog, AgeLimit: time.Hour})
	defer q.Close()
	ctx := context.Background()
	batch := make([]queue.Message, 0, 1000)
	for i := 0; i < backlog; i++ {
		batch = append(batch, queue.Message{ID: fmt.Sprintf("low_%06d", i), AppID: "app_1", Priority: domain.PriorityLow})
		if len(batch) == cap(batch) {
			if err := q.Publish(ctx, batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	high := queue.Message{ID: "high", AppID: "app_1", Priority: domain.PriorityHigh}
	var inReceive time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := q.Publish(ctx, high); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		l, err := q.Receive(ctx)
		inReceive += time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		if l.Message().Priority != domain.PriorityHigh {
			b.Fatalf("received %s behind the low backlog", l.Message().Priority)
		}
		l.Ack(ctx)
	}
	b.StopTimer()
	b.ReportMetric(float64(inReceive.Nanoseconds())/float64(b.N), "receive-ns/op")
	if d := q.Depth(domain.PriorityLow); d != backlog {
		b.Fatalf("low depth %d, want %d", d, backlog)
	}
}

// BenchmarkProducersConsumers separates the roles: two producers publish in
// batches of 16 while four consumers block in Receive, so the wake-up path
// is part of what is measured. One op is one message published, received
// and acked.
func BenchmarkProducersConsumers(b *testing.B) {
	const producers, consumers, batch = 2, 4, 16
	q := New(Options{AgeLimit: DefaultAgeLimit})
	defer q.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	total := b.N
	done := make(chan struct{})
	var received atomic.Int64
	for range consumers {
		go func() {
			for {
				l, err := q.Receive(ctx)
				if err != nil {
					return
				}
				l.Ack(ctx)
				if received.Add(1) == int64(total) {
					close(done)
				}
			}
		}()
	}
	b.ReportAllocs()
	b.ResetTimer()
	per := (total + producers - 1) / producers
	for p := range producers {
		go func() {
			msgs := make([]queue.Message, 0, batch)
			for i := p * per; i < min(total, (p+1)*per); i++ {
				msgs = append(msgs, queue.Message{ID: "ntf", AppID: "app_1", Priority: domain.Priorities[i%3]})
				if len(msgs) == batch || i == min(total, (p+1)*per)-1 {
					for {
						err := q.Publish(ctx, msgs...)
						if err == nil {
							break
						}
						if !errors.Is(err, queue.ErrFull) {
							panic(err)
						}
						time.Sleep(time.Millisecond)
					}
					msgs = msgs[:0]
				}
			}
		}()
	}
	<-done
}

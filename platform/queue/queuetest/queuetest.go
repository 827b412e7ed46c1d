// Package queuetest is the conformance suite every queue.Queue
// implementation passes (the embedded lanes in memqueue, RocketMQ in
// rocketmq). It states the contract of package queue as tests:
//
//   - Publish/Receive/Ack round trip; fields survive, EnqueuedAt is set when
//     zero, Deliveries is 1 on first receipt; invalid batches publish nothing.
//   - Strict priority: with many low messages waiting, a high one is served
//     next. FIFO within a lane.
//   - Nack(0) redelivers and increments Deliveries; Nack(d) does not
//     redeliver before d has passed, and does after.
//   - A lease neither acked nor nacked within the visibility timeout is
//     redelivered.
//   - The ageing rule: a lower-priority message that has waited longer than
//     the age limit is served within queue.AgedShare picks, ahead of the
//     remaining fresher higher-priority ones, and a low message is not
//     starved by a continuous stream of high ones.
//   - Receive honours ctx; cancelled receivers swallow no message; Close
//     unblocks Receive with queue.ErrClosed and later Publish fails with it.
//   - Concurrent producers and consumers lose nothing (at least once).
//   - Settling a settled lease (Ack twice, Nack after Ack) is harmless.
//
// Delivery may be asynchronous (a broker between Publish and Receive), so
// the suite waits, through queue.Stats, until messages are locally available
// before it asserts an order; it never asserts an upper bound on timing.
package queuetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald.dev/platform/domain"
	"herald.dev/platform/queue"
)

// Wait bounds every wait for something the contract promises will happen.
// It is generous because a broker-backed queue delivers asynchronously; a
// correct in-process queue never comes near it.
const Wait = 20 * time.Second

// NoAgeing is the age limit the suite passes when a test needs strict
// priority without the ageing rule interfering.
const NoAgeing = time.Hour

// NewQueue builds a fresh, empty queue for one test. It must use ageLimit as
// the ageing rule's limit and a visibility timeout of at most one second,
// implement queue.Stats, and be independent of queues built for other tests.
// The suite closes it (Close may be called more than once).
type NewQueue func(t *testing.T, ageLimit time.Duration) queue.Queue

// Run runs the whole suite against newQueue.
func Run(t *testing.T, newQueue NewQueue) {
	s := suite{newQueue: newQueue}
	for _, tc := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"RoundTrip", s.roundTrip},
		{"InvalidBatchPublishesNothing", s.invalidBatch},
		{"StrictPriority", s.strictPriority},
		{"FIFOWithinLane", s.fifo},
		{"NackRedeliversAtOnce", s.nackNow},
		{"NackDelayNotBefore", s.nackDelay},
		{"VisibilityTimeoutRedelivers", s.visibility},
		{"AgeingServesOverdueFirst", s.ageing},
		{"AgeingPreventsStarvation", s.starvation},
		{"ReceiveHonoursContext", s.receiveCtx},
		{"CancelledReceiversLoseNothing", s.cancelledReceivers},
		{"CloseUnblocksAndRefuses", s.close},
		{"ConcurrentAtLeastOnce", s.concurrent},
		{"SettleTwiceIsHarmless", s.settleTwice},
	} {
		t.Run(tc.name, tc.run)
	}
}

type suite struct{ newQueue NewQueue }

// open builds a queue, checks it reports depths and closes it after the test.
func (s suite) open(t *testing.T, ageLimit time.Duration) (queue.Queue, queue.Stats) {
	t.Helper()
	q := s.newQueue(t, ageLimit)
	st, ok := q.(queue.Stats)
	if !ok {
		t.Fatalf("%T does not implement queue.Stats", q)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q, st
}

func msg(id string, p domain.Priority) queue.Message {
	return queue.Message{ID: id, AppID: "app_queuetest", Priority: p}
}

func publish(t *testing.T, q queue.Queue, msgs ...queue.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if err := q.Publish(ctx, msgs...); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func receive(t *testing.T, q queue.Queue) queue.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	l, err := q.Receive(ctx)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	if l == nil {
		t.Fatal("receive returned a nil lease and no error")
	}
	return l
}

func ack(t *testing.T, l queue.Lease) {
	t.Helper()
	if err := l.Ack(context.Background()); err != nil {
		t.Fatalf("ack %s: %v", l.Message().ID, err)
	}
}

// receiveID receives one message, checks its id and acks it.
func receiveID(t *testing.T, q queue.Queue, want string) queue.Message {
	t.Helper()
	l := receive(t, q)
	m := l.Message()
	if m.ID != want {
		t.Fatalf("received %s (%s), want %s", m.ID, m.Priority, want)
	}
	ack(t, l)
	return m
}

// waitDepth waits until lane p holds at least n ready messages.
func waitDepth(t *testing.T, st queue.Stats, p domain.Priority, n int) {
	t.Helper()
	deadline := time.Now().Add(Wait)
	for st.Depth(p) < n {
		if time.Now().After(deadline) {
			t.Fatalf("lane %s: depth %d after %v, want at least %d", p, st.Depth(p), Wait, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// expectEmpty checks that nothing can be received for a short while.
func expectEmpty(t *testing.T, q queue.Queue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	l, err := q.Receive(ctx)
	if err == nil {
		t.Fatalf("received %s, want an empty queue", l.Message().ID)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("receive on an empty queue: %v, want context.DeadlineExceeded", err)
	}
}

func (s suite) roundTrip(t *testing.T) {
	q, st := s.open(t, NoAgeing)
	at := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	withTime := queue.Message{ID: "n-medium", AppID: "app_a", Priority: domain.PriorityMedium, EnqueuedAt: at}
	before := time.Now().Add(-time.Second)
	publish(t, q, withTime)
	publish(t, q, queue.Message{ID: "n-high", AppID: "app_b", Priority: domain.PriorityHigh})
	waitDepth(t, st, domain.PriorityHigh, 1)
	waitDepth(t, st, domain.PriorityMedium, 1)

	got := receiveID(t, q, "n-high")
	if got.AppID != "app_b" || got.Priority != domain.PriorityHigh || got.Deliveries != 1 {
		t.Fatalf("high message = %+v, want app_b, high, 1 delivery", got)
	}
	if got.EnqueuedAt.Before(before) || got.EnqueuedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("EnqueuedAt = %v, want it set to the publish time", got.EnqueuedAt)
	}
	got = receiveID(t, q, "n-medium")
	if got.AppID != "app_a" || got.Priority != domain.PriorityMedium || got.Deliveries != 1 || !got.EnqueuedAt.Equal(at) {
		t.Fatalf("medium message = %+v, want app_a, medium, 1 delivery, EnqueuedAt %v kept", got, at)
	}
	for _, p := range domain.Priorities {
		if d := st.Depth(p); d != 0 {
			t.Fatalf("depth %s = %d after everything was acked", p, d)
		}
	}
	expectEmpty(t, q)
}

func (s suite) invalidBatch(t *testing.T) {
	q, st := s.open(t, NoAgeing)
	ctx := context.Background()
	for name, batch := range map[string][]queue.Message{
		"unknown priority": {msg("ok-1", domain.PriorityLow), msg("bad-1", "urgent")},
		"empty priority":   {msg("ok-2", domain.PriorityHigh), msg("bad-2", "")},
		"empty id":         {msg("ok-3", domain.PriorityMedium), msg("", domain.PriorityMedium)},
	} {
		if err := q.Publish(ctx, batch...); err == nil {
			t.Fatalf("%s: publish succeeded, want an error", name)
		}
	}
	// A valid message published afterwards is the only one served.
	publish(t, q, msg("valid", domain.PriorityLow))
	waitDepth(t, st, domain.PriorityLow, 1)
	receiveID(t, q, "valid")
	expectEmpty(t, q)
}

func (s suite) strictPriority(t *testing.T) {
	q, st := s.open(t, NoAgeing)
	var lows []queue.Message
	for i := range 50 {
		lows = append(lows, msg(fmt.Sprintf("low-%02d", i), domain.PriorityLow))
	}
	publish(t, q, lows...)
	publish(t, q, msg("medium-0", domain.PriorityMedium), msg("medium-1", domain.PriorityMedium))
	publish(t, q, msg("high-0", domain.PriorityHigh))
	waitDepth(t, st, domain.PriorityLow, 1)
	waitDepth(t, st, domain.PriorityMedium, 2)
	waitDepth(t, st, domain.PriorityHigh, 1)

	receiveID(t, q, "high-0")
	receiveID(t, q, "medium-0")
	receiveID(t, q, "medium-1")
	// Order across a lane's partitions is not part of this test (FIFO is
	// checked with every message present); any low may come next.
	left := map[string]bool{}
	for _, m := range lows {
		left[m.ID] = true
	}
	takeLow := func() {
		t.Helper()
		l := receive(t, q)
		if id := l.Message().ID; !left[id] {
			t.Fatalf("received %s (%s), want one of the waiting lows", id, l.Message().Priority)
		}
		delete(left, l.Message().ID)
		ack(t, l)
	}
	takeLow()

	// Lows still wait; a new high goes ahead of all of them.
	publish(t, q, msg("high-1", domain.PriorityHigh))
	waitDepth(t, st, domain.PriorityHigh, 1)
	receiveID(t, q, "high-1")
	for len(left) > 0 {
		takeLow()
	}
	expectEmpty(t, q)
}

func (s suite) fifo(t *testing.T) {
	q, st := s.open(t, NoAgeing)
	const n = 10
	for i := range n {
		// One Publish per message, interleaving lanes.
		publish(t, q, msg(fmt.Sprintf("high-%d", i), domain.PriorityHigh))
		publish(t, q, msg(fmt.Sprintf("low-%d", i), domain.PriorityLow))
		publish(t, q, msg(fmt.Sprintf("medium-%d", i), domain.PriorityMedium))
	}
	for _, p := range domain.Priorities {
		waitDepth(t, st, p, n)
	}
	for _, p := range domain.Priorities {
		for i := range n {
			receiveID(t, q, fmt.Sprintf("%s-%d", p, i))
		}
	}
}

func (s suite) nackNow(t *testing.T) {
	q, st := s.open(t, NoAgeing)
	publish(t, q, msg("retry-me", domain.PriorityMedium))
	waitDepth(t, st, domain.PriorityMedium, 1)
	for want := 1; want <= 3; want++ {
		l := receive(t, q)
		if m := l.Message(); m.ID != "retry-me" || m.Deliveries != want {
			t.Fatalf("delivery %d: got %s with Deliveries=%d", want, m.ID, m.Deliveries)
		}
		if want == 3 {
			ack(t, l)
			break
		}
		if err := l.Nack(context.Background(), 0); err != nil {
			t.Fatalf("nack: %v", err)
		}
	}
	expectEmpty(t, q)
}

func (s suite) nackDelay(t *testing.T) {
	q, st := s.open(t, NoAgeing)
	const delay = 500 * time.Millisecond
	publish(t, q, msg("later", domain.PriorityHigh))
	waitDepth(t, st, domain.PriorityHigh, 1)
	l := receive(t, q)
	start := time.Now()
	if err := l.Nack(context.Background(), delay); err != nil {
		t.Fatalf("nack: %v", err)
	}
	// A message published after the Nack is served first: the delayed one
	// is not back in its lane yet.
	publish(t, q, msg("now", domain.PriorityLow))
	waitDepth(t, st, domain.PriorityLow, 1)
	receiveID(t, q, "now")

	m := receiveID(t, q, "later")
	if waited := time.Since(start); waited < delay {
		t.Fatalf("redelivered %v after Nack(%v): before the delay", waited, delay)
	}
	if m.Deliveries != 2 {
		t.Fatalf("Deliveries = %d after one Nack, want 2", m.Deliveries)
	}
}

func (s suite) visibility(t *testing.T) {
	q, st := s.open(t, NoAgeing)
	publish(t, q, msg("forgotten", domain.PriorityLow))
	waitDepth(t, st, domain.PriorityLow, 1)
	first := receive(t, q) // never settled in time
	if first.Message().ID != "forgotten" {
		t.Fatalf("received %s", first.Message().ID)
	}
	second := receive(t, q)
	if m := second.Message(); m.ID != "forgotten" || m.Deliveries != 2 {
		t.Fatalf("after the visibility timeout got %s with Deliveries=%d, want forgotten with 2", m.ID, m.Deliveries)
	}
	ack(t, second)
	// Settling the expired lease late must not put the message back.
	_ = first.Ack(context.Background())
	expectEmpty(t, q)
}

func (s suite) ageing(t *testing.T) {
	const limit = 200 * time.Millisecond
	for _, tc := range []struct{ old, fresh domain.Priority }{
		{domain.PriorityLow, domain.PriorityHigh},
		{domain.PriorityMedium, domain.PriorityHigh},
		{domain.PriorityLow, domain.PriorityMedium},
	} {
		t.Run(fmt.Sprintf("%s-before-%s", tc.old, tc.fresh), func(t *testing.T) {
			q, st := s.open(t, limit)
			publish(t, q, msg("old", tc.old))
			waitDepth(t, st, tc.old, 1)
			time.Sleep(2 * limit) // let it become overdue (a precondition, not an assertion)
			const fresh = 2 * queue.AgedShare
			for i := range fresh {
				publish(t, q, msg(fmt.Sprintf("fresh-%d", i), tc.fresh))
			}
			waitDepth(t, st, tc.fresh, fresh)
			// the overdue message gets one pick in queue.AgedShare: it comes
			// after at most AgedShare-1 fresher ones, which keep their order
			next := 0
			for i := 0; i < queue.AgedShare; i++ {
				l := receive(t, q)
				got := l.Message().ID
				ack(t, l)
				if got == "old" {
					break
				}
				if want := fmt.Sprintf("fresh-%d", next); got != want {
					t.Fatalf("received %s, want %s", got, want)
				}
				next++
				if i == queue.AgedShare-1 {
					t.Fatalf("overdue message not served within %d picks", queue.AgedShare)
				}
			}
			for ; next < fresh; next++ {
				receiveID(t, q, fmt.Sprintf("fresh-%d", next))
			}
		})
	}
}

func (s suite) starvation(t *testing.T) {
	const limit = 100 * time.Millisecond
	q, st := s.open(t, limit)
	publish(t, q, msg("patient", domain.PriorityLow))
	waitDepth(t, st, domain.PriorityLow, 1)
	next := 0
	feed := func(n int) {
		for range n {
			publish(t, q, msg(fmt.Sprintf("high-%d", next), domain.PriorityHigh))
			next++
		}
	}
	feed(4)
	deadline := time.Now().Add(Wait)
	for served := 0; ; served++ {
		if served > 1_000_000 || time.Now().After(deadline) {
			t.Fatalf("low message not served after %d high messages in %v: starved", served, Wait)
		}
		waitDepth(t, st, domain.PriorityHigh, 1) // a high is always waiting
		l := receive(t, q)
		ack(t, l)
		if l.Message().ID == "patient" {
			t.Logf("low served after %d high messages", served)
			return
		}
		feed(1) // keep the high lane busy
	}
}

func (s suite) receiveCtx(t *testing.T) {
	q, st := s.open(t, NoAgeing)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if l, err := q.Receive(ctx); !errors.Is(err, context.DeadlineExceeded) || l != nil {
		t.Fatalf("receive past deadline = %v, %v; want nil, context.DeadlineExceeded", l, err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := q.Receive(ctx)
		errc <- err
	}()
	time.AfterFunc(20*time.Millisecond, cancel)
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("receive after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(Wait):
		t.Fatal("Receive did not return after its context was cancelled")
	}

	// An already-cancelled context wins even when a message is available,
	// and the message is not lost.
	publish(t, q, msg("kept", domain.PriorityMedium))
	waitDepth(t, st, domain.PriorityMedium, 1)
	if _, err := q.Receive(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("receive with a cancelled context: %v, want context.Canceled", err)
	}
	receiveID(t, q, "kept")
}

func (s suite) cancelledReceivers(t *testing.T) {
	q, st := s.open(t, NoAgeing)
	for round := range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if l, err := q.Receive(ctx); err == nil {
					// Won the race with cancel: give it back.
					_ = l.Nack(context.Background(), 0)
				}
			}()
		}
		id := fmt.Sprintf("msg-%d", round)
		publish(t, q, msg(id, domain.PriorityHigh))
		cancel()
		wg.Wait()
		waitDepth(t, st, domain.PriorityHigh, 1)
		receiveID(t, q, id)
	}
}

func (s suite) close(t *testing.T) {
	q, _ := s.open(t, NoAgeing)
	errc := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := q.Receive(context.Background())
			errc <- err
		}()
	}
	time.Sleep(20 * time.Millisecond) // let them block (either order must work)
	if err := q.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	for range 2 {
		select {
		case err := <-errc:
			if !errors.Is(err, queue.ErrClosed) {
				t.Fatalf("blocked receive after Close: %v, want queue.ErrClosed", err)
			}
		case <-time.After(Wait):
			t.Fatal("Close did not unblock Receive")
		}
	}
	if _, err := q.Receive(context.Background()); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("receive after Close: %v, want queue.ErrClosed", err)
	}
	if err := q.Publish(context.Background(), msg("late", domain.PriorityHigh)); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("publish after Close: %v, want queue.ErrClosed", err)
	}
	_ = q.Close() // a second Close must not panic
}

func (s suite) concurrent(t *testing.T) {
	const producers, perProducer, batch, consumers = 8, 2000, 10, 4
	q, _ := s.open(t, 50*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 6*Wait)
	defer cancel()

	var (
		mu         sync.Mutex
		seen       = make(map[string]int, producers*perProducer)
		all        = make(chan struct{})
		duplicates atomic.Int64
	)
	var cwg sync.WaitGroup
	for range consumers {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for {
				l, err := q.Receive(ctx)
				if err != nil {
					return
				}
				id := l.Message().ID
				mu.Lock()
				seen[id]++
				if seen[id] > 1 {
					duplicates.Add(1)
				}
				done := len(seen) == producers*perProducer && seen[id] == 1
				mu.Unlock()
				_ = l.Ack(ctx) // a late Ack may report an expired lease; the message was seen
				if done {
					close(all)
				}
			}
		}()
	}

	var pwg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for i := 0; i < perProducer; i += batch {
				var msgs []queue.Message
				for j := i; j < i+batch; j++ {
					msgs = append(msgs, msg(fmt.Sprintf("p%d-%04d", p, j), domain.Priorities[(p+j)%3]))
				}
				for {
					err := q.Publish(ctx, msgs...)
					if errors.Is(err, queue.ErrFull) {
						time.Sleep(time.Millisecond) // what the outbox sweeper does, faster
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
			}
		}()
	}
	pwg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("publish: %v", err)
	}
	select {
	case <-all:
	case <-ctx.Done():
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		t.Fatalf("received %d of %d distinct messages before the deadline: messages lost", n, producers*perProducer)
	}
	cancel()
	cwg.Wait()
	t.Logf("%d messages, %d duplicate deliveries", producers*perProducer, duplicates.Load())
}

func (s suite) settleTwice(t *testing.T) {
	q, st := s.open(t, NoAgeing)
	publish(t, q, msg("a", domain.PriorityMedium), msg("b", domain.PriorityMedium))
	waitDepth(t, st, domain.PriorityMedium, 2)
	l := receive(t, q)
	if l.Message().ID != "a" {
		t.Fatalf("received %s, want a", l.Message().ID)
	}
	ack(t, l)
	if err := l.Ack(context.Background()); err != nil {
		t.Fatalf("second Ack: %v, want nil", err)
	}
	if err := l.Nack(context.Background(), 0); err != nil {
		t.Fatalf("Nack after Ack: %v, want nil (no-op)", err)
	}
	receiveID(t, q, "b") // a was not put back
	expectEmpty(t, q)
}

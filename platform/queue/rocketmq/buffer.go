package rocketmq

import (
	"context"
	"sync"
	"time"

	"herald.dev/platform/queue"
)

// settlement is what a lease tells the consume callback holding its message.
type settlement struct {
	kind  settleKind
	delay time.Duration
}

type settleKind uint8

const (
	settleAck settleKind = iota
	settleNack
	settleExpired
)

// item is one message handed over by a consume callback. The callback
// blocks on settle until a lease settles it (or the queue closes).
type item struct {
	msg   queue.Message // as decoded, Deliveries = deliveries before this one
	lane  int
	since time.Time // when it entered its lane: ageing and order
	order int64     // tie-break for equal since (commit-log offset)
	// settle has room for one settlement: a lease sends at most once.
	settle chan settlement
}

func (it *item) before(o *item) bool {
	if !it.since.Equal(o.since) {
		return it.since.Before(o.since)
	}
	return it.order < o.order
}

// buffers holds the three small local lanes between the push consumer's
// callbacks and Receive. Each lane is kept ordered by (since, order), so
// messages that arrive out of order from a topic's queues are served in the
// order they entered the topic.
//
// Waiting uses channels as counting semaphores, so each event wakes exactly
// one goroutine: slots[r] holds a token per item buffered in lane r (a
// callback blocks while the lane is full), ready holds a token per item
// buffered in any lane (Receive blocks while all are empty). Tokens are
// added after an item is inserted and consumed before one is removed, so a
// receiver holding a ready token always finds an item.
type buffers struct {
	ageLimit time.Duration
	ageing   queue.Ageing
	now      func() time.Time

	slots     [3]chan struct{}
	ready     chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	mu    sync.Mutex
	lanes [3][]*item
}

func newBuffers(size int, ageLimit time.Duration) *buffers {
	b := &buffers{
		ageLimit: ageLimit,
		now:      time.Now,
		ready:    make(chan struct{}, 3*size),
		done:     make(chan struct{}),
	}
	for r := range b.slots {
		b.slots[r] = make(chan struct{}, size)
	}
	return b
}

// put adds it to its lane, waiting for room. It gives up, returning false,
// when stop is closed.
func (b *buffers) put(it *item, stop <-chan struct{}) bool {
	select {
	case b.slots[it.lane] <- struct{}{}:
	case <-stop:
		return false
	}
	b.mu.Lock()
	lane := b.lanes[it.lane]
	i := len(lane)
	for i > 0 && it.before(lane[i-1]) {
		i--
	}
	lane = append(lane, nil)
	copy(lane[i+1:], lane[i:])
	lane[i] = it
	b.lanes[it.lane] = lane
	b.mu.Unlock()
	b.ready <- struct{}{} // never blocks: at most one token per buffered item
	return true
}

// take removes the item to serve next, by pickLane, waiting until there is
// one, ctx ends or the buffers are closed (queue.ErrClosed).
func (b *buffers) take(ctx context.Context) (*item, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-b.done:
		return nil, queue.ErrClosed
	default:
	}
	select {
	case <-b.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.done:
		return nil, queue.ErrClosed
	}
	b.mu.Lock()
	var heads [3]*item
	for r, lane := range b.lanes {
		if len(lane) > 0 {
			heads[r] = lane[0]
		}
	}
	r := pickLane(&b.ageing, heads, b.now(), b.ageLimit) // >= 0: the ready token stands for an item
	lane := b.lanes[r]
	it := lane[0]
	copy(lane, lane[1:])
	lane[len(lane)-1] = nil
	b.lanes[r] = lane[:len(lane)-1]
	b.mu.Unlock()
	<-b.slots[r] // never blocks: the item held a slot
	return it, nil
}

func (b *buffers) depth(lane int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.lanes[lane])
}

// close makes take return queue.ErrClosed. Items still buffered stay with
// their callbacks, which the queue releases separately.
func (b *buffers) close() {
	b.closeOnce.Do(func() { close(b.done) })
}

// pickLane applies the ageing rule of package queue (queue.Ageing) over the
// lane heads (nil = empty lane); -1 if every lane is empty.
func pickLane(a *queue.Ageing, heads [3]*item, now time.Time, ageLimit time.Duration) int {
	var nonEmpty [3]bool
	var waited [3]time.Duration
	for r, h := range heads {
		if h != nil {
			nonEmpty[r], waited[r] = true, now.Sub(h.since)
		}
	}
	return a.Pick(nonEmpty, waited, ageLimit)
}

// Package memqueue is the embedded implementation of Herald's priority lanes:
// three bounded in-process FIFO lanes (high, medium, low) behind one small
// mutex. It is what `queue.driver: embedded` runs on.
//
// Durability is not its job: the SQL outbox is the source of truth. A
// Publish refused with queue.ErrFull (lane at capacity) leaves the
// notification in the outbox, and the outbox sweeper publishes it again
// later; messages still in the lanes when the process stops are found again
// the same way.
//
// Receive serves strict priority with the ageing rule of package queue
// (queue.Ageing): while a higher lane has work, a lane whose head has waited
// in it at least AgeLimit is served on one pick in queue.AgedShare. A message "enters its lane" when it is published,
// when a Nack(0) or an expired lease returns it, or when a delayed Nack
// comes due.
//
// Leases not settled within the visibility timeout are redelivered; Nack
// with a delay parks the message in a timer heap until it is due. One
// background goroutine does both.
package memqueue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"herald.dev/platform/domain"
	"herald.dev/platform/queue"
)

// Defaults used for zero Options fields.
const (
	DefaultCapacity   = 65536
	DefaultAgeLimit   = 5 * time.Second
	DefaultVisibility = 30 * time.Second
)

// ErrLeaseExpired is returned when a lease is settled after its visibility
// timeout: the message has already been handed out again.
var ErrLeaseExpired = errors.New("memqueue: lease expired before it was settled; the message was redelivered")

// Options configures a Queue. Zero values take the defaults above.
type Options struct {
	// Capacity bounds each lane; Publish beyond it fails with queue.ErrFull.
	// Redeliveries (Nack, expired leases) are always accepted.
	Capacity int
	// AgeLimit is the ageing rule's limit (config queue.age_limit).
	AgeLimit time.Duration
	// Visibility is how long a received message may stay unsettled before
	// it is delivered again.
	Visibility time.Duration
}

type entry struct {
	msg queue.Message
	at  int64 // when it entered the lane, ns on the queue's monotonic clock
}

type delayed struct {
	due int64
	seq uint64
	msg queue.Message
}

type waiter struct{ ch chan struct{} }

// Queue is the in-process priority queue. It implements queue.Queue and
// queue.Stats. Create it with New and stop it with Close.
type Queue struct {
	capacity int
	ageLimit int64
	ageing   queue.Ageing
	vis      int64
	epoch    time.Time

	mu       sync.Mutex
	lanes    [3]ring[entry]
	inflight leaseList
	delayed  []delayed // min-heap on (due, seq)
	seq      uint64
	waiters  []*waiter // FIFO of blocked receivers
	closed   bool

	kick    chan struct{} // wakes the timer goroutine for an earlier due time
	done    chan struct{}
	stopped chan struct{}
	pool    sync.Pool // *waiter
}

var (
	_ queue.Queue = (*Queue)(nil)
	_ queue.Stats = (*Queue)(nil)
)

// New starts a queue and its timer goroutine.
func New(o Options) *Queue {
	if o.Capacity <= 0 {
		o.Capacity = DefaultCapacity
	}
	if o.AgeLimit <= 0 {
		o.AgeLimit = DefaultAgeLimit
	}
	if o.Visibility <= 0 {
		o.Visibility = DefaultVisibility
	}
	q := &Queue{
		capacity: o.Capacity,
		ageLimit: int64(o.AgeLimit),
		vis:      int64(o.Visibility),
		epoch:    time.Now(),
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	q.pool.New = func() any { return &waiter{ch: make(chan struct{}, 1)} }
	go q.timers()
	return q
}

// clock returns the wall time and the matching monotonic offset.
func (q *Queue) clock() (time.Time, int64) {
	t := time.Now()
	return t, int64(t.Sub(q.epoch))
}

func (q *Queue) now() int64 { return int64(time.Since(q.epoch)) }

// Publish puts msgs on their lanes, all or none: if any message is invalid
// (empty ID, unknown priority) or its lane lacks room for its share of the
// batch, nothing is published. A full lane yields an error wrapping
// queue.ErrFull. EnqueuedAt is set to now when zero.
func (q *Queue) Publish(ctx context.Context, msgs ...queue.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	var per [3]int
	for i := range msgs {
		if msgs[i].ID == "" {
			return fmt.Errorf("publish: message %d has an empty id", i)
		}
		if !msgs[i].Priority.Valid() {
			return fmt.Errorf("publish %s: invalid priority %q", msgs[i].ID, msgs[i].Priority)
		}
		per[msgs[i].Priority.Rank()]++
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	wall, at := q.clock()
	wall = wall.Round(0) // strip the monotonic reading from the stored value
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return queue.ErrClosed
	}
	for r, n := range per {
		if n > 0 && q.lanes[r].len()+n > q.capacity {
			q.mu.Unlock()
			return fmt.Errorf("publish to %s lane (capacity %d): %w", domain.Priorities[r], q.capacity, queue.ErrFull)
		}
	}
	for i := range msgs {
		e := entry{msg: msgs[i], at: at}
		if e.msg.EnqueuedAt.IsZero() {
			e.msg.EnqueuedAt = wall
		}
		q.lanes[e.msg.Priority.Rank()].push(e)
	}
	q.wakeLocked(len(msgs))
	q.mu.Unlock()
	return nil
}

// Receive returns the next message by priority and the ageing rule,
// blocking until one is available, ctx ends (ctx.Err()) or the queue is
// closed (queue.ErrClosed).
func (q *Queue) Receive(ctx context.Context) (queue.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l := &lease{q: q}
	var w *waiter
	for {
		now := q.now()
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			q.putWaiter(w)
			return nil, queue.ErrClosed
		}
		if r := q.pick(now); r >= 0 {
			e := q.lanes[r].pop()
			l.msg = e.msg
			l.msg.Deliveries++
			l.deadline = now + q.vis
			q.inflight.pushBack(l)
			if len(q.waiters) > 0 && q.readyLocked() > 0 {
				q.wakeLocked(1) // pass on a wake-up this receiver may have absorbed
			}
			q.mu.Unlock()
			q.putWaiter(w)
			return l, nil
		}
		if w == nil {
			w = q.pool.Get().(*waiter)
		}
		q.waiters = append(q.waiters, w)
		q.mu.Unlock()

		select {
		case <-w.ch:
		case <-ctx.Done():
			q.mu.Lock()
			if !q.removeWaiterLocked(w) {
				// Signalled in the meantime: consume the token and hand
				// the wake-up to someone else.
				<-w.ch
				if q.readyLocked() > 0 {
					q.wakeLocked(1)
				}
			}
			q.mu.Unlock()
			q.putWaiter(w)
			return nil, ctx.Err()
		}
	}
}

func (q *Queue) putWaiter(w *waiter) {
	if w != nil {
		q.pool.Put(w)
	}
}

// pick chooses the lane to serve with the ageing rule of package queue
// (queue.Ageing); -1 when all lanes are empty. Called under the lock.
func (q *Queue) pick(now int64) int {
	var nonEmpty [3]bool
	var waited [3]time.Duration
	for r := range q.lanes {
		if q.lanes[r].len() > 0 {
			nonEmpty[r] = true
			waited[r] = time.Duration(now - q.lanes[r].front().at)
		}
	}
	return q.ageing.Pick(nonEmpty, waited, time.Duration(q.ageLimit))
}

func (q *Queue) readyLocked() int {
	return q.lanes[0].len() + q.lanes[1].len() + q.lanes[2].len()
}

// wakeLocked signals up to n blocked receivers, oldest first.
func (q *Queue) wakeLocked(n int) {
	k := min(n, len(q.waiters))
	for i := 0; i < k; i++ {
		q.waiters[i].ch <- struct{}{} // capacity 1, and a waiter is listed at most once
		q.waiters[i] = nil
	}
	if k > 0 {
		rest := copy(q.waiters, q.waiters[k:])
		clear(q.waiters[rest:])
		q.waiters = q.waiters[:rest]
	}
}

func (q *Queue) removeWaiterLocked(w *waiter) bool {
	for i, x := range q.waiters {
		if x == w {
			copy(q.waiters[i:], q.waiters[i+1:])
			q.waiters[len(q.waiters)-1] = nil
			q.waiters = q.waiters[:len(q.waiters)-1]
			return true
		}
	}
	return false
}

// requeue returns a settled-by-Nack message to its lane, at once or after
// delay.
func (q *Queue) requeue(msg queue.Message, delay time.Duration) error {
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return queue.ErrClosed
	}
	if delay <= 0 {
		q.lanes[msg.Priority.Rank()].push(entry{msg: msg, at: now})
		q.wakeLocked(1)
		return nil
	}
	q.seq++
	q.pushDelayedLocked(delayed{due: now + int64(delay), seq: q.seq, msg: msg})
	if q.delayed[0].seq == q.seq {
		select { // new earliest due time: re-arm the timer goroutine
		case q.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// timers moves due delayed messages and expired leases back to their lanes.
// It sleeps until the earliest due time or lease deadline; when nothing is
// pending it sleeps one visibility period, which is never late because a
// lease taken after it went to sleep expires later than that.
func (q *Queue) timers() {
	defer close(q.stopped)
	t := time.NewTimer(time.Duration(q.vis))
	defer t.Stop()
	for {
		select {
		case <-q.done:
			return
		case <-t.C:
		case <-q.kick:
		}
		now := q.now()
		q.mu.Lock()
		moved := 0
		for len(q.delayed) > 0 && q.delayed[0].due <= now {
			d := q.popDelayedLocked()
			q.lanes[d.msg.Priority.Rank()].push(entry{msg: d.msg, at: now})
			moved++
		}
		for l := q.inflight.head; l != nil && l.deadline <= now; l = q.inflight.head {
			q.inflight.remove(l)
			l.state = stateExpired
			q.lanes[l.msg.Priority.Rank()].push(entry{msg: l.msg, at: now})
			moved++
		}
		q.wakeLocked(moved)
		next := now + q.vis
		if len(q.delayed) > 0 {
			next = min(next, q.delayed[0].due)
		}
		if q.inflight.head != nil {
			next = min(next, q.inflight.head.deadline)
		}
		q.mu.Unlock()
		t.Reset(time.Duration(max(next-now, int64(time.Millisecond)/10)))
	}
}

// Close stops the queue: blocked and later Receive calls return
// queue.ErrClosed, Publish and Nack fail with it, and messages still held
// are dropped (the outbox has them). Close is idempotent.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	q.wakeLocked(len(q.waiters))
	for r := range q.lanes {
		q.lanes[r].clear()
	}
	for l := q.inflight.head; l != nil; l = q.inflight.head {
		q.inflight.remove(l)
		l.state = stateDropped
	}
	q.delayed = nil
	q.mu.Unlock()
	close(q.done)
	<-q.stopped
	return nil
}

// Depth reports how many messages wait in lane p, ready to be received
// (leased and delayed messages are not counted).
func (q *Queue) Depth(p domain.Priority) int {
	if !p.Valid() {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lanes[p.Rank()].len()
}

// InFlight reports how many received messages are not settled yet.
func (q *Queue) InFlight() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.inflight.n
}

// Delayed reports how many nacked messages wait for their delay to pass.
func (q *Queue) Delayed() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.delayed)
}

// Delayed-message heap, by hand to avoid container/heap's interface boxing.

func (q *Queue) pushDelayedLocked(d delayed) {
	h := append(q.delayed, d)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h[i].before(&h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	q.delayed = h
}

func (q *Queue) popDelayedLocked() delayed {
	h := q.delayed
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = delayed{}
	h = h[:last]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(h) && h[l].before(&h[m]) {
			m = l
		}
		if r < len(h) && h[r].before(&h[m]) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	q.delayed = h
	return top
}

func (d *delayed) before(o *delayed) bool {
	return d.due < o.due || (d.due == o.due && d.seq < o.seq)
}

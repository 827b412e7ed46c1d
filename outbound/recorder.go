package outbound

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/messages"
)

// recEntry is a group of delivery rows recorded together (in one
// transaction), the tracker events they imply, and what to do once they are
// durable (ok) or could not be written (!ok, shutdown only).
type recEntry struct {
	rows    []*messages.Delivery
	events  []contracts.Event
	after   func(ok bool)
	barrier chan bool
	// wait: block while the buffer is full. Producers of new rows (fan-out
	// pages) wait; outcomes of jobs already in memory never do, since the
	// pools stop starting work while the recorder is saturated (see room).
	wait bool
}

// recorder batches delivery rows: it flushes with one SaveDeliveries call
// when RecordBatch rows are waiting, after RecordInterval, or at once when
// someone waits on a barrier. Writes that fail are retried (the rows stay
// buffered and producers block once the buffer is full), so an outcome is
// never silently dropped while the handler runs. Tracker events are emitted
// after their rows are durable.
type recorder struct {
	h        *Handler
	batch    int
	maxRows  int
	interval time.Duration

	mu       sync.Mutex
	notFull  *sync.Cond
	buf      []recEntry
	rows     int
	nrows    atomic.Int64 // rows, readable without the lock
	choked   atomic.Bool  // a pool was told to hold back: wake them after the next flush
	barriers int
	closed   bool
	killed   bool
	kick     chan struct{}
	done     chan struct{}
}

func newRecorder(h *Handler) *recorder {
	r := &recorder{h: h, batch: h.tun.RecordBatch, maxRows: 4 * h.tun.RecordBatch, interval: h.tun.RecordInterval,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	r.notFull = sync.NewCond(&r.mu)
	return r
}

func (r *recorder) start() { go r.loop() }

func (r *recorder) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// submit queues an entry, blocking while the buffer is full.
func (r *recorder) submit(e recEntry) {
	r.mu.Lock()
	for e.wait && r.rows >= r.maxRows && !r.killed && !r.closed {
		r.notFull.Wait()
	}
	if r.killed {
		r.mu.Unlock()
		if e.barrier != nil {
			e.barrier <- false
		}
		return
	}
	first := len(r.buf) == 0
	r.buf = append(r.buf, e)
	r.rows += len(e.rows)
	r.nrows.Store(int64(r.rows))
	if e.barrier != nil {
		r.barriers++
	}
	urgent := r.rows >= r.batch || e.barrier != nil
	r.mu.Unlock()
	if first || urgent {
		r.wake()
	}
}

// flush waits until everything submitted before it is durable.
func (r *recorder) flush(ctx context.Context) bool {
	b := make(chan bool, 1)
	r.submit(recEntry{barrier: b})
	select {
	case ok := <-b:
		return ok
	case <-ctx.Done():
		return false
	}
}

func (r *recorder) pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rows
}

// close flushes what is buffered and stops the flusher.
func (r *recorder) close() {
	r.mu.Lock()
	r.closed = true
	r.notFull.Broadcast()
	r.mu.Unlock()
	r.wake()
	<-r.done
}

// kill stops without flushing (simulated crash).
func (r *recorder) kill() {
	r.mu.Lock()
	r.killed = true
	buf := r.buf
	r.buf, r.rows = nil, 0
	r.nrows.Store(0)
	r.notFull.Broadcast()
	r.mu.Unlock()
	for _, e := range buf {
		if e.barrier != nil {
			e.barrier <- false
		}
	}
	r.wake()
}

func (r *recorder) loop() {
	defer close(r.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		r.mu.Lock()
		for len(r.buf) == 0 {
			if r.closed || r.killed {
				r.mu.Unlock()
				return
			}
			r.mu.Unlock()
			<-r.kick
			r.unchoke()
			r.mu.Lock()
		}
		urgent := r.rows >= r.batch || r.barriers > 0 || r.closed || r.killed
		r.mu.Unlock()
		if !urgent {
			timer.Reset(r.interval)
			select {
			case <-r.kick:
			case <-timer.C:
			}
			timer.Stop()
		}
		r.mu.Lock()
		take := r.buf
		r.buf, r.rows, r.barriers = nil, 0, 0
		r.nrows.Store(0)
		r.notFull.Broadcast()
		r.mu.Unlock()
		r.write(take)
		r.unchoke()
	}
}

// unchoke wakes the pools that held back work, once there is room again.
func (r *recorder) unchoke() {
	if r.nrows.Load() < int64(r.maxRows) && r.choked.Swap(false) {
		for _, p := range r.h.pools {
			p.wake()
		}
	}
}

// room tells a pool whether work of priority rank may start: lower work
// stops while maxRows outcomes wait for their flush, high at twice that.
// Holding back there (rather than blocking workers on submit) keeps every
// worker free for high work and pushes the backpressure up to the
// fan-outs, which block on their full sub-queues.
func (r *recorder) room(rank int) bool {
	limit := int64(r.maxRows)
	if rank == 0 {
		limit *= 2
	}
	if r.nrows.Load() < limit {
		return true
	}
	r.choked.Store(true)
	r.wake()
	return false
}

func (r *recorder) write(take []recEntry) {
	h := r.h
	var rows []*messages.Delivery
	var events []contracts.Event
	for _, e := range take {
		rows = append(rows, e.rows...)
		events = append(events, e.events...)
	}
	ok := true
	if len(rows) > 0 {
		// Random (hashed) ids: inserting in key order touches far fewer
		// B-tree pages per transaction.
		slices.SortFunc(rows, func(a, b *messages.Delivery) int { return strings.Compare(a.ID, b.ID) })
		ok = r.save(rows)
	}
	if ok && len(events) > 0 {
		h.track.Track(events...)
	}
	for _, e := range take {
		if e.after != nil {
			e.after(ok)
		}
		if e.barrier != nil {
			e.barrier <- ok
		}
	}
}

// save writes rows, retrying until it succeeds. While closing it gives up
// after the shutdown grace; killed, it gives up at once.
func (r *recorder) save(rows []*messages.Delivery) bool {
	h := r.h
	var deadline time.Time
	backoff := 50 * time.Millisecond
	for {
		r.mu.Lock()
		killed, closed := r.killed, r.closed
		r.mu.Unlock()
		if killed || h.dead.Load() {
			return false
		}
		if closed && deadline.IsZero() {
			deadline = time.Now().Add(h.tun.ShutdownGrace)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := h.store.SaveDeliveries(ctx, rows)
		cancel()
		if err == nil {
			return true
		}
		h.logf("outbound: record %d deliveries: %v (retrying)", len(rows), err)
		if !deadline.IsZero() && time.Now().After(deadline) {
			h.logf("outbound: giving up recording %d deliveries at shutdown; reconciliation resumes them", len(rows))
			return false
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
}

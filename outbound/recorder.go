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

// recEntry is a group of delivery rows recorded together, the tracker
// events they imply, and what to do once they are durable (ok) or could not
// be written (!ok, which happens only at shutdown or after a halt).
type recEntry struct {
	rows    []*messages.Delivery
	events  []contracts.Event
	after   func(ok bool)
	barrier chan bool
	// high: the entry belongs to a high-priority notification and is
	// written ahead of everything else.
	high bool
	// low: the entry belongs to a low-priority notification; its rows are
	// written in larger transactions (RecordLowTxRows).
	low bool
	// atomic: the rows must be written in one transaction (a failure and
	// the fallback deliveries it created). Other entries' rows may be split
	// across transactions.
	atomic bool
	// wait: block while the buffer is full. Producers of new rows (fan-out
	// pages) wait; outcomes of jobs already in memory never do, since the
	// pools stop starting work while the recorder is saturated (see room).
	wait bool
}

// recorder batches delivery rows. It flushes when RecordBatch rows wait,
// after RecordInterval, or at once for a barrier or a high-priority entry;
// rows are written in key order, RecordTxRows per transaction, high-priority
// entries first and ahead of any remaining low-priority chunk. Failed writes
// are retried (rows stay buffered and new-row producers block once the
// buffer is full), so an outcome is never silently dropped while the handler
// runs. Tracker events are emitted once their rows are durable.
type recorder struct {
	h         *Handler
	batch     int
	maxRows   int
	txRows    int
	lowTxRows int
	lowBusy   int // lowTxRows while high-priority work arrives (lowRows)
	writers   int
	interval  time.Duration

	mu       sync.Mutex
	notFull  *sync.Cond
	buf      [2][]recEntry // 0 = high, 1 = the rest
	rows     int
	barriers int
	hasHigh  bool
	closed   bool
	killed   bool
	nrows    atomic.Int64 // rows, readable without the lock
	choked   atomic.Bool  // a pool was told to hold back: wake them once there is room
	kick     chan struct{}
	done     chan struct{}

	// Owned by the flusher goroutine (lowRows, called by write): the
	// last urgent count seen, and when high-priority work was last seen.
	seenUrgent uint64
	highAt     time.Time
}

// busyFor is how long after the last high-priority work the low-priority
// chunks stay at RecordLowTxRowsBusy.
const busyFor = time.Second

// lowRows is the size of the low-priority chunks of the next write:
// RecordLowTxRowsBusy while high-priority work arrives, so its accepts and
// claims wait for a shorter chunk, else RecordLowTxRows.
func (r *recorder) lowRows(now time.Time, high bool) int {
	if in := r.h.urgentIn.Load(); in != r.seenUrgent || high {
		r.seenUrgent, r.highAt = in, now
	}
	if !r.highAt.IsZero() && now.Sub(r.highAt) < busyFor {
		return r.lowBusy
	}
	return r.lowTxRows
}

func newRecorder(h *Handler) *recorder {
	r := &recorder{h: h, batch: h.tun.RecordBatch, maxRows: 4 * h.tun.RecordBatch, txRows: h.tun.RecordTxRows, lowTxRows: h.tun.RecordLowTxRows, lowBusy: h.tun.RecordLowTxRowsBusy, writers: h.tun.RecordWriters,
		interval: h.tun.RecordInterval, kick: make(chan struct{}, 1), done: make(chan struct{})}
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

// submit queues an entry.
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
	first := len(r.buf[0])+len(r.buf[1]) == 0
	lane := 1
	if e.high {
		lane = 0
		r.hasHigh = true
	}
	r.buf[lane] = append(r.buf[lane], e)
	r.rows += len(e.rows)
	r.nrows.Store(int64(r.rows))
	if e.barrier != nil {
		r.barriers++
	}
	urgent := r.rows >= r.batch || e.barrier != nil || e.high
	r.mu.Unlock()
	if first || urgent {
		r.wake()
	}
}

// flush waits until everything submitted before it at the same priority
// (high, or not) is durable.
func (r *recorder) flush(ctx context.Context, high bool) bool {
	b := make(chan bool, 1)
	r.submit(recEntry{barrier: b, high: high})
	select {
	case ok := <-b:
		return ok
	case <-ctx.Done():
		return false
	}
}

func (r *recorder) pending() int { return int(r.nrows.Load()) }

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
	buf := append(r.buf[0], r.buf[1]...)
	r.buf = [2][]recEntry{}
	r.rows = 0
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
		for len(r.buf[0])+len(r.buf[1]) == 0 {
			if r.closed || r.killed {
				r.mu.Unlock()
				return
			}
			r.mu.Unlock()
			<-r.kick
			r.unchoke()
			r.mu.Lock()
		}
		urgent := r.rows >= r.batch || r.barriers > 0 || r.hasHigh || r.closed || r.killed
		r.mu.Unlock()
		if !urgent {
			timer.Reset(r.interval)
			select {
			case <-r.kick:
			case <-timer.C:
			}
			timer.Stop()
		}
		hi, lo := r.take(true)
		r.write(hi)
		r.write(lo)
		r.unchoke()
	}
}

// take removes the buffered entries: both lanes, or only the high one.
func (r *recorder) take(all bool) (hi, lo []recEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	hi, r.buf[0], r.hasHigh = r.buf[0], nil, false
	if all {
		lo, r.buf[1] = r.buf[1], nil
	}
	r.rows, r.barriers = 0, 0
	for _, e := range r.buf[1] {
		r.rows += len(e.rows)
		if e.barrier != nil {
			r.barriers++
		}
	}
	r.nrows.Store(int64(r.rows))
	r.notFull.Broadcast()
	return hi, lo
}

func (r *recorder) write(take []recEntry) {
	if len(take) == 0 {
		return
	}
	h := r.h
	high := take[0].high
	chunks, events := chunkRows(take, r.txRows, r.lowRows(time.Now(), high))
	ok := true
	if len(chunks) > 0 {
		// One transaction per chunk: the writer (a single connection on
		// SQLite) is released between chunks, so high-priority work waits
		// for at most one chunk, never for a whole backlog.
		// MySQL takes several chunks at once (RecordWriters).
		var wg sync.WaitGroup
		var failed atomic.Bool
		sem := make(chan struct{}, r.writers)
		for i, chunk := range chunks {
			if failed.Load() {
				break
			}
			if i > 0 && !high {
				r.preempt()
			}
			if r.writers == 1 {
				failed.Store(!r.save(chunk))
				continue
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				if !r.save(chunk) {
					failed.Store(true)
				}
			}()
		}
		wg.Wait()
		ok = !failed.Load()
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

// chunkRows orders the rows of entries by id (ids of one notification sort
// by recipient, so key order appends instead of scattering) and cuts them
// into transactions of about txRows (lowTxRows for low-priority entries,
// written after the others), never splitting an atomic entry.
func chunkRows(take []recEntry, txRows, lowTxRows int) ([][]*messages.Delivery, []contracts.Event) {
	// Sized up front: a fan-out's flush carries thousands of rows and
	// events, and growing these slices by doubling was an eighth of the
	// bytes a fan-out allocated.
	var nUnits, nLow, nEvents int
	for _, e := range take {
		nEvents += len(e.events)
		n := len(e.rows)
		if e.atomic && n > 1 {
			n = 1
		}
		if e.low {
			nLow += n
		} else {
			nUnits += n
		}
	}
	units, lowUnits := make([][]*messages.Delivery, 0, nUnits), make([][]*messages.Delivery, 0, nLow)
	events := make([]contracts.Event, 0, nEvents)
	for _, e := range take {
		events = append(events, e.events...)
		dst := &units
		if e.low {
			dst = &lowUnits
		}
		if e.atomic && len(e.rows) > 1 {
			*dst = append(*dst, e.rows)
			continue
		}
		for i := range e.rows {
			*dst = append(*dst, e.rows[i:i+1])
		}
	}
	var chunks [][]*messages.Delivery
	for _, part := range []struct {
		units [][]*messages.Delivery
		size  int
	}{{units, txRows}, {lowUnits, max(lowTxRows, txRows)}} {
		slices.SortFunc(part.units, func(a, b []*messages.Delivery) int { return strings.Compare(a[0].ID, b[0].ID) })
		left := 0
		for _, u := range part.units {
			left += len(u)
		}
		var cur []*messages.Delivery
		for _, u := range part.units {
			if cur == nil {
				cur = make([]*messages.Delivery, 0, min(left, part.size+len(u)))
			}
			left -= len(u)
			cur = append(cur, u...)
			if len(cur) >= part.size {
				chunks, cur = append(chunks, cur), nil
			}
		}
		if len(cur) > 0 {
			chunks = append(chunks, cur)
		}
	}
	return chunks, events
}

// preempt runs between low-priority chunks: the high-priority claims and
// accepts already waiting for the writer go first, then any high-priority
// rows. It waits only for the urgent writes begun before it: under a steady
// high-priority stream new ones keep arriving, and waiting for none to be
// left would stall the chunks for the whole bound.
func (r *recorder) preempt() {
	h := r.h
	before := h.urgentIn.Load()
	for deadline := time.Now().Add(50 * time.Millisecond); h.urgentOut.Load() < before && time.Now().Before(deadline); {
		time.Sleep(100 * time.Microsecond)
	}
	r.mu.Lock()
	has := r.hasHigh
	r.mu.Unlock()
	if has {
		hi, _ := r.take(false)
		r.write(hi)
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

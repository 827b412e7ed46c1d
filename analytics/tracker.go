package analytics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"herald.dev/platform/contracts"
)

// Options tune a Tracker. Zero values take the defaults.
type Options struct {
	// BufferSize bounds the events held in memory waiting for a flush
	// (default 65536). When it is full, Track drops and counts.
	BufferSize int
	// BatchSize is the most events one WriteEvents call carries (default
	// 8192). Each batch is ordered by notification, so a sink can store a
	// notification's events of one batch together (the SQL sink packs them
	// into one row): larger batches mean fewer rows.
	BatchSize int
	// FlushInterval is the longest an event waits before a flush (default 100ms).
	FlushInterval time.Duration
	// Retries is how many times a failed batch is retried (default 3; -1 = none).
	Retries int
	// RetryBackoff is the wait before the first retry, doubled each time (default 200ms).
	RetryBackoff time.Duration
	// WriteTimeout bounds one WriteEvents attempt (default 10s).
	WriteTimeout time.Duration
	// CloseTimeout bounds the final flush in Close (default 15s); events
	// still unwritten then are counted as lost.
	CloseTimeout time.Duration
	// Logf receives lost-batch reports (nil = silent).
	Logf func(format string, args ...any)
}

func (o *Options) defaults() {
	if o.BufferSize <= 0 {
		o.BufferSize = 65536
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 8192
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 100 * time.Millisecond
	}
	if o.Retries == 0 {
		o.Retries = 3
	} else if o.Retries < 0 {
		o.Retries = 0
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 200 * time.Millisecond
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 15 * time.Second
	}
}

// Stats are the tracker's counters since it started.
type Stats struct {
	// Tracked counts events accepted into the buffer.
	Tracked uint64 `json:"tracked"`
	// Dropped counts events refused because the buffer was full or the
	// tracker was closed.
	Dropped uint64 `json:"dropped"`
	// Written counts events the sink stored.
	Written uint64 `json:"written"`
	// Lost counts events of batches that still failed after the retries.
	Lost uint64 `json:"lost"`
	// Retries counts retried write attempts; Batches successful writes.
	Retries uint64 `json:"retries"`
	Batches uint64 `json:"batches"`
	// Buffered is the number of events tracked but not yet written or lost
	// (in the buffer or in the batch being written).
	Buffered int `json:"buffered"`
}

// ErrClosed is returned by Flush after Close.
var ErrClosed = errors.New("analytics tracker closed")

// Tracker implements contracts.Tracker: Track copies events into a bounded,
// sharded in-memory buffer and returns at once; one background goroutine
// writes them to the sink in batches, by size or every FlushInterval, and
// retries failed batches with backoff.
type Tracker struct {
	sink     Sink
	o        Options
	shards   []shard
	mask     uint32
	shardCap int
	kickAt   int

	kick     chan struct{}
	flushReq chan chan error
	stop     chan struct{}
	done     chan struct{}
	closeMu  sync.Mutex
	closed   bool
	closeErr error

	dropped, written, lost, retries, batches atomic.Uint64

	pending []contracts.Event // flusher-owned
	order   []int32           // flusher-owned scratch for sortPending
}

var _ contracts.Tracker = (*Tracker)(nil)

type shard struct {
	mu      sync.Mutex
	buf     []contracts.Event
	spare   []contracts.Event // the buffer to swap in at the next drain
	tracked uint64
	closed  bool
	_       [16]byte // keep neighbouring shards' locks off one cache line
}

// NewTracker starts a tracker writing to sink. Call Close to flush and stop it.
func NewTracker(sink Sink, opts Options) *Tracker {
	opts.defaults()
	n := 1
	for n < runtime.GOMAXPROCS(0)*2 && n < 64 {
		n <<= 1
	}
	for n > 1 && opts.BufferSize/n < 64 {
		n >>= 1
	}
	t := &Tracker{
		sink:     sink,
		o:        opts,
		shards:   make([]shard, n),
		mask:     uint32(n - 1),
		shardCap: opts.BufferSize / n,
		kick:     make(chan struct{}, 1),
		flushReq: make(chan chan error),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	t.kickAt = max(1, min(t.shardCap, opts.BatchSize/n))
	for i := range t.shards {
		t.shards[i].buf = make([]contracts.Event, 0, min(t.shardCap, 1024))
	}
	go t.run()
	return t
}

// Track implements contracts.Tracker. It never blocks on I/O: events that
// do not fit in the buffer are dropped and counted. An event with a zero
// time is stamped with the current time.
func (t *Tracker) Track(events ...contracts.Event) {
	if len(events) == 0 {
		return
	}
	i := rand.Uint32() & t.mask
	for try := 0; try < 2 && len(events) > 0; try++ {
		s := &t.shards[(i+uint32(try))&t.mask]
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			break
		}
		n := min(t.shardCap-len(s.buf), len(events))
		if n > 0 {
			old := len(s.buf)
			s.buf = append(s.buf, events[:n]...)
			for j := old; j < len(s.buf); j++ {
				if s.buf[j].At.IsZero() {
					s.buf[j].At = time.Now()
				}
			}
			s.tracked += uint64(n)
			events = events[n:]
		}
		full := len(s.buf) >= t.kickAt
		s.mu.Unlock()
		if full {
			select {
			case t.kick <- struct{}{}:
			default:
			}
		}
	}
	if len(events) > 0 {
		t.dropped.Add(uint64(len(events)))
	}
}

// Flush writes everything buffered so far and returns the error of a batch
// that could not be written (its events are counted as lost).
func (t *Tracker) Flush(ctx context.Context) error {
	ack := make(chan error, 1)
	select {
	case t.flushReq <- ack:
	case <-t.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-ack:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops accepting events, writes what is buffered (for at most
// CloseTimeout) and stops the flusher. It returns the error of a final batch
// that could not be written. Calling it again returns the same result.
func (t *Tracker) Close() error {
	t.closeMu.Lock()
	defer t.closeMu.Unlock()
	if t.closed {
		return t.closeErr
	}
	t.closed = true
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
	}
	close(t.stop)
	<-t.done
	return t.closeErr
}

// Stats returns the counters.
func (t *Tracker) Stats() Stats {
	st := Stats{
		Dropped: t.dropped.Load(),
		Written: t.written.Load(),
		Lost:    t.lost.Load(),
		Retries: t.retries.Load(),
		Batches: t.batches.Load(),
	}
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		st.Tracked += s.tracked
		s.mu.Unlock()
	}
	// Written and Lost were read first, so this is never negative.
	st.Buffered = int(st.Tracked - st.Written - st.Lost)
	return st
}

func (t *Tracker) run() {
	defer close(t.done)
	tick := time.NewTicker(t.o.FlushInterval)
	defer tick.Stop()
	for {
		var ack chan error
		select {
		case <-tick.C:
		case <-t.kick:
		case ack = <-t.flushReq:
		case <-t.stop:
			t.closeErr = t.flush(time.Now().Add(t.o.CloseTimeout))
			return
		}
		err := t.flush(time.Time{})
		if ack != nil {
			ack <- err
		}
	}
}

// drain moves every shard's events into t.pending. Each shard swaps in its
// spare buffer, so producers wait only for a slice swap, and gets the old one
// back (cleared) as its next spare: steady state allocates nothing.
func (t *Tracker) drain() {
	t.pending = t.pending[:0]
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		if len(s.buf) == 0 {
			s.mu.Unlock()
			continue
		}
		buf := s.buf
		s.buf, s.spare = s.spare[:0], nil
		s.mu.Unlock()
		t.pending = append(t.pending, buf...)
		clear(buf) // drop the events' strings
		s.mu.Lock()
		s.spare = buf[:0]
		s.mu.Unlock()
	}
}

// sortPending orders t.pending by app and notification, keeping tracked order
// within one notification. It sorts indices and then moves each event once,
// which costs far less than a stable sort's swaps of the events themselves
// (a flush can hold a fan-out's hundreds of thousands).
func (t *Tracker) sortPending() {
	p := t.pending
	n := len(p)
	if n < 2 {
		return
	}
	if cap(t.order) < n {
		t.order = make([]int32, n)
	}
	order := t.order[:n]
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		x, y := &p[a], &p[b]
		if c := strings.Compare(x.AppID, y.AppID); c != 0 {
			return c
		}
		if c := strings.Compare(x.NotificationID, y.NotificationID); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	permute(p, order)
}

// permute rearranges p in place so that the new p[k] is the old p[order[k]],
// following each cycle once. It leaves order as the identity.
func permute(p []contracts.Event, order []int32) {
	for k := range order {
		if int(order[k]) == k {
			continue
		}
		tmp := p[k]
		j := k
		for {
			next := int(order[j])
			order[j] = int32(j)
			if next == k {
				p[j] = tmp
				break
			}
			p[j] = p[next]
			j = next
		}
	}
}

// flush drains the buffer (everything tracked before the call) and writes
// it in batches. A zero deadline means none.
func (t *Tracker) flush(deadline time.Time) error {
	t.drain()
	// A notification's events (accepted, queued, sent, done; a fan-out's
	// thousands) end up next to each other, in tracked order.
	t.sortPending()
	var lastErr error
	degraded := false
	for off := 0; off < len(t.pending); off += t.o.BatchSize {
		batch := t.pending[off:min(off+t.o.BatchSize, len(t.pending))]
		if err := t.write(batch, deadline, degraded); err != nil {
			lastErr = err
			// The sink is failing: give the rest of this round one attempt
			// each instead of a full retry cycle.
			degraded = true
		}
	}
	clear(t.pending) // release the events' strings
	return lastErr
}

func (t *Tracker) write(batch []contracts.Event, deadline time.Time, once bool) error {
	backoff := t.o.RetryBackoff
	attempts := 1 + t.o.Retries
	if once {
		attempts = 1
	}
	var err error
	for a := 0; a < attempts; a++ {
		if a > 0 {
			if !deadline.IsZero() && time.Now().Add(backoff).After(deadline) {
				break
			}
			t.retries.Add(1)
			time.Sleep(backoff)
			backoff *= 2
		}
		timeout := t.o.WriteTimeout
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				if err == nil {
					err = errors.New("close timeout reached")
				}
				break
			}
			timeout = min(timeout, left)
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err = t.sink.WriteEvents(ctx, batch)
		cancel()
		if err == nil {
			t.written.Add(uint64(len(batch)))
			t.batches.Add(1)
			return nil
		}
	}
	t.lost.Add(uint64(len(batch)))
	err = fmt.Errorf("analytics: %d events lost: %w", len(batch), err)
	if t.o.Logf != nil {
		t.o.Logf("%v", err)
	}
	return err
}

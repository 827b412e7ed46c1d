package messages

import (
	"context"
	"database/sql"
	"sync"

	"herald.dev/platform/sqldb"
)

// opBatcher group-commits independent writes: concurrent callers share one
// transaction and one fsync. On SQLite every write of the store goes through
// it (Store.write), so accepts, claims, delivery rows and status changes
// that arrive together share a commit instead of queueing for the single
// writer one fsync each. A batch that fails is retried after a deadlock;
// otherwise each of its operations is retried alone, so one bad operation
// fails only its own caller.
type opBatcher struct {
	db *sqldb.DB
	// urgent carries writes someone is waiting on to answer a request or
	// to start a delivery (accepts, claims); normal carries bookkeeping
	// (delivery rows, counters, status changes). Each transaction takes every
	// urgent write first, and normal writes up to a weight cap, so a long
	// queue of fan-out rows never holds up an API answer or a high-priority
	// claim by more than one capped transaction.
	urgent chan *opReq
	normal chan *opReq
	wg     sync.WaitGroup
	mu     sync.RWMutex
	closed bool
}

type opReq struct {
	op     func(*sql.Tx) error
	weight int
	err    error
	done   chan struct{}
}

// batchWeight caps the rows one shared transaction writes.
const batchWeight = 2048

func newOpBatcher(db *sqldb.DB) *opBatcher {
	b := &opBatcher{db: db, urgent: make(chan *opReq, 4096), normal: make(chan *opReq, 4096)}
	b.wg.Add(1)
	go b.loop()
	return b
}

func (b *opBatcher) do(ctx context.Context, op func(*sql.Tx) error) error {
	return b.submit(ctx, b.normal, op, 1)
}

func (b *opBatcher) submit(ctx context.Context, ch chan *opReq, op func(*sql.Tx) error, weight int) error {
	r := &opReq{op: op, weight: max(1, weight), done: make(chan struct{})}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return ErrClosed
	}
	select {
	case ch <- r:
		b.mu.RUnlock()
	case <-ctx.Done():
		b.mu.RUnlock()
		return ctx.Err()
	}
	<-r.done
	return r.err
}

func (b *opBatcher) close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.urgent)
		close(b.normal)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *opBatcher) loop() {
	defer b.wg.Done()
	batch := make([]*opReq, 0, 512)
	urgent, normal := b.urgent, b.normal
	for urgent != nil || normal != nil {
		var first *opReq
		select {
		case r, ok := <-urgent:
			if !ok {
				urgent = nil
				continue
			}
			first = r
		case r, ok := <-normal:
			if !ok {
				normal = nil
				continue
			}
			first = r
		}
		batch = append(batch[:0], first)
		weight := first.weight
	drainUrgent:
		for urgent != nil {
			select {
			case r, ok := <-urgent:
				if !ok {
					urgent = nil
					break drainUrgent
				}
				batch = append(batch, r)
				weight += r.weight
			default:
				break drainUrgent
			}
		}
	fill:
		for normal != nil && weight < batchWeight {
			select {
			case r, ok := <-normal:
				if !ok {
					normal = nil
					break fill
				}
				batch = append(batch, r)
				weight += r.weight
			default:
				break fill
			}
		}
		err := b.run(batch)
		if err != nil && len(batch) > 1 {
			for _, r := range batch {
				r.err = b.run([]*opReq{r})
				close(r.done)
			}
			continue
		}
		for _, r := range batch {
			r.err = err
			close(r.done)
		}
	}
}

func (b *opBatcher) run(batch []*opReq) error {
	return b.db.TxRetry(context.Background(), func(tx *sql.Tx) error {
		for _, r := range batch {
			if err := r.op(tx); err != nil {
				return err
			}
		}
		return nil
	})
}

// write runs op in a write transaction: on SQLite through the shared
// group-commit loop (one writer, so one commit serves every waiting
// operation), elsewhere in a transaction of its own (MySQL commits
// concurrently and groups fsyncs itself). op may run more than once.
func (s *Store) write(ctx context.Context, op func(*sql.Tx) error) error {
	return s.writeWeighted(ctx, op, 1, false)
}

// writeWeighted is write for an operation of weight rows; urgent ones
// (someone answers a request or starts a delivery on it) go first.
func (s *Store) writeWeighted(ctx context.Context, op func(*sql.Tx) error, weight int, urgent bool) error {
	if s.db.Dialect != sqldb.SQLite {
		return s.db.TxRetry(ctx, op)
	}
	ch := s.ops.normal
	if urgent {
		ch = s.ops.urgent
	}
	return s.ops.submit(ctx, ch, op, weight)
}

// recent keeps the notifications this process accepted until the outbound
// handler takes them (Take), so a dispatch in the same process costs no
// database read. It is bounded: the oldest entries fall out.
type recent struct {
	mu   sync.Mutex
	m    map[string]*Notification
	ring []string
	next int
}

const recentCap = 16384

func newRecent() *recent {
	return &recent{m: make(map[string]*Notification, 1024), ring: make([]string, recentCap)}
}

func (r *recent) put(n *Notification) {
	c := *n
	r.mu.Lock()
	if old := r.ring[r.next]; old != "" {
		delete(r.m, old)
	}
	r.ring[r.next] = n.ID
	r.next = (r.next + 1) % len(r.ring)
	r.m[n.ID] = &c
	r.mu.Unlock()
}

func (r *recent) take(id string) *Notification {
	r.mu.Lock()
	n := r.m[id]
	delete(r.m, id)
	r.mu.Unlock()
	return n
}

package messages

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"herald.dev/platform/domain"
	"herald.dev/platform/sqldb"
)

// committer gathers Accept calls into shared transactions (group commit).
// Batching is natural: while one transaction commits, new requests queue up
// and the next transaction takes all of them (up to the batch cap), so an
// idle server answers a lone request after one commit and a busy one shares
// each fsync among hundreds. An optional window adds a short wait to gather more.
type committer struct {
	s      *Store
	opts   Options
	reqs   chan *acceptReq
	wg     sync.WaitGroup
	mu     sync.RWMutex
	closed bool
}

type acceptReq struct {
	ctx  context.Context
	n    *Notification
	args []any
	res  Accepted
	err  error
	done chan struct{}
}

func newCommitter(s *Store, opts Options) *committer {
	c := &committer{s: s, opts: opts, reqs: make(chan *acceptReq, opts.CommitBatch*4)}
	for i := 0; i < opts.Committers; i++ {
		c.wg.Add(1)
		go c.loop()
	}
	return c
}

var reqPool = sync.Pool{New: func() any { return &acceptReq{done: make(chan struct{}, 1)} }}

func (c *committer) submit(ctx context.Context, n *Notification) (Accepted, error) {
	args, err := notifArgs(n)
	if err != nil {
		return Accepted{}, err
	}
	r := reqPool.Get().(*acceptReq)
	r.ctx, r.n, r.args, r.res, r.err = ctx, n, args, Accepted{}, nil
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		reqPool.Put(r)
		return Accepted{}, ErrClosed
	}
	select {
	case c.reqs <- r:
		c.mu.RUnlock()
	case <-ctx.Done():
		c.mu.RUnlock()
		reqPool.Put(r)
		return Accepted{}, ctx.Err()
	}
	// Once queued the request is always answered (the committer does not
	// abandon it), so the row is either committed or not, never unknown.
	<-r.done
	res, err := r.res, r.err
	r.ctx, r.n, r.args = nil, nil, nil
	reqPool.Put(r)
	return res, err
}

func (c *committer) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.reqs)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *committer) loop() {
	defer c.wg.Done()
	batch := make([]*acceptReq, 0, c.opts.CommitBatch)
	for first := range c.reqs {
		batch = append(batch[:0], first)
		c.gather(&batch)
		c.commit(batch)
	}
}

func (c *committer) gather(batch *[]*acceptReq) {
	var timer <-chan time.Time
	if c.opts.CommitWindow > 0 {
		t := time.NewTimer(c.opts.CommitWindow)
		defer t.Stop()
		timer = t.C
	}
	for len(*batch) < c.opts.CommitBatch {
		select {
		case r, ok := <-c.reqs:
			if !ok {
				return
			}
			*batch = append(*batch, r)
			continue
		default:
		}
		if timer == nil {
			return
		}
		select {
		case r, ok := <-c.reqs:
			if !ok {
				return
			}
			*batch = append(*batch, r)
		case <-timer:
			return
		}
	}
}

func (c *committer) commit(batch []*acceptReq) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			r.done <- struct{}{}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	err := c.writeTx(live)
	if err != nil && sqldb.IsDuplicate(err) {
		// Another committer or instance raced us on an idempotency key:
		// settle each request alone; a retry sees the winner's row and
		// answers as a duplicate (or a conflict).
		for _, r := range live {
			r.res, r.err = Accepted{}, nil
			one := []*acceptReq{r}
			r.err = c.writeTx(one)
			if r.err != nil && sqldb.IsDuplicate(r.err) {
				r.res, r.err = Accepted{}, nil
				r.err = c.writeTx(one)
			}
			if r.err != nil {
				r.err = fmt.Errorf("accept notification: %w", r.err)
			}
			r.done <- struct{}{}
		}
		return
	}
	for _, r := range live {
		if err != nil {
			r.err = fmt.Errorf("accept notification: %w", err)
		} else if r.err == nil && !r.res.Duplicate && r.n.Status != domain.MessageProcessing {
			// A row written processing was claimed at accept: the claimer
			// holds its own copy and never asks Take for it.
			c.s.recent.put(r.n)
		}
		r.done <- struct{}{}
	}
}

// writeTx writes a batch in one transaction (retried after a deadlock or
// lock timeout: concurrent committers on MySQL can deadlock on the
// idempotency index).
func (c *committer) writeTx(batch []*acceptReq) error {
	return c.s.writeWeighted(context.Background(), func(tx *sql.Tx) error {
		for _, r := range batch {
			r.res, r.err = Accepted{}, nil
		}
		return c.write(tx, batch)
	}, len(batch), true)
}

// write inserts the batch's new rows and resolves idempotency keys.
func (c *committer) write(tx *sql.Tx, batch []*acceptReq) error {
	ctx := context.Background()
	type key struct{ app, key string }
	seen := map[key]*acceptReq{}
	insert := make([]*acceptReq, 0, len(batch))
	for _, r := range batch {
		n := r.n
		if n.IdempotencyKey == "" {
			insert = append(insert, r)
			r.res = Accepted{ID: n.ID, Status: n.Status}
			continue
		}
		k := key{n.AppID, n.IdempotencyKey}
		if prev, ok := seen[k]; ok { // same key twice in one batch
			r.res, r.err = dupOf(prev.n.ID, prev.n.RequestHash, prev.n.Status, n.RequestHash)
			continue
		}
		var id, hash, status string
		err := c.s.db.QueryRow(ctx, tx, qIdem, n.AppID, n.IdempotencyKey).Scan(&id, &hash, &status)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			seen[k] = r
			insert = append(insert, r)
			r.res = Accepted{ID: n.ID, Status: n.Status}
		case err != nil:
			return fmt.Errorf("look up idempotency key: %w", err)
		default:
			r.res, r.err = dupOf(id, hash, domain.MessageStatus(status), n.RequestHash)
		}
	}
	return c.s.q.insNotif.Each(len(insert), func(q string, start, end int) error {
		args := make([]any, 0, (end-start)*20)
		for _, r := range insert[start:end] {
			args = append(args, r.args...)
		}
		_, err := c.s.db.Exec(ctx, tx, q, args...)
		return err
	})
}

func dupOf(id, storedHash string, status domain.MessageStatus, hash string) (Accepted, error) {
	if storedHash != hash {
		return Accepted{}, ErrIdempotencyConflict
	}
	return Accepted{ID: id, Duplicate: true, Status: status}, nil
}

package messages

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"herald.dev/platform/domain"
	"herald.dev/platform/sqldb"
)

// claimer group-commits claims: concurrent Claim calls share one
// transaction, as accepts do, so dispatching N messages costs a handful of
// commits instead of N.
type claimer struct {
	s      *Store
	reqs   chan *claimReq
	wg     sync.WaitGroup
	mu     sync.RWMutex
	closed bool
}

type claimReq struct {
	ctx     context.Context
	id      string
	lease   time.Time
	ok      bool
	resumed bool
	err     error
	done    chan struct{}
}

const claimBatch = 512

func newClaimer(s *Store) *claimer {
	c := &claimer{s: s, reqs: make(chan *claimReq, claimBatch*4)}
	// SQLite has one writer, so one loop; MySQL commits claims of
	// different messages in parallel (each waits for its own fsync).
	loops := 1
	if s.db.Dialect == sqldb.MySQL {
		loops = 4
	}
	for i := 0; i < loops; i++ {
		c.wg.Add(1)
		go c.loop()
	}
	return c
}

// Claim moves an undispatched notification (accepted, queued or scheduled)
// to processing with a lease until lease, recording the first dispatch time.
// It reports false when the notification is in any other state (another
// consumer claimed it, or it is final). resumed is true when the
// notification had been dispatched before (its fan-out may have recorded
// deliveries that must not be sent again); it is read from the database in
// the claiming transaction, never from a cached copy. Concurrent claims
// share one transaction.
func (s *Store) Claim(ctx context.Context, id string, lease time.Time) (ok, resumed bool, err error) {
	r := &claimReq{ctx: ctx, id: id, lease: lease, done: make(chan struct{})}
	c := s.claims
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return false, false, ErrClosed
	}
	select {
	case c.reqs <- r:
		c.mu.RUnlock()
	case <-ctx.Done():
		c.mu.RUnlock()
		return false, false, ctx.Err()
	}
	<-r.done
	return r.ok, r.resumed, r.err
}

func (c *claimer) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.reqs)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *claimer) loop() {
	defer c.wg.Done()
	batch := make([]*claimReq, 0, claimBatch)
	for first := range c.reqs {
		batch = append(batch[:0], first)
	gather:
		for len(batch) < claimBatch {
			select {
			case r, ok := <-c.reqs:
				if !ok {
					break gather
				}
				batch = append(batch, r)
			default:
				break gather
			}
		}
		c.commit(batch)
	}
}

func (c *claimer) commit(batch []*claimReq) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			close(r.done)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	err := c.s.writeWeighted(context.Background(), func(tx *sql.Tx) error { return c.write(tx, live) }, len(live), true)
	for _, r := range live {
		if err != nil {
			r.ok, r.err = false, fmt.Errorf("claim notification %s: %w", r.id, err)
		}
		close(r.done)
	}
}

func (c *claimer) write(tx *sql.Tx, batch []*claimReq) error {
	ctx := context.Background()
	args := make([]any, 0, len(batch))
	byID := make(map[string][]*claimReq, len(batch))
	var lease time.Time
	for _, r := range batch {
		r.ok, r.resumed = false, false
		if _, dup := byID[r.id]; !dup {
			args = append(args, r.id)
		}
		byID[r.id] = append(byID[r.id], r)
		if r.lease.After(lease) {
			lease = r.lease
		}
	}
	var claimed []any
	dispatched := map[string]bool{}
	err := c.s.q.claimSel.Each(len(args), func(q string, start, end int) error {
		rows, err := c.s.db.Query(ctx, tx, q, args[start:end]...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var at int64
			if err := rows.Scan(&id, &at); err != nil {
				return err
			}
			claimed = append(claimed, id)
			dispatched[id] = at != 0
		}
		return rows.Err()
	})
	if err != nil || len(claimed) == 0 {
		return err
	}
	now := sqldb.Now()
	err = c.s.q.claimUpd.Each(len(claimed), func(q string, start, end int) error {
		upd := make([]any, 0, 4+end-start)
		upd = append(upd, string(domain.MessageProcessing), domain.Millis(lease), now, now)
		upd = append(upd, claimed[start:end]...)
		_, err := c.s.db.Exec(ctx, tx, q, upd...)
		return err
	})
	if err != nil {
		return err
	}
	for _, id := range claimed {
		// Of several claims of one id in a batch, only the first wins.
		first := byID[id.(string)][0]
		first.ok, first.resumed = true, dispatched[id.(string)]
	}
	return nil
}

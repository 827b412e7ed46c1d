package inbox

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"

	"herald.dev/platform/domain"
	"herald.dev/platform/ids"
	"herald.dev/platform/sqldb"
)

// committer gathers Deliver calls into shared transactions. It is a single
// goroutine on purpose: it assigns ids in commit order (see the package doc).
// While one transaction commits, new items queue up and the next one takes
// them all (up to the batch cap), so a lone item costs one commit and a flood
// shares each fsync among hundreds.
type committer struct {
	s      *Store
	opts   Options
	reqs   chan *deliverReq
	wg     sync.WaitGroup
	mu     sync.RWMutex
	closed bool
	// insert is the multi-row insert in power-of-two sizes, prepared on
	// SQLite (compiling a 100-row insert costs as much as running it).
	insert *sqldb.Sized
}

type deliverReq struct {
	ctx  context.Context
	item *Item
	data string
	// inserted is false when the delivery id was already stored.
	inserted bool
	err      error
	done     chan struct{}
}

var reqPool = sync.Pool{New: func() any { return &deliverReq{done: make(chan struct{}, 1)} }}

func newCommitter(s *Store, opts Options) *committer {
	c := &committer{s: s, opts: opts, reqs: make(chan *deliverReq, opts.CommitBatch*4),
		insert: sqldb.NewSized(perInsert, sqldb.Rows(s.db.InsertIgnore()+` INTO inbox_items (`+itemCols+`) VALUES `,
			"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0)", ""))}
	// Preparing only saves compiling: the texts run unprepared if it fails.
	_ = s.db.Prepare(context.Background(), c.insert.Texts()...)
	c.wg.Add(1)
	go c.loop()
	return c
}

func (c *committer) submit(ctx context.Context, it *Item, data string) error {
	r := reqPool.Get().(*deliverReq)
	r.ctx, r.item, r.data, r.inserted, r.err = ctx, it, data, false, nil
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		reqPool.Put(r)
		return ErrClosed
	}
	select {
	case c.reqs <- r:
		c.mu.RUnlock()
	case <-ctx.Done():
		c.mu.RUnlock()
		reqPool.Put(r)
		return ctx.Err()
	}
	// A queued request is always answered: the item is committed or not, never unknown.
	<-r.done
	err := r.err
	r.ctx, r.item, r.data = nil, nil, ""
	reqPool.Put(r)
	return err
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
	batch := make([]*deliverReq, 0, c.opts.CommitBatch)
	for first := range c.reqs {
		batch = append(batch[:0], first)
		c.gather(&batch)
		c.commit(batch)
	}
}

func (c *committer) gather(batch *[]*deliverReq) {
	t := time.NewTimer(c.opts.CommitWindow)
	defer t.Stop()
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
		select {
		case r, ok := <-c.reqs:
			if !ok {
				return
			}
			*batch = append(*batch, r)
		case <-t.C:
			return
		}
	}
}

func (c *committer) commit(batch []*deliverReq) {
	live := make([]*deliverReq, 0, len(batch))
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
	// Ids and times in commit order.
	now := sqldb.Now()
	for _, r := range live {
		r.item.ID = ids.New("inb")
		r.item.CreatedAt, r.item.UpdatedAt = domain.FromMillis(now), domain.FromMillis(now)
	}
	err := c.s.db.Tx(context.Background(), func(tx *sql.Tx) error { return c.write(tx, live) })
	if err != nil && len(live) > 1 {
		// One bad item must not fail its neighbours: settle each alone.
		for _, r := range live {
			one := []*deliverReq{r}
			r.err = c.s.db.Tx(context.Background(), func(tx *sql.Tx) error { return c.write(tx, one) })
			if r.err != nil {
				r.err = fmt.Errorf("store inbox item: %w", r.err)
			}
		}
	} else if err != nil {
		live[0].err = fmt.Errorf("store inbox item: %w", err)
	}
	for _, r := range live {
		if r.err == nil && r.inserted && c.s.pusher != nil {
			c.s.pusher.Push(Event{Type: EventItem, Item: r.item})
		}
		r.done <- struct{}{}
	}
}

// perInsert caps the rows of one insert.
const perInsert = 128

// write inserts the batch, skipping deliveries already stored (or repeated
// within the batch), and marks which requests were inserted.
func (c *committer) write(tx *sql.Tx, batch []*deliverReq) error {
	ctx := context.Background()
	type key struct{ notification, delivery string }
	seen := make(map[key]bool, len(batch))
	insert := make([]*deliverReq, 0, len(batch))
	for _, r := range batch {
		r.inserted = false
		k := key{r.item.NotificationID, r.item.DeliveryID}
		if seen[k] {
			continue
		}
		seen[k] = true
		insert = append(insert, r)
	}
	return c.insert.Each(len(insert), func(q string, start, end int) error {
		chunk := insert[start:end]
		args := make([]any, 0, len(chunk)*14)
		for _, r := range chunk {
			it := r.item
			ms := domain.Millis(it.CreatedAt)
			args = append(args, it.ID, it.AppID, it.UserID, it.NotificationID, it.DeliveryID, string(it.Kind), it.Category,
				it.Title, it.Body, it.TodoKey, r.data, it.State, ms, ms)
		}
		res, err := c.s.db.Exec(ctx, tx, q, args...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if int(n) == len(chunk) {
			for _, r := range chunk {
				r.inserted = true
			}
			return nil
		}
		return c.markInserted(ctx, tx, chunk)
	})
}

// markInserted finds which requests of a chunk were inserted when some were
// already stored: ours are the rows carrying the item ids we just made.
func (c *committer) markInserted(ctx context.Context, tx *sql.Tx, chunk []*deliverReq) error {
	var b strings.Builder
	b.WriteString(`SELECT id FROM inbox_items WHERE `)
	args := make([]any, 0, len(chunk)*2)
	for i, r := range chunk {
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.WriteString("(notification_id = ? AND delivery_id = ?)")
		args = append(args, r.item.NotificationID, r.item.DeliveryID)
	}
	rows, err := tx.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	mine := make(map[string]bool, len(chunk))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		mine[id] = true
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, r := range chunk {
		r.inserted = mine[r.item.ID]
	}
	return nil
}

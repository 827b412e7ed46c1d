// Package inbox is the in-app inbox: items delivered by the in-app adapter
// (notices and reminders are unread/read, to-dos are pending/done), the
// user-facing inbox API, to-do completion by business key, and the push of
// every new item and state change to the user's live connections.
//
// Deliver is on the dispatch hot path. Concurrent calls are group-committed:
// one goroutine gathers them into shared transactions (one fsync for
// hundreds of items) and answers each caller after its commit. That single
// committer also assigns item ids in commit order, so ids sort in the order
// items became visible, which is what WebSocket resume (last_id) relies on.
package inbox

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"
	"unicode/utf8"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the inbox schema source (component "inbox").
var Migrations = sqldb.Source{Component: "inbox", FS: mustSub(migrations, "migrations")}

func init() { sqldb.Register(Migrations.Component, Migrations.FS) }

func mustSub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return s
}

// Item states.
const (
	StateUnread  = "unread"  // notice or reminder, not yet read
	StateRead    = "read"    // notice or reminder the user read
	StatePending = "pending" // to-do not yet done
	StateDone    = "done"    // to-do completed (by the user or by the app)
)

// Push event types.
const (
	EventItem  = "item"  // a new item arrived
	EventState = "state" // an item changed state
)

var (
	// ErrNotFound means the user has no such item.
	ErrNotFound = errors.New("inbox item not found")
	// ErrWrongKind means the action does not apply to the item's kind
	// (reading a to-do, completing a notice).
	ErrWrongKind = errors.New("action does not apply to this kind of item")
	// ErrClosed means the inbox is shutting down.
	ErrClosed = errors.New("inbox closed")
)

// Column limits (MySQL column sizes).
const (
	maxID       = 64
	maxUserID   = 128
	maxCategory = 128
	maxTitle    = 500
	maxTodoKey  = 255
)

// Item is one stored inbox item.
type Item struct {
	ID             string
	AppID          string
	UserID         string
	NotificationID string
	DeliveryID     string
	Kind           domain.Kind
	Category       string
	Title          string
	Body           string
	TodoKey        string
	Data           map[string]any
	State          string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	ReadAt         time.Time
	DoneAt         time.Time
}

// Event is one push to a user's live connections.
type Event struct {
	Type string // EventItem or EventState
	Item *Item
}

// Pusher receives every committed new item and state change (the WebSocket
// gateway). Push must not block.
type Pusher interface {
	Push(ev Event)
}

// Options tune the store.
type Options struct {
	Pusher  Pusher
	Tracker contracts.Tracker
	// CommitWindow is how long the committer waits for more items after
	// the first arrives (default 1ms).
	CommitWindow time.Duration
	// CommitBatch caps items per transaction (default 1024).
	CommitBatch int
}

// Store is the inbox.
type Store struct {
	db      *sqldb.DB
	pusher  Pusher
	tracker contracts.Tracker
	c       *committer
}

var _ contracts.Inbox = (*Store)(nil)

// NewStore returns the inbox and starts its committer; Close stops it.
func NewStore(db *sqldb.DB, opts Options) *Store {
	if opts.CommitWindow <= 0 {
		opts.CommitWindow = time.Millisecond
	}
	if opts.CommitBatch <= 0 {
		opts.CommitBatch = 1024
	}
	s := &Store{db: db, pusher: opts.Pusher, tracker: opts.Tracker}
	if s.tracker == nil {
		s.tracker = contracts.NopTracker{}
	}
	s.c = newCommitter(s, opts)
	return s
}

// SetPusher sets the receiver of pushes (before the store is used).
func (s *Store) SetPusher(p Pusher) { s.pusher = p }

// Close flushes pending items and stops the committer.
func (s *Store) Close() { s.c.close() }

// Deliver stores an item and pushes it to the user's live connections. It is
// idempotent on DeliveryID: a repeated delivery is neither stored nor pushed
// again, and returns nil. It returns once the item is committed.
func (s *Store) Deliver(ctx context.Context, in contracts.InboxItem) error {
	it, data, err := prepare(in)
	if err != nil {
		return contracts.Permanent("invalid inbox item", err)
	}
	return s.c.submit(ctx, it, data)
}

func prepare(in contracts.InboxItem) (*Item, string, error) {
	switch {
	case in.AppID == "" || len(in.AppID) > maxID:
		return nil, "", fmt.Errorf("app id must be 1 to %d characters", maxID)
	case in.UserID == "" || len(in.UserID) > maxUserID:
		return nil, "", fmt.Errorf("user id must be 1 to %d characters", maxUserID)
	case in.DeliveryID == "" || len(in.DeliveryID) > maxID:
		return nil, "", fmt.Errorf("delivery id must be 1 to %d characters", maxID)
	case len(in.NotificationID) > maxID:
		return nil, "", fmt.Errorf("notification id must be at most %d characters", maxID)
	case len(in.Category) > maxCategory:
		return nil, "", fmt.Errorf("category must be at most %d characters", maxCategory)
	case len(in.TodoKey) > maxTodoKey:
		return nil, "", fmt.Errorf("todo key must be at most %d characters", maxTodoKey)
	}
	kind := in.Kind
	if kind == "" {
		kind = domain.KindNotice
	}
	if !kind.Valid() {
		return nil, "", fmt.Errorf("unknown kind %q", kind)
	}
	if kind == domain.KindTodo && in.TodoKey == "" {
		return nil, "", errors.New("a to-do needs a todo key")
	}
	data := "{}"
	if len(in.Data) > 0 {
		b, err := json.Marshal(in.Data)
		if err != nil {
			return nil, "", fmt.Errorf("encode data: %w", err)
		}
		data = string(b)
	}
	it := &Item{
		AppID: in.AppID, UserID: in.UserID, NotificationID: in.NotificationID, DeliveryID: in.DeliveryID,
		Kind: kind, Category: in.Category, Title: truncate(in.Title, maxTitle), Body: in.Body,
		TodoKey: in.TodoKey, Data: in.Data, State: initialState(kind),
	}
	return it, data, nil
}

func initialState(k domain.Kind) string {
	if k == domain.KindTodo {
		return StatePending
	}
	return StateUnread
}

// truncate cuts s to at most n characters (runes), keeping valid UTF-8.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}

const itemCols = `id, app_id, user_id, notification_id, delivery_id, kind, category, title, body, todo_key, data, state,
	created_at, updated_at, read_at, done_at`

type scanner interface{ Scan(...any) error }

func scanItem(r scanner) (*Item, error) {
	var it Item
	var kind, data string
	var created, updated, read, done int64
	if err := r.Scan(&it.ID, &it.AppID, &it.UserID, &it.NotificationID, &it.DeliveryID, &kind, &it.Category, &it.Title,
		&it.Body, &it.TodoKey, &data, &it.State, &created, &updated, &read, &done); err != nil {
		return nil, err
	}
	it.Kind = domain.Kind(kind)
	it.CreatedAt, it.UpdatedAt = domain.FromMillis(created), domain.FromMillis(updated)
	it.ReadAt, it.DoneAt = domain.FromMillis(read), domain.FromMillis(done)
	if data != "" && data != "{}" {
		if err := json.Unmarshal([]byte(data), &it.Data); err != nil {
			return nil, fmt.Errorf("decode data of inbox item %s: %w", it.ID, err)
		}
	}
	return &it, nil
}

func queryItems(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, query string, args ...any) ([]*Item, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Item
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

// fresh is the pool for reads that must see the latest commit: on SQLite the
// read pool (same file, WAL), on MySQL the primary (a replica may lag).
func (s *Store) fresh() *sql.DB {
	if s.db.Dialect == sqldb.MySQL {
		return s.db.W
	}
	return s.db.R
}

// Filter selects items for List.
type Filter struct {
	Kind  domain.Kind
	State string
	// Cursor is the last id of the previous page.
	Cursor string
	Limit  int
}

// List returns a user's items newest first and the cursor of the next page.
func (s *Store) List(ctx context.Context, appID, userID string, f Filter) ([]*Item, string, error) {
	if f.Limit <= 0 || f.Limit > 200 {
		f.Limit = 50
	}
	q := `SELECT ` + itemCols + ` FROM inbox_items WHERE app_id = ? AND user_id = ?`
	args := []any{appID, userID}
	if f.Kind != "" {
		q += ` AND kind = ?`
		args = append(args, string(f.Kind))
	}
	if f.State != "" {
		q += ` AND state = ?`
		args = append(args, f.State)
	}
	if f.Cursor != "" {
		q += ` AND id < ?`
		args = append(args, f.Cursor)
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, f.Limit+1)
	items, err := queryItems(ctx, s.db.R, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list inbox of %s: %w", userID, err)
	}
	next := ""
	if len(items) > f.Limit {
		items = items[:f.Limit]
		next = items[len(items)-1].ID
	}
	return items, next, nil
}

// Counts returns how many unread notices/reminders and pending to-dos a user has.
func (s *Store) Counts(ctx context.Context, appID, userID string) (unread, pending int, err error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT state, COUNT(*) FROM inbox_items WHERE app_id = ? AND user_id = ? AND state IN ('unread', 'pending') GROUP BY state`, appID, userID)
	if err != nil {
		return 0, 0, fmt.Errorf("count inbox of %s: %w", userID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return 0, 0, err
		}
		if st == StateUnread {
			unread = n
		} else {
			pending = n
		}
	}
	return unread, pending, rows.Err()
}

// After returns up to limit of a user's items with ids greater than afterID,
// oldest first (WebSocket resume).
func (s *Store) After(ctx context.Context, appID, userID, afterID string, limit int) ([]*Item, error) {
	items, err := queryItems(ctx, s.fresh(), `SELECT `+itemCols+` FROM inbox_items WHERE app_id = ? AND user_id = ? AND id > ? ORDER BY id LIMIT ?`,
		appID, userID, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("replay inbox of %s: %w", userID, err)
	}
	return items, nil
}

// Get loads one of a user's items.
func (s *Store) Get(ctx context.Context, appID, userID, id string) (*Item, error) {
	return s.get(ctx, s.db.R, appID, userID, id)
}

func (s *Store) get(ctx context.Context, db *sql.DB, appID, userID, id string) (*Item, error) {
	it, err := scanItem(db.QueryRowContext(ctx, `SELECT `+itemCols+` FROM inbox_items WHERE id = ? AND app_id = ? AND user_id = ?`, id, appID, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get inbox item %s: %w", id, err)
	}
	return it, nil
}

// MarkRead marks a notice or reminder read. It returns the item and whether
// it changed (reading a read item is a no-op); ErrWrongKind for a to-do.
func (s *Store) MarkRead(ctx context.Context, appID, userID, id string) (*Item, bool, error) {
	return s.transition(ctx, appID, userID, id, StateUnread, StateRead, "read_at", func(k domain.Kind) bool { return k != domain.KindTodo })
}

// MarkDone marks a to-do done (by the user). ErrWrongKind for other kinds.
func (s *Store) MarkDone(ctx context.Context, appID, userID, id string) (*Item, bool, error) {
	return s.transition(ctx, appID, userID, id, StatePending, StateDone, "done_at", func(k domain.Kind) bool { return k == domain.KindTodo })
}

func (s *Store) transition(ctx context.Context, appID, userID, id, from, to, stampCol string, kindOK func(domain.Kind) bool) (*Item, bool, error) {
	now := sqldb.Now()
	res, err := s.db.W.ExecContext(ctx, `UPDATE inbox_items SET state = ?, updated_at = ?, `+stampCol+` = ? WHERE id = ? AND app_id = ? AND user_id = ? AND state = ?`,
		to, now, now, id, appID, userID, from)
	if err != nil {
		return nil, false, fmt.Errorf("mark inbox item %s %s: %w", id, to, err)
	}
	changed, _ := res.RowsAffected()
	it, err := s.get(ctx, s.db.W, appID, userID, id)
	if err != nil {
		return nil, false, err
	}
	if !kindOK(it.Kind) {
		return it, false, ErrWrongKind
	}
	if changed > 0 {
		s.announce(to, it)
	}
	return it, changed > 0, nil
}

// MarkAllRead marks every unread notice and reminder of a user read and
// returns the items that changed.
func (s *Store) MarkAllRead(ctx context.Context, appID, userID string) ([]*Item, error) {
	return s.bulk(ctx, StateRead, "read_at", `app_id = ? AND user_id = ? AND state = 'unread'`, appID, userID)
}

// CompleteTodo marks the pending to-dos with todoKey done, for one user
// (userID != "") or for every user who got one, and returns the items that changed.
func (s *Store) CompleteTodo(ctx context.Context, appID, todoKey, userID string) ([]*Item, error) {
	where := `app_id = ? AND todo_key = ? AND todo_key <> '' AND kind = 'todo' AND state = 'pending'`
	args := []any{appID, todoKey}
	if userID != "" {
		where += ` AND user_id = ?`
		args = append(args, userID)
	}
	return s.bulk(ctx, StateDone, "done_at", where, args...)
}

// bulk moves the items matching where to state `to` in one transaction,
// locking them first so a concurrent single change is not announced twice.
func (s *Store) bulk(ctx context.Context, to, stampCol, where string, args ...any) ([]*Item, error) {
	lock := ""
	if s.db.Dialect == sqldb.MySQL {
		lock = ` FOR UPDATE`
	}
	var items []*Item
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		items, err = queryItems(ctx, tx, `SELECT `+itemCols+` FROM inbox_items WHERE `+where+` ORDER BY id`+lock, args...)
		if err != nil {
			return err
		}
		now := sqldb.Now()
		for start := 0; start < len(items); start += 500 {
			chunk := items[start:min(start+500, len(items))]
			uargs := make([]any, 0, len(chunk)+3)
			uargs = append(uargs, to, now, now)
			for _, it := range chunk {
				uargs = append(uargs, it.ID)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE inbox_items SET state = ?, updated_at = ?, `+stampCol+` = ? WHERE id IN (`+sqldb.Placeholders(len(chunk))+`)`, uargs...); err != nil {
				return err
			}
		}
		for _, it := range items {
			it.State, it.UpdatedAt = to, domain.FromMillis(now)
			if to == StateRead {
				it.ReadAt = it.UpdatedAt
			} else {
				it.DoneAt = it.UpdatedAt
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mark inbox items %s: %w", to, err)
	}
	for _, it := range items {
		s.announce(to, it)
	}
	return items, nil
}

// announce pushes a committed state change and records it.
func (s *Store) announce(to string, it *Item) {
	if s.pusher != nil {
		s.pusher.Push(Event{Type: EventState, Item: it})
	}
	typ := contracts.EventRead
	if to == StateDone {
		typ = contracts.EventDone
	}
	s.tracker.Track(contracts.Event{AppID: it.AppID, NotificationID: it.NotificationID, DeliveryID: it.DeliveryID,
		UserID: it.UserID, Channel: domain.ChannelInApp, Category: it.Category, Type: typ, At: it.UpdatedAt})
}

// Package messages is the durable record of every notification and each of
// its deliveries, shared by the API (which accepts into it: the outbox), the
// outbound handler (which dispatches from it) and the query service.
//
// Accepting is group-committed: concurrent Accept calls are gathered for a
// short window (or until a batch fills) and written in one transaction with
// one fsync; each caller returns only after its own row is committed.
package messages

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync/atomic"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is this package's schema source.
var Migrations = sqldb.Source{Component: "messages", FS: sub(migrations, "migrations")}

func init() { sqldb.Register(Migrations.Component, Migrations.FS) }

func sub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return s
}

var (
	// ErrNotFound means no such notification or delivery (for this app).
	ErrNotFound = errors.New("not found")
	// ErrIdempotencyConflict means the idempotency key was used with a different request.
	ErrIdempotencyConflict = errors.New("idempotency key reused with a different request")
	// ErrClosed means the store is shutting down.
	ErrClosed = errors.New("message store closed")
	// ErrNoUserIndex means a list was filtered by user while the per-user
	// delivery index is off (Store.SetUserIndex).
	ErrNoUserIndex = errors.New("filtering by user needs the per-user delivery index (database.user_index)")
)

// Payload is the part of a notification the pipeline needs to dispatch it.
type Payload struct {
	Data       map[string]any     `json:"data,omitempty"`
	Recipients []domain.Recipient `json:"recipients"`
	Channels   []domain.Channel   `json:"channels,omitempty"`
	// Content is inline content (no template), per channel or under "*".
	Content map[string]domain.Content `json:"content,omitempty"`
	TodoKey string                    `json:"todo_key,omitempty"`
	Locale  string                    `json:"locale,omitempty"`
	// Fallback lists channels to try, in order, when a delivery fails for good.
	Fallback []domain.Channel `json:"fallback,omitempty"`
	// Meta is free-form metadata the sender attached (echoed in queries).
	Meta map[string]string `json:"meta,omitempty"`
}

// Notification is one accepted send request.
type Notification struct {
	ID              string
	AppID           string
	Status          domain.MessageStatus
	Priority        domain.Priority
	Kind            domain.Kind
	Category        string
	TemplateCode    string
	TemplateVersion int
	Payload         Payload
	IdempotencyKey  string
	// RequestHash fingerprints the request for idempotency comparisons.
	RequestHash     string
	SendAt          time.Time
	ExpiresAt       time.Time
	NextAt          time.Time
	CreatedAt       time.Time
	UpdatedAt       time.Time
	DispatchedAt    time.Time
	CompletedAt     time.Time
	DeliveriesTotal int
	Error           string
}

// Delivery is one (notification, recipient, channel) row.
type Delivery struct {
	ID             string
	AppID          string
	NotificationID string
	// Recipient is the dedup key of the recipient: the user id, or
	// "email:<address>" / "phone:<number>" for direct addresses.
	Recipient  string
	UserID     string
	Channel    domain.Channel
	Address    string
	Status     domain.DeliveryStatus
	Attempts   int
	Error      string
	ProviderID string
	// ParentID links a fallback delivery to the one whose failure caused it.
	ParentID  string
	NextAt    time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
	SentAt    time.Time
}

// DeliveryID is the deterministic id of a (notification, recipient, channel)
// delivery: the same inputs always give the same id, so a delivery repeated
// after a crash carries the id it had before and receivers can deduplicate.
//
// For notification ids of the form "ntf_<ULID>" the id is 64 characters:
// "dlv_<ULID><16 hex: the first 8 bytes of the recipient key><18 hex of the
// hash>". Ids of one notification share a prefix and then sort by
// recipient, and a group fan-out streams its members in id order, so a
// fan-out's rows are appended to the primary-key B-tree page after page
// instead of being scattered over it (each commit then writes a few pages,
// not one page per row). Otherwise it is "dlv_<32 hex of the hash>". Either
// way it ends in at least 24 hex digits (DeliveryKey).
func DeliveryID(notificationID, recipient string, ch domain.Channel) string {
	h := sha256.New()
	h.Write([]byte(notificationID))
	h.Write([]byte{0})
	h.Write([]byte(recipient))
	h.Write([]byte{0})
	h.Write([]byte(ch))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	if ulid, ok := strings.CutPrefix(notificationID, "ntf_"); ok && len(ulid) == 26 {
		var order [8]byte // zero-padded: a shorter key sorts first, as strings do
		copy(order[:], recipient)
		var b [4 + 26 + 16 + 18]byte
		copy(b[:], "dlv_")
		copy(b[4:], ulid)
		hex.Encode(b[30:], order[:])
		hex.Encode(b[46:], sum[:9])
		return string(b[:])
	}
	return "dlv_" + hex.EncodeToString(sum[:16])
}

// legacyIDs is the condition of the deliveries_notification_legacy partial
// index on SQLite: the row's id does not start with "dlv_" and the ULID of
// its notification, as every id from DeliveryID for an "ntf_<ULID>"
// notification does. Only rows written before ids carried that prefix
// (hash ids) match it.
const legacyIDs = `substr(id, 1, 30) <> 'dlv_' || substr(notification_id, 5, 26)`

// ByNotification returns the condition that selects a notification's
// delivery rows, and its arguments, for a query on the deliveries table.
//
// On MySQL it is notification_id = ?, served by deliveries_notification. On
// SQLite that index is gone, one B-tree less for every delivery written: a
// row whose id starts with "dlv_<ULID>" is found by a range of the primary
// key, and the others by the partial index of legacyIDs, whose condition the
// second branch repeats word for word so the planner can use it. The two
// branches are disjoint, so the OR returns each row once. Ids are ASCII, so
// the prefix range ends below the prefix followed by U+10FFFF.
func ByNotification(d sqldb.Dialect, notificationID string) (string, []any) {
	if d != sqldb.SQLite {
		return `notification_id = ?`, []any{notificationID}
	}
	prefix := "dlv_" + substr(notificationID, 4, 26)
	return `((id >= ? AND id < ? AND notification_id = ?) OR (notification_id = ? AND ` + legacyIDs + `))`,
		[]any{prefix, prefix + "\U0010FFFF", notificationID, notificationID}
}

// substr is SQL's substr on a byte string, 0-based.
func substr(s string, from, n int) string {
	if from >= len(s) {
		return ""
	}
	return s[from:min(len(s), from+n)]
}

// DeliveryKey is a compact map key for a delivery id of one notification
// (the last 24 hex digits), for sets of up to millions of ids.
func DeliveryKey(id string) ([12]byte, bool) {
	var k [12]byte
	if len(id) < 4+24 || id[:4] != "dlv_" {
		return k, false
	}
	_, err := hex.Decode(k[:], []byte(id[len(id)-24:]))
	return k, err == nil
}

// RecipientKey returns the dedup key of a resolved recipient.
func RecipientKey(userID, email, phone string) string {
	switch {
	case userID != "":
		return userID
	case email != "":
		return "email:" + strings.ToLower(email)
	default:
		return "phone:" + phone
	}
}

// Hash fingerprints a request body for idempotency.
func Hash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Store reads and writes notifications and deliveries.
type Store struct {
	db     *sqldb.DB
	acc    *committer
	claims *claimer
	ops    *opBatcher
	recent *recent
	q      queries
	// noUserIndex: deliveries are not indexed by user (SetUserIndex).
	noUserIndex atomic.Bool
}

// queries are the store's hot statements, prepared once on SQLite.
type queries struct {
	insNotif *sqldb.Sized // multi-row insert of notifications
	insDeliv *sqldb.Sized // multi-row upsert of deliveries
	claimSel *sqldb.Sized // claimable notifications among ids
	claimUpd *sqldb.Sized // claim them
	snooze   *sqldb.Sized
	complete *sqldb.Sized // mark done with one fan-out total
}

const (
	qIdem     = `SELECT id, idem_hash, status FROM notifications WHERE app_id = ? AND idem_key = ?`
	qSetTotal = `UPDATE notifications SET deliveries_total = ?, updated_at = ? WHERE id = ?`
	qGet      = `SELECT ` + notifCols + ` FROM notifications WHERE id = ? AND app_id = ?`
	qLoad     = `SELECT ` + notifCols + ` FROM notifications WHERE id = ?`
)

func newQueries(d sqldb.Dialect) queries {
	claimSel := `) AND status IN ('accepted', 'queued', 'scheduled')`
	if d == sqldb.MySQL {
		claimSel += ` FOR UPDATE`
	}
	return queries{
		insNotif: sqldb.NewSized(128, sqldb.Rows(`INSERT INTO notifications (`+notifCols+`) VALUES `, "("+sqldb.Placeholders(20)+")", "")),
		insDeliv: sqldb.NewSized(256, sqldb.Rows(`INSERT INTO deliveries (`+delivCols+`) VALUES `, "("+sqldb.Placeholders(16)+")", deliveryUpsert(d))),
		claimSel: sqldb.NewSized(512, sqldb.List(`SELECT id, dispatched_at FROM notifications WHERE id IN (`, claimSel)),
		claimUpd: sqldb.NewSized(512, sqldb.List(`UPDATE notifications SET status = ?, next_at = ?, updated_at = ?,
		dispatched_at = CASE WHEN dispatched_at = 0 THEN ? ELSE dispatched_at END
		WHERE id IN (`, `)`)),
		snooze: sqldb.NewSized(512, sqldb.List(`UPDATE notifications SET next_at = ? WHERE id IN (`, `)`)),
		complete: sqldb.NewSized(256, sqldb.List(`UPDATE notifications SET status = 'done', next_at = 0, updated_at = ?, error = '', completed_at = ?,
		deliveries_total = CASE WHEN ? > 0 THEN ? ELSE deliveries_total END WHERE status = 'processing' AND id IN (`, `)`)),
	}
}

func (q queries) texts() []string {
	out := []string{qIdem, qSetTotal}
	for _, f := range []*sqldb.Sized{q.insNotif, q.insDeliv, q.claimSel, q.claimUpd, q.snooze, q.complete} {
		out = append(out, f.Texts()...)
	}
	return out
}

// Options tune the store.
type Options struct {
	// CommitWindow is how long the group committer waits for more writes
	// after the first one arrives (default 1 ms; 0 keeps the default).
	CommitWindow time.Duration
	// CommitBatch caps rows per transaction (default 512).
	CommitBatch int
	// Committers is the number of concurrent committing transactions
	// (default 1 on SQLite, which has one writer, and 4 on MySQL).
	Committers int
}

// New returns a store and starts its group committer; Close stops it.
func New(db *sqldb.DB, opts Options) *Store {
	if opts.CommitWindow <= 0 {
		opts.CommitWindow = time.Millisecond
	}
	if opts.CommitBatch <= 0 {
		opts.CommitBatch = 512
	}
	if opts.Committers <= 0 {
		opts.Committers = 1
		if db.Dialect == sqldb.MySQL {
			opts.Committers = 4
		}
	}
	s := &Store{db: db, q: newQueries(db.Dialect)}
	// Prepared statements only save compiling; should preparing fail, the
	// same texts run unprepared and report any error where they run.
	_ = db.Prepare(context.Background(), s.q.texts()...)
	s.acc = newCommitter(s, opts)
	s.claims = newClaimer(s)
	s.ops = newOpBatcher(db)
	s.recent = newRecent()
	return s
}

// DB returns the underlying database.
func (s *Store) DB() *sqldb.DB { return s.db }

// Close stops the committer after flushing what it holds.
func (s *Store) Close() {
	s.acc.close()
	s.claims.close()
	s.ops.close()
}

// Take returns a notification this process accepted and nobody has taken
// yet, without a database read; nil when it is not (or no longer) held. The
// outbound handler calls it before loading a lane message.
func (s *Store) Take(id string) *Notification { return s.recent.take(id) }

// Accepted is the answer to an Accept call.
type Accepted struct {
	ID string
	// Duplicate is true when an earlier request with the same idempotency key was found.
	Duplicate bool
	Status    domain.MessageStatus
}

// Accept durably stores n (group-committed) and returns once it is committed.
// With an idempotency key, a repeat of the same request returns the first
// notification's id and Duplicate=true; a different request under the same
// key returns ErrIdempotencyConflict.
func (s *Store) Accept(ctx context.Context, n *Notification) (Accepted, error) {
	if n.ID == "" || n.AppID == "" {
		return Accepted{}, errors.New("accept: notification needs an id and an app id")
	}
	return s.acc.submit(ctx, n)
}

const notifCols = `id, app_id, status, priority, kind, category, template_code, template_version, payload,
	idem_key, idem_hash, send_at, expires_at, next_at, created_at, updated_at, dispatched_at, completed_at,
	deliveries_total, error`

func notifArgs(n *Notification) ([]any, error) {
	payload, err := json.Marshal(n.Payload)
	if err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	var key, hash any
	if n.IdempotencyKey != "" {
		key, hash = n.IdempotencyKey, n.RequestHash
	}
	return []any{n.ID, n.AppID, string(n.Status), string(n.Priority), string(n.Kind), n.Category, n.TemplateCode,
		n.TemplateVersion, string(payload), key, hash, domain.Millis(n.SendAt), domain.Millis(n.ExpiresAt),
		domain.Millis(n.NextAt), domain.Millis(n.CreatedAt), domain.Millis(n.UpdatedAt), domain.Millis(n.DispatchedAt),
		domain.Millis(n.CompletedAt), n.DeliveriesTotal, n.Error}, nil
}

type scanner interface{ Scan(...any) error }

func scanNotification(r scanner) (*Notification, error) {
	var n Notification
	var status, prio, kind, payload string
	var key, hash sql.NullString
	var sendAt, expiresAt, nextAt, created, updated, dispatched, completed int64
	if err := r.Scan(&n.ID, &n.AppID, &status, &prio, &kind, &n.Category, &n.TemplateCode, &n.TemplateVersion, &payload,
		&key, &hash, &sendAt, &expiresAt, &nextAt, &created, &updated, &dispatched, &completed, &n.DeliveriesTotal, &n.Error); err != nil {
		return nil, err
	}
	n.Status, n.Priority, n.Kind = domain.MessageStatus(status), domain.Priority(prio), domain.Kind(kind)
	n.IdempotencyKey, n.RequestHash = key.String, hash.String
	n.SendAt, n.ExpiresAt, n.NextAt = domain.FromMillis(sendAt), domain.FromMillis(expiresAt), domain.FromMillis(nextAt)
	n.CreatedAt, n.UpdatedAt = domain.FromMillis(created), domain.FromMillis(updated)
	n.DispatchedAt, n.CompletedAt = domain.FromMillis(dispatched), domain.FromMillis(completed)
	// Numbers stay json.Number, as the API decoded them: integers above
	// 2^53 keep every digit when a notification is read back.
	dec := json.NewDecoder(strings.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&n.Payload); err != nil {
		return nil, fmt.Errorf("decode payload of %s: %w", n.ID, err)
	}
	return &n, nil
}

// Get loads a notification of an app.
func (s *Store) Get(ctx context.Context, appID, id string) (*Notification, error) {
	n, err := scanNotification(s.db.ReadQueryRow(ctx, s.db.R, qGet, id, appID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get notification %s: %w", id, err)
	}
	return n, nil
}

// Load loads a notification by id alone (for the outbound handler). It reads
// from the primary, since the handler acts on what was just committed.
func (s *Store) Load(ctx context.Context, id string) (*Notification, error) {
	n, err := scanNotification(s.db.ReadQueryRow(ctx, s.readPrimary(), qLoad, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load notification %s: %w", id, err)
	}
	return n, nil
}

// Transition sets the status of notifications, with the time the next sweep
// should look at them again (zero = never), and records the dispatch or
// completion time implied by the status. Only rows whose status is one of
// from (any when from is empty) change; it returns how many did.
func (s *Store) Transition(ctx context.Context, ids []string, to domain.MessageStatus, nextAt time.Time, errMsg string, from ...domain.MessageStatus) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	now := sqldb.Now()
	var total int
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		q := `UPDATE notifications SET status = ?, next_at = ?, updated_at = ?, error = ?`
		args := []any{string(to), domain.Millis(nextAt), now, errMsg}
		switch to {
		case domain.MessageQueued, domain.MessageProcessing:
			q += `, dispatched_at = CASE WHEN dispatched_at = 0 THEN ? ELSE dispatched_at END`
			args = append(args, now)
		case domain.MessageDone, domain.MessageExpired, domain.MessageCancelled:
			q += `, completed_at = ?`
			args = append(args, now)
		}
		q += ` WHERE id IN (` + sqldb.Placeholders(len(chunk)) + `)`
		for _, id := range chunk {
			args = append(args, id)
		}
		if len(from) > 0 {
			q += ` AND status IN (` + sqldb.Placeholders(len(from)) + `)`
			for _, f := range from {
				args = append(args, string(f))
			}
		}
		var n int64
		err := s.write(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(context.Background(), q, args...)
			if err != nil {
				return err
			}
			n, _ = res.RowsAffected()
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("transition notifications to %s: %w", to, err)
		}
		total += int(n)
	}
	return total, nil
}

// SetDeliveriesTotal records how many deliveries a notification fanned out to.
// Concurrent calls are group-committed.
func (s *Store) SetDeliveriesTotal(ctx context.Context, id string, total int) error {
	now := sqldb.Now()
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := s.db.Exec(context.Background(), tx, qSetTotal, total, now, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("set deliveries total of %s: %w", id, err)
	}
	return nil
}

// Completion is a notification whose deliveries are all final, with the
// number of deliveries its fan-out made (0 keeps the recorded number).
type Completion struct {
	ID    string
	Total int
}

// Complete marks processing notifications done, recording each one's
// fan-out total in the same write, and returns how many changed.
// Concurrent calls are group-committed.
func (s *Store) Complete(ctx context.Context, cs []Completion) (int, error) {
	if len(cs) == 0 {
		return 0, nil
	}
	// One statement per distinct total (simple sends all have the same
	// one), not one per notification: on MySQL each is a round trip.
	byTotal := map[int][]any{}
	var totals []int
	for _, c := range cs {
		if _, ok := byTotal[c.Total]; !ok {
			totals = append(totals, c.Total)
		}
		byTotal[c.Total] = append(byTotal[c.Total], c.ID)
	}
	now := sqldb.Now()
	var total int
	err := s.write(ctx, func(tx *sql.Tx) error {
		total = 0
		for _, t := range totals {
			ids := byTotal[t]
			err := s.q.complete.Each(len(ids), func(q string, start, end int) error {
				args := make([]any, 0, 4+end-start)
				args = append(args, now, now, t, t)
				res, err := s.db.Exec(context.Background(), tx, q, append(args, ids[start:end]...)...)
				if err != nil {
					return err
				}
				n, _ := res.RowsAffected()
				total += int(n)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("complete %d notifications: %w", len(cs), err)
	}
	return total, nil
}

// Due returns notifications in one of the given statuses whose next_at has
// passed (the outbox sweep: accepted-but-undispatched, scheduled sends whose
// time came, and stalled processing), oldest first.
func (s *Store) Due(ctx context.Context, now time.Time, limit int, statuses ...domain.MessageStatus) ([]*Notification, error) {
	if len(statuses) == 0 {
		statuses = []domain.MessageStatus{domain.MessageAccepted, domain.MessageScheduled, domain.MessageQueued, domain.MessageProcessing}
	}
	var out []*Notification
	for _, st := range statuses {
		if !dueStatus[st] {
			return nil, fmt.Errorf("due notifications: status %q is never due", st)
		}
		// The condition repeats the partial index's WHERE clause word for
		// word (SQLite only uses a partial index whose condition appears
		// verbatim); the status is a known constant.
		rows, err := s.readPrimary().QueryContext(ctx, `SELECT `+notifCols+` FROM notifications WHERE status IN ('accepted', 'scheduled', 'queued', 'processing') AND status = '`+string(st)+`' AND next_at > 0 AND next_at <= ? ORDER BY next_at LIMIT ?`,
			domain.Millis(now), limit)
		if err != nil {
			return nil, fmt.Errorf("due notifications: %w", err)
		}
		for rows.Next() {
			n, err := scanNotification(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, n)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

var dueStatus = map[domain.MessageStatus]bool{domain.MessageAccepted: true, domain.MessageScheduled: true, domain.MessageQueued: true, domain.MessageProcessing: true}

// Snooze pushes next_at of notifications forward (the sweeper's lease).
func (s *Store) Snooze(ctx context.Context, ids []string, nextAt time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		return s.q.snooze.Each(len(ids), func(q string, start, end int) error {
			args := make([]any, 0, end-start+1)
			args = append(args, domain.Millis(nextAt))
			for _, id := range ids[start:end] {
				args = append(args, id)
			}
			_, err := s.db.Exec(context.Background(), tx, q, args...)
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("snooze notifications: %w", err)
	}
	return nil
}

// Filter selects notifications for List.
type Filter struct {
	UserID   string
	Status   domain.MessageStatus
	Priority domain.Priority
	Category string
	Channel  domain.Channel
	From, To time.Time
	// Cursor is the last id of the previous page (ids sort by creation time).
	Cursor string
	Limit  int
}

// List returns an app's notifications, newest first, and the cursor of the next page.
func (s *Store) List(ctx context.Context, appID string, f Filter) ([]*Notification, string, error) {
	if f.UserID != "" && s.noUserIndex.Load() {
		return nil, "", ErrNoUserIndex
	}
	if f.Limit <= 0 || f.Limit > 500 {
		f.Limit = 50
	}
	q := `SELECT ` + notifCols + ` FROM notifications WHERE app_id = ?`
	args := []any{appID}
	if f.Status != "" {
		q += ` AND status = ?`
		args = append(args, string(f.Status))
	}
	if f.Priority != "" {
		q += ` AND priority = ?`
		args = append(args, string(f.Priority))
	}
	if f.Category != "" {
		q += ` AND category = ?`
		args = append(args, f.Category)
	}
	if !f.From.IsZero() {
		q += ` AND created_at >= ?`
		args = append(args, domain.Millis(f.From))
	}
	if !f.To.IsZero() {
		q += ` AND created_at < ?`
		args = append(args, domain.Millis(f.To))
	}
	if f.Cursor != "" {
		q += ` AND id < ?`
		args = append(args, f.Cursor)
	}
	if f.UserID != "" || f.Channel != "" {
		sub := `SELECT notification_id FROM deliveries WHERE app_id = ?`
		args = append(args, appID)
		if f.UserID != "" {
			sub += ` AND user_id = ?`
			args = append(args, f.UserID)
		}
		if f.Channel != "" {
			sub += ` AND channel = ?`
			args = append(args, string(f.Channel))
		}
		q += ` AND id IN (` + sub + `)`
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, f.Limit+1)
	rows, err := s.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list notifications: %w", err)
	}
	defer rows.Close()
	var out []*Notification
	for rows.Next() {
		n, err := scanNotification(rows)
		if err != nil {
			return nil, "", err
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > f.Limit {
		out = out[:f.Limit]
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// ---- deliveries ----

// The per-user delivery index (deliveries_user, created by the migrations)
// serves List's user filter. Every delivery row adds an entry at the
// position of its user, so on a busy server nearly every delivery writes a
// page of its own: on SQLite it costs about a fifth of the accept rate
// (docs/benchmarks.md).

// SetUserIndex creates the deliveries_user index (on) or drops it (off),
// doing nothing when it is already so; off, List refuses a user filter
// instead of scanning every delivery. Creating it on a large table takes a
// while: it indexes every stored delivery. Run it after the migrations.
func (s *Store) SetUserIndex(ctx context.Context, on bool) error {
	has, err := s.HasUserIndex(ctx)
	switch {
	case err != nil:
	case on && !has:
		_, err = s.db.W.ExecContext(ctx, `CREATE INDEX deliveries_user ON deliveries(app_id, user_id, notification_id)`)
	case !on && has:
		drop := `DROP INDEX deliveries_user`
		if s.db.Dialect == sqldb.MySQL {
			drop += ` ON deliveries`
		}
		_, err = s.db.W.ExecContext(ctx, drop)
	}
	if err != nil {
		return fmt.Errorf("set the per-user delivery index to %v: %w", on, err)
	}
	s.noUserIndex.Store(!on)
	return nil
}

// HasUserIndex reports whether the deliveries_user index exists.
func (s *Store) HasUserIndex(ctx context.Context) (bool, error) {
	q := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'deliveries_user'`
	if s.db.Dialect == sqldb.MySQL {
		q = `SELECT COUNT(*) FROM information_schema.statistics
			WHERE table_schema = DATABASE() AND table_name = 'deliveries' AND index_name = 'deliveries_user'`
	}
	var n int
	if err := s.db.W.QueryRowContext(ctx, q).Scan(&n); err != nil {
		return false, fmt.Errorf("look up the per-user delivery index: %w", err)
	}
	return n > 0, nil
}

const delivCols = `id, app_id, notification_id, recipient, user_id, channel, address, status, attempts, error,
	provider_id, parent_id, next_at, created_at, updated_at, sent_at`

func scanDelivery(r scanner) (*Delivery, error) {
	var d Delivery
	var ch, st string
	var next, created, updated, sent int64
	if err := r.Scan(&d.ID, &d.AppID, &d.NotificationID, &d.Recipient, &d.UserID, &ch, &d.Address, &st, &d.Attempts,
		&d.Error, &d.ProviderID, &d.ParentID, &next, &created, &updated, &sent); err != nil {
		return nil, err
	}
	d.Channel, d.Status = domain.Channel(ch), domain.DeliveryStatus(st)
	d.NextAt, d.CreatedAt, d.UpdatedAt, d.SentAt = domain.FromMillis(next), domain.FromMillis(created), domain.FromMillis(updated), domain.FromMillis(sent)
	return &d, nil
}

// SaveDeliveries inserts or updates deliveries in one transaction, in
// multi-row statements. A row whose stored status is final is never moved
// back to a non-final status (a late, duplicate outcome cannot undo a send).
func (s *Store) SaveDeliveries(ctx context.Context, ds []*Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	return s.writeWeighted(ctx, func(tx *sql.Tx) error { return s.saveDeliveriesTx(context.Background(), tx, ds) }, len(ds), false)
}

// deliveryUpsert is the conflict clause of the deliveries upsert: a row
// whose stored status is final is never moved back.
func deliveryUpsert(d sqldb.Dialect) string {
	final := `'sent','delivered','failed','skipped','expired'`
	if d == sqldb.MySQL {
		// MySQL evaluates assignments left to right, so status must be assigned last.
		keep := `status IN (` + final + `)`
		return ` ON DUPLICATE KEY UPDATE
			attempts = IF(` + keep + `, attempts, GREATEST(attempts, VALUES(attempts))),
			error = IF(` + keep + `, error, VALUES(error)),
			provider_id = IF(` + keep + `, provider_id, VALUES(provider_id)),
			address = IF(` + keep + `, address, VALUES(address)),
			next_at = IF(` + keep + `, next_at, VALUES(next_at)),
			sent_at = IF(` + keep + `, sent_at, VALUES(sent_at)),
			updated_at = IF(` + keep + `, updated_at, VALUES(updated_at)),
			status = IF(` + keep + `, status, VALUES(status))`
	}
	return ` ON CONFLICT(id) DO UPDATE SET
			status = excluded.status, attempts = MAX(attempts, excluded.attempts), error = excluded.error,
			provider_id = excluded.provider_id, address = excluded.address, next_at = excluded.next_at,
			sent_at = excluded.sent_at, updated_at = excluded.updated_at
			WHERE deliveries.status NOT IN (` + final + `)`
}

func (s *Store) saveDeliveriesTx(ctx context.Context, tx *sql.Tx, ds []*Delivery) error {
	now := sqldb.Now()
	return s.q.insDeliv.Each(len(ds), func(q string, start, end int) error {
		chunk := ds[start:end]
		args := make([]any, 0, len(chunk)*16)
		for _, d := range chunk {
			if d.ID == "" {
				d.ID = DeliveryID(d.NotificationID, d.Recipient, d.Channel)
			}
			created := domain.Millis(d.CreatedAt)
			if created == 0 {
				created = now
			}
			errMsg := d.Error
			if len(errMsg) > 1000 {
				errMsg = errMsg[:1000]
			}
			args = append(args, d.ID, d.AppID, d.NotificationID, d.Recipient, d.UserID, string(d.Channel), d.Address,
				string(d.Status), d.Attempts, errMsg, d.ProviderID, d.ParentID, domain.Millis(d.NextAt), created, now, domain.Millis(d.SentAt))
		}
		if _, err := s.db.Exec(ctx, tx, q, args...); err != nil {
			return fmt.Errorf("save %d deliveries: %w", len(chunk), err)
		}
		return nil
	})
}

// Deliveries returns every delivery of a notification, oldest first.
func (s *Store) Deliveries(ctx context.Context, notificationID string) ([]*Delivery, error) {
	cond, args := ByNotification(s.db.Dialect, notificationID)
	return s.queryDeliveries(ctx, s.readPrimary(), `SELECT `+delivCols+` FROM deliveries WHERE `+cond+` ORDER BY created_at, id`, args...)
}

// DeliveriesOfApp returns the deliveries of an app's notification (for the query API).
func (s *Store) DeliveriesOfApp(ctx context.Context, appID, notificationID string) ([]*Delivery, error) {
	cond, args := ByNotification(s.db.Dialect, notificationID)
	return s.queryDeliveries(ctx, s.db.R, `SELECT `+delivCols+` FROM deliveries WHERE `+cond+` AND app_id = ? ORDER BY created_at, id`, append(args, appID)...)
}

// GetDelivery loads one delivery.
func (s *Store) GetDelivery(ctx context.Context, id string) (*Delivery, error) {
	ds, err := s.queryDeliveries(ctx, s.readPrimary(), `SELECT `+delivCols+` FROM deliveries WHERE id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return nil, ErrNotFound
	}
	return ds[0], nil
}

// DueDeliveries returns non-final deliveries whose next attempt time has
// passed (the retry sweep), oldest first.
func (s *Store) DueDeliveries(ctx context.Context, now time.Time, limit int) ([]*Delivery, error) {
	// The condition repeats the partial index's WHERE clause word for word.
	return s.queryDeliveries(ctx, s.readPrimary(), `SELECT `+delivCols+` FROM deliveries WHERE status IN ('pending', 'queued') AND next_at > 0 AND next_at <= ? ORDER BY next_at LIMIT ?`,
		domain.Millis(now), limit)
}

// readPrimary is the pool for reads that must see every committed write:
// on SQLite the read pool (WAL readers see all commits, and reading there
// keeps the single writer free), on MySQL the primary (a replica may lag).
func (s *Store) readPrimary() *sql.DB {
	if s.db.Dialect == sqldb.SQLite {
		return s.db.R
	}
	return s.db.W
}

// OpenDeliveries counts the non-final deliveries of a notification.
func (s *Store) OpenDeliveries(ctx context.Context, notificationID string) (int, error) {
	var n int
	cond, args := ByNotification(s.db.Dialect, notificationID)
	err := s.db.ReadQueryRow(ctx, s.readPrimary(), `SELECT COUNT(*) FROM deliveries WHERE `+cond+` AND status IN ('pending', 'queued')`, args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count open deliveries of %s: %w", notificationID, err)
	}
	return n, nil
}

// FinalDeliveryIDs returns the ids of a notification's deliveries that
// reached a final state (a resumed fan-out skips them).
func (s *Store) FinalDeliveryIDs(ctx context.Context, notificationID string) (map[string]domain.DeliveryStatus, error) {
	cond, args := ByNotification(s.db.Dialect, notificationID)
	rows, err := s.readPrimary().QueryContext(ctx, `SELECT id, status FROM deliveries WHERE `+cond+` AND status NOT IN ('pending', 'queued')`, args...)
	if err != nil {
		return nil, fmt.Errorf("final deliveries of %s: %w", notificationID, err)
	}
	defer rows.Close()
	out := map[string]domain.DeliveryStatus{}
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			return nil, err
		}
		out[id] = domain.DeliveryStatus(st)
	}
	return out, rows.Err()
}

// ResetFailed moves an app's notification's failed deliveries back to
// pending for a resend and returns them. Attempts restart from zero.
func (s *Store) ResetFailed(ctx context.Context, appID, notificationID string) ([]*Delivery, error) {
	var out []*Delivery
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		cond, args := ByNotification(s.db.Dialect, notificationID)
		rows, err := tx.QueryContext(ctx, `SELECT `+delivCols+` FROM deliveries WHERE `+cond+` AND app_id = ? AND status = 'failed'`, append(args, appID)...)
		if err != nil {
			return err
		}
		for rows.Next() {
			d, err := scanDelivery(rows)
			if err != nil {
				rows.Close()
				return err
			}
			out = append(out, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		now := sqldb.Now()
		for _, d := range out {
			if _, err := tx.ExecContext(ctx, `UPDATE deliveries SET status = 'pending', attempts = 0, error = '', next_at = ?, updated_at = ? WHERE id = ?`, now, now, d.ID); err != nil {
				return err
			}
			d.Status, d.Attempts, d.Error, d.NextAt = domain.DeliveryPending, 0, "", domain.FromMillis(now)
		}
		if len(out) > 0 {
			_, err = tx.ExecContext(ctx, `UPDATE notifications SET status = 'processing', completed_at = 0, next_at = ?, updated_at = ? WHERE id = ?`, now, now, notificationID)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reset failed deliveries of %s: %w", notificationID, err)
	}
	return out, nil
}

func (s *Store) queryDeliveries(ctx context.Context, db *sql.DB, q string, args ...any) ([]*Delivery, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query deliveries: %w", err)
	}
	defer rows.Close()
	var out []*Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// ToContract converts a stored delivery and its notification to the adapter's view.
func ToContract(n *Notification, d *Delivery) *contracts.Delivery {
	return &contracts.Delivery{
		ID: d.ID, AppID: d.AppID, NotificationID: d.NotificationID, UserID: d.UserID, Channel: d.Channel,
		Address: d.Address, Priority: n.Priority, Kind: n.Kind, Category: n.Category, TodoKey: n.Payload.TodoKey,
		Data: n.Payload.Data, Attempt: d.Attempts + 1, CreatedAt: d.CreatedAt,
	}
}

// Scrub removes the given keys from a notification's data and inline
// content (used to erase one-time codes once they can no longer be used).
func (s *Store) Scrub(ctx context.Context, id string, dataKeys ...string) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		var payload string
		err := tx.QueryRowContext(ctx, `SELECT payload FROM notifications WHERE id = ?`, id).Scan(&payload)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("scrub %s: %w", id, err)
		}
		var p Payload
		if err := json.Unmarshal([]byte(payload), &p); err != nil {
			return fmt.Errorf("scrub %s: %w", id, err)
		}
		for _, k := range dataKeys {
			delete(p.Data, k)
		}
		for ch, c := range p.Content {
			c.Text, c.HTML, c.Body, c.Markdown = "[erased]", "", "[erased]", ""
			c.Params = nil
			p.Content[ch] = c
		}
		b, err := json.Marshal(p)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE notifications SET payload = ?, updated_at = ? WHERE id = ?`, string(b), sqldb.Now(), id)
		return err
	})
}

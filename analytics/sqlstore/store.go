// Package sqlstore is the analytics sink on Herald's SQL database (SQLite
// embedded, or MySQL): raw events in analytics_events (swept after a
// retention period) and hourly/daily counters in analytics_rollups,
// incremented in the same transaction that stores a batch.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"herald.dev/analytics"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the "analytics" schema source.
var Migrations = sqldb.Source{Component: "analytics", FS: mustSub(migrations, "migrations")}

func init() { sqldb.Register(Migrations.Component, Migrations.FS) }

func mustSub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return s
}

// MaxTrace caps the events Events returns for one notification.
const MaxTrace = 10000

// Store implements analytics.Sink and analytics.Sweeper.
type Store struct {
	db      *sqldb.DB
	events  *sqldb.Sized
	rollups *sqldb.Sized
}

var (
	_ analytics.Sink    = (*Store)(nil)
	_ analytics.Sweeper = (*Store)(nil)
)

// New returns a store on a migrated database.
func New(db *sqldb.DB) *Store {
	var suffix string
	if db.Dialect == sqldb.MySQL {
		suffix = ` ON DUPLICATE KEY UPDATE events = events + VALUES(events), latency_sum = latency_sum + VALUES(latency_sum),
			latency_n = latency_n + VALUES(latency_n), latency_max = GREATEST(latency_max, VALUES(latency_max))`
	} else {
		suffix = ` ON CONFLICT(app_id, bucket, bucket_start, type, channel, category) DO UPDATE SET
			events = events + excluded.events, latency_sum = latency_sum + excluded.latency_sum,
			latency_n = latency_n + excluded.latency_n, latency_max = MAX(latency_max, excluded.latency_max)`
	}
	s := &Store{
		db: db,
		events: sqldb.NewSized(eventChunk, sqldb.Rows(`INSERT INTO analytics_events (app_id, notification_id, delivery_id, user_id, channel, category, priority, type, error, at, latency_ms, more, more_n) VALUES `,
			"("+sqldb.Placeholders(eventCols)+")", "")),
		rollups: sqldb.NewSized(rollupChunk, sqldb.Rows(`INSERT INTO analytics_rollups (app_id, bucket, bucket_start, type, channel, category, events, latency_sum, latency_n, latency_max) VALUES `,
			"("+sqldb.Placeholders(rollupCols)+")", suffix)),
	}
	// Preparing only saves compiling: the same texts run unprepared if it fails.
	_ = db.Prepare(context.Background(), append(s.events.Texts(), s.rollups.Texts()...)...)
	return s
}

const (
	eventCols     = 13
	eventChunk    = 512
	rollupCols    = 10
	rollupChunk   = 256
	sweepChunk    = 5000
	deadlockTries = 5
)

// WriteEvents stores a batch and increments its rollups in one transaction.
// On MySQL a deadlock or lock-wait timeout between concurrent writers is
// retried a few times.
func (s *Store) WriteEvents(ctx context.Context, events []contracts.Event) error {
	evs := analytics.Clean(events)
	if len(evs) == 0 {
		return nil
	}
	deltas := analytics.Rollups(evs)
	var err error
	for try := 0; try < deadlockTries; try++ {
		err = s.db.Tx(ctx, func(tx *sql.Tx) error {
			if err := s.insertEvents(ctx, tx, evs); err != nil {
				return err
			}
			return s.upsertRollups(ctx, tx, deltas)
		})
		if err == nil || !transient(err) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("write analytics events: %w", ctx.Err())
		case <-time.After(time.Duration(try+1) * 10 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("write analytics events: %w", err)
	}
	return nil
}

// transient reports MySQL deadlocks (1213) and lock wait timeouts (1205).
func transient(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}

// A pack is the row of one event plus, in "more", further events of the
// same notification from the same batch and the same second (so the
// retention sweep can tell when all of them are old). Packs are capped so
// one row stays a few tens of kilobytes.
const (
	packEvents = 256
	packBytes  = 32 << 10
)

type packRow struct {
	first contracts.Event
	more  []byte
	n     int
}

// pack groups a batch's events by notification (keeping their order) into
// rows: a notification with one event in the batch gets a plain row, a
// fan-out's page of deliveries a few packed rows.
func pack(evs []contracts.Event) []packRow {
	type key struct {
		app, ntf string
		sec      int64
	}
	// left counts each key's events still to come, so a pack's buffer is
	// sized once instead of doubling its way to packBytes (the doubling was
	// a seventh of the bytes a fan-out allocated).
	left := make(map[key]int, len(evs))
	for i := range evs {
		e := &evs[i]
		left[key{e.AppID, e.NotificationID, e.At.Unix()}]++
	}
	idx := make(map[key]int, len(left))
	var rows []packRow
	for i := range evs {
		e := &evs[i]
		k := key{e.AppID, e.NotificationID, e.At.Unix()}
		left[k]--
		j, ok := idx[k]
		if ok && e.NotificationID != "" && rows[j].n < packEvents && len(rows[j].more) < packBytes {
			r := &rows[j]
			if r.n == 0 {
				r.more = append(r.more, '[')
				r.more = appendPacked(r.more, e)
				// The events of one notification encode to about the
				// same length as this first one.
				if more := min(left[k], packEvents-1); more > 0 {
					per := len(r.more) + 1
					r.more = slices.Grow(r.more, min(packBytes+per, more*per+more/8*per)+1)
				}
			} else {
				r.more = append(r.more, ',')
				r.more = appendPacked(r.more, e)
			}
			r.n++
			continue
		}
		idx[k] = len(rows)
		rows = append(rows, packRow{first: *e})
	}
	for i := range rows {
		if rows[i].n > 0 {
			rows[i].more = append(rows[i].more, ']')
		}
	}
	return rows
}

func appendPacked(b []byte, e *contracts.Event) []byte {
	b = append(b, '[')
	for i, f := range [...]string{e.DeliveryID, e.UserID, string(e.Channel), e.Category, string(e.Priority), e.Type, e.Error} {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, f)
	}
	b = append(b, ',')
	b = strconv.AppendInt(b, e.At.UnixMilli(), 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, e.LatencyMS, 10)
	return append(b, ']')
}

// appendJSONString quotes s as a JSON string: plain ASCII directly, the
// rest through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// unpack decodes the "more" column of a row.
func unpack(appID, notificationID, more string) ([]contracts.Event, error) {
	var raw [][9]json.RawMessage
	if err := json.Unmarshal([]byte(more), &raw); err != nil {
		return nil, err
	}
	out := make([]contracts.Event, 0, len(raw))
	for _, r := range raw {
		var f [7]string
		for i := range f {
			if err := json.Unmarshal(r[i], &f[i]); err != nil {
				return nil, err
			}
		}
		var at int64
		e := contracts.Event{AppID: appID, NotificationID: notificationID, DeliveryID: f[0], UserID: f[1],
			Channel: domain.Channel(f[2]), Category: f[3], Priority: domain.Priority(f[4]), Type: f[5], Error: f[6]}
		if err := json.Unmarshal(r[7], &at); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(r[8], &e.LatencyMS); err != nil {
			return nil, err
		}
		e.At = time.UnixMilli(at).UTC()
		out = append(out, e)
	}
	return out, nil
}

func (s *Store) insertEvents(ctx context.Context, tx *sql.Tx, evs []contracts.Event) error {
	rows := pack(evs)
	return s.events.Each(len(rows), func(q string, start, end int) error {
		args := make([]any, 0, (end-start)*eventCols)
		for _, r := range rows[start:end] {
			e := &r.first
			args = append(args, e.AppID, e.NotificationID, e.DeliveryID, e.UserID, string(e.Channel), e.Category,
				string(e.Priority), e.Type, e.Error, e.At.UnixMilli(), e.LatencyMS, string(r.more), r.n)
		}
		if _, err := s.db.Exec(ctx, tx, q, args...); err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
		return nil
	})
}

func (s *Store) upsertRollups(ctx context.Context, tx *sql.Tx, deltas []analytics.RollupDelta) error {
	return s.rollups.Each(len(deltas), func(q string, start, end int) error {
		args := make([]any, 0, (end-start)*rollupCols)
		for _, d := range deltas[start:end] {
			k := d.Key
			args = append(args, k.AppID, string(k.Bucket), k.Start.UnixMilli(), k.Type, k.Channel, k.Category,
				d.Events, d.LatencySum, d.LatencyN, d.LatencyMax)
		}
		if _, err := s.db.Exec(ctx, tx, q, args...); err != nil {
			return fmt.Errorf("upsert rollups: %w", err)
		}
		return nil
	})
}

// Summary implements analytics.Sink from the rollups: daily rows for the
// whole days of the range and hourly rows for its edges.
func (s *Store) Summary(ctx context.Context, appID string, from, to time.Time) (analytics.Summary, error) {
	if err := analytics.CheckSummary(appID, from, to); err != nil {
		return analytics.Summary{}, err
	}
	var where []string
	args := []any{appID}
	for _, sp := range analytics.SummarySpans(from, to) {
		where = append(where, "(bucket = ? AND bucket_start >= ? AND bucket_start < ?)")
		args = append(args, string(sp.Bucket), sp.From.UnixMilli(), sp.To.UnixMilli())
	}
	q := `SELECT type, channel, SUM(events), SUM(latency_sum), SUM(latency_n), MAX(latency_max)
		FROM analytics_rollups WHERE app_id = ? AND (` + strings.Join(where, " OR ") + `) GROUP BY type, channel`
	rows, err := s.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return analytics.Summary{}, fmt.Errorf("analytics summary: %w", err)
	}
	defer rows.Close()
	var cells []analytics.Cell
	for rows.Next() {
		var c analytics.Cell
		if err := rows.Scan(&c.Type, &c.Channel, &c.Events, &c.LatencySum, &c.LatencyN, &c.LatencyMax); err != nil {
			return analytics.Summary{}, fmt.Errorf("analytics summary: %w", err)
		}
		cells = append(cells, c)
	}
	if err := rows.Err(); err != nil {
		return analytics.Summary{}, fmt.Errorf("analytics summary: %w", err)
	}
	return analytics.BuildSummary(from, to, cells), nil
}

// Series implements analytics.Sink from the rollups of the bucket's granularity.
func (s *Store) Series(ctx context.Context, appID string, from, to time.Time, bucket analytics.Bucket, eventType string) ([]analytics.Point, error) {
	if err := analytics.CheckSeries(appID, from, to, bucket, eventType); err != nil {
		return nil, err
	}
	q := `SELECT bucket_start, SUM(events), SUM(latency_sum), SUM(latency_n), MAX(latency_max)
		FROM analytics_rollups WHERE app_id = ? AND bucket = ? AND bucket_start >= ? AND bucket_start < ?`
	args := []any{appID, string(bucket), bucket.Floor(from).UnixMilli(), bucket.Ceil(to).UnixMilli()}
	if eventType != "" {
		q += ` AND type = ?`
		args = append(args, eventType)
	}
	q += ` GROUP BY bucket_start`
	rows, err := s.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("analytics series: %w", err)
	}
	defer rows.Close()
	var cells []analytics.BucketCell
	for rows.Next() {
		var c analytics.BucketCell
		var start int64
		if err := rows.Scan(&start, &c.Events, &c.LatencySum, &c.LatencyN, &c.LatencyMax); err != nil {
			return nil, fmt.Errorf("analytics series: %w", err)
		}
		c.Start = time.UnixMilli(start).UTC()
		cells = append(cells, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("analytics series: %w", err)
	}
	return analytics.FillSeries(from, to, bucket, cells), nil
}

// Events implements analytics.Sink (at most MaxTrace events, oldest first).
func (s *Store) Events(ctx context.Context, appID, notificationID string) ([]contracts.Event, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT delivery_id, user_id, channel, category, priority, type, error, at, latency_ms, COALESCE(more, '')
		FROM analytics_events WHERE app_id = ? AND notification_id = ? ORDER BY at, id LIMIT ?`, appID, notificationID, MaxTrace)
	if err != nil {
		return nil, fmt.Errorf("notification %s events: %w", notificationID, err)
	}
	defer rows.Close()
	out := []contracts.Event{}
	for rows.Next() {
		e := contracts.Event{AppID: appID, NotificationID: notificationID}
		var ch, prio, more string
		var at int64
		if err := rows.Scan(&e.DeliveryID, &e.UserID, &ch, &e.Category, &prio, &e.Type, &e.Error, &at, &e.LatencyMS, &more); err != nil {
			return nil, fmt.Errorf("notification %s events: %w", notificationID, err)
		}
		e.Channel, e.Priority, e.At = domain.Channel(ch), domain.Priority(prio), time.UnixMilli(at).UTC()
		out = append(out, e)
		if more != "" {
			evs, err := unpack(appID, notificationID, more)
			if err != nil {
				return nil, fmt.Errorf("notification %s events: decode a pack: %w", notificationID, err)
			}
			out = append(out, evs...)
		}
		if len(out) >= MaxTrace {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("notification %s events: %w", notificationID, err)
	}
	// A pack holds events of several moments: order by time, keeping the
	// tracked order among equal times.
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	if len(out) > MaxTrace {
		out = out[:MaxTrace]
	}
	return out, nil
}

// sweepOld selects rows whose every event is before the cutoff (bound
// twice): a pack's events share its first event's second, so a pack goes
// once that whole second is before the cutoff.
const sweepOld = `at < ? AND (more_n = 0 OR at - (at % 1000) + 1000 <= ?)`

// Sweep deletes raw events recorded before the given time and returns how
// many it deleted. Events are inserted in about time order (they are stamped
// when tracked and written within seconds), so it walks the primary key from
// the oldest row in chunks, deleting the rows of each chunk that are old
// enough, and stops at the first chunk with none: no index on the time is
// needed and writers are held up for one chunk at a time. Rollups are kept,
// so reports over old ranges stay available.
func (s *Store) Sweep(ctx context.Context, before time.Time) (int64, error) {
	cutoff := before.UnixMilli()
	var total int64
	var after int64 = -1
	for {
		var last, n int64
		err := s.db.Tx(ctx, func(tx *sql.Tx) error {
			var lo, hi sql.NullInt64
			// The chunk: the next sweepChunk ids after the last one seen.
			err := tx.QueryRowContext(ctx, `SELECT MIN(id), MAX(id) FROM (SELECT id FROM analytics_events WHERE id > ? ORDER BY id LIMIT ?) c`,
				after, sweepChunk).Scan(&lo, &hi)
			if err != nil || !hi.Valid {
				return err
			}
			// Count the events (a packed row holds 1 + more_n) before deleting.
			var events sql.NullInt64
			if err := tx.QueryRowContext(ctx, `SELECT SUM(1 + more_n) FROM analytics_events WHERE id >= ? AND id <= ? AND `+sweepOld,
				lo.Int64, hi.Int64, cutoff, cutoff).Scan(&events); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM analytics_events WHERE id >= ? AND id <= ? AND `+sweepOld, lo.Int64, hi.Int64, cutoff, cutoff); err != nil {
				return err
			}
			n, last = events.Int64, hi.Int64
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("sweep analytics events: %w", err)
		}
		total += n
		if n == 0 || last == 0 {
			return total, nil
		}
		after = last
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}

// Package sqlstore is the analytics sink on Herald's SQL database (SQLite
// embedded, or MySQL): raw events in analytics_events (swept after a
// retention period) and hourly/daily counters in analytics_rollups,
// incremented in the same transaction that stores a batch.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
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
	db *sqldb.DB
}

var (
	_ analytics.Sink    = (*Store)(nil)
	_ analytics.Sweeper = (*Store)(nil)
)

// New returns a store on a migrated database.
func New(db *sqldb.DB) *Store { return &Store{db: db} }

const (
	eventCols     = 11
	eventChunk    = 400
	rollupCols    = 10
	rollupChunk   = 300
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

func (s *Store) insertEvents(ctx context.Context, tx *sql.Tx, evs []contracts.Event) error {
	row := "(" + sqldb.Placeholders(eventCols) + ")"
	for off := 0; off < len(evs); off += eventChunk {
		chunk := evs[off:min(off+eventChunk, len(evs))]
		var b strings.Builder
		b.WriteString(`INSERT INTO analytics_events (app_id, notification_id, delivery_id, user_id, channel, category, priority, type, error, at, latency_ms) VALUES `)
		args := make([]any, 0, len(chunk)*eventCols)
		for i, e := range chunk {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(row)
			args = append(args, e.AppID, e.NotificationID, e.DeliveryID, e.UserID, string(e.Channel), e.Category,
				string(e.Priority), e.Type, e.Error, e.At.UnixMilli(), e.LatencyMS)
		}
		if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
	}
	return nil
}

func (s *Store) upsertRollups(ctx context.Context, tx *sql.Tx, deltas []analytics.RollupDelta) error {
	var suffix string
	if s.db.Dialect == sqldb.MySQL {
		suffix = ` ON DUPLICATE KEY UPDATE events = events + VALUES(events), latency_sum = latency_sum + VALUES(latency_sum),
			latency_n = latency_n + VALUES(latency_n), latency_max = GREATEST(latency_max, VALUES(latency_max))`
	} else {
		suffix = ` ON CONFLICT(app_id, bucket, bucket_start, type, channel, category) DO UPDATE SET
			events = events + excluded.events, latency_sum = latency_sum + excluded.latency_sum,
			latency_n = latency_n + excluded.latency_n, latency_max = MAX(latency_max, excluded.latency_max)`
	}
	row := "(" + sqldb.Placeholders(rollupCols) + ")"
	for off := 0; off < len(deltas); off += rollupChunk {
		chunk := deltas[off:min(off+rollupChunk, len(deltas))]
		var b strings.Builder
		b.WriteString(`INSERT INTO analytics_rollups (app_id, bucket, bucket_start, type, channel, category, events, latency_sum, latency_n, latency_max) VALUES `)
		args := make([]any, 0, len(chunk)*rollupCols)
		for i, d := range chunk {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(row)
			k := d.Key
			args = append(args, k.AppID, string(k.Bucket), k.Start.UnixMilli(), k.Type, k.Channel, k.Category,
				d.Events, d.LatencySum, d.LatencyN, d.LatencyMax)
		}
		b.WriteString(suffix)
		if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
			return fmt.Errorf("upsert rollups: %w", err)
		}
	}
	return nil
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
	rows, err := s.db.R.QueryContext(ctx, `SELECT delivery_id, user_id, channel, category, priority, type, error, at, latency_ms
		FROM analytics_events WHERE app_id = ? AND notification_id = ? ORDER BY at, id LIMIT ?`, appID, notificationID, MaxTrace)
	if err != nil {
		return nil, fmt.Errorf("notification %s events: %w", notificationID, err)
	}
	defer rows.Close()
	out := []contracts.Event{}
	for rows.Next() {
		e := contracts.Event{AppID: appID, NotificationID: notificationID}
		var ch, prio string
		var at int64
		if err := rows.Scan(&e.DeliveryID, &e.UserID, &ch, &e.Category, &prio, &e.Type, &e.Error, &at, &e.LatencyMS); err != nil {
			return nil, fmt.Errorf("notification %s events: %w", notificationID, err)
		}
		e.Channel, e.Priority, e.At = domain.Channel(ch), domain.Priority(prio), time.UnixMilli(at).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("notification %s events: %w", notificationID, err)
	}
	return out, nil
}

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
			res, err := tx.ExecContext(ctx, `DELETE FROM analytics_events WHERE id >= ? AND id <= ? AND at < ?`, lo.Int64, hi.Int64, cutoff)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			last = hi.Int64
			return err
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

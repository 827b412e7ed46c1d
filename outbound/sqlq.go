package outbound

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"herald.dev/platform/domain"
	"herald.dev/platform/messages"
	"herald.dev/platform/sqldb"
)

// sqlq holds the few queries on platform/messages' deliveries table that
// the Store API does not offer: a compare-and-set claim of due rows, lease
// renewal, the ids of a notification's existing rows (for a resumed
// fan-out) and the count of its primary rows (for completion). They touch
// only columns the Store documents and read from the primary.
type sqlq struct{ db *sqldb.DB }

// claimQuery claims one due row (see claim).
const claimQuery = `UPDATE deliveries SET next_at = ?, updated_at = ?
	WHERE id = ? AND next_at = ? AND status IN ('pending', 'queued')`

func newSQLQ(db *sqldb.DB) sqlq {
	// Registered, the claim is compiled once per connection, and on MySQL a
	// server that refuses more prepared statements gets it as text.
	_ = db.Prepare(context.Background(), claimQuery)
	return sqlq{db: db}
}

// claim moves next_at of each open row from the value the caller saw to
// lease, one conditional UPDATE per row in one transaction. Only rows still
// open with an unchanged next_at are claimed, so two processes (or a timer
// and the sweeper) never dispatch the same due row twice.
func (s sqlq) claim(ctx context.Context, rows []*messages.Delivery, lease time.Time) (map[string]bool, error) {
	won := map[string]bool{}
	if len(rows) == 0 {
		return won, nil
	}
	now := sqldb.Now()
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		clear(won)
		for _, d := range rows {
			res, err := s.db.Exec(ctx, tx, claimQuery, domain.Millis(lease), now, d.ID, domain.Millis(d.NextAt))
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n > 0 {
				won[d.ID] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	return won, nil
}

// setDeliveryLeases sets next_at of open rows (lease renewal, or release
// with at = now).
func (s sqlq) setDeliveryLeases(ctx context.Context, ids []string, at time.Time) error {
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		args := []any{domain.Millis(at)}
		for _, id := range chunk {
			args = append(args, id)
		}
		_, err := s.db.W.ExecContext(ctx, `UPDATE deliveries SET next_at = ? WHERE id IN (`+sqldb.Placeholders(len(chunk))+
			`) AND status IN ('pending', 'queued')`, args...)
		if err != nil {
			return fmt.Errorf("renew delivery leases: %w", err)
		}
	}
	return nil
}

type existingRows struct {
	ids  map[[12]byte]bool
	open int
}

// existing returns the ids of a notification's delivery rows (compactly)
// and how many are still open.
func (s sqlq) existing(ctx context.Context, notificationID string) (existingRows, error) {
	out := existingRows{ids: map[[12]byte]bool{}}
	cond, args := messages.ByNotification(s.db.Dialect, notificationID)
	rows, err := s.db.W.QueryContext(ctx, `SELECT id, status FROM deliveries WHERE `+cond, args...)
	if err != nil {
		return out, fmt.Errorf("existing deliveries of %s: %w", notificationID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			return out, err
		}
		if k, ok := messages.DeliveryKey(id); ok {
			out.ids[k] = true
		}
		if !domain.DeliveryStatus(st).Final() {
			out.open++
		}
	}
	return out, rows.Err()
}

// primaryCount counts a notification's rows that are not fallbacks.
func (s sqlq) primaryCount(ctx context.Context, notificationID string) (int, error) {
	var n int
	cond, args := messages.ByNotification(s.db.Dialect, notificationID)
	err := s.db.W.QueryRowContext(ctx, `SELECT COUNT(*) FROM deliveries WHERE `+cond+` AND parent_id = ''`, args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count deliveries of %s: %w", notificationID, err)
	}
	return n, nil
}

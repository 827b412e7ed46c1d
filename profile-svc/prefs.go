package profilesvc

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"

	"herald.dev/platform/contracts"
	"herald.dev/platform/sqldb"
)

// Preferences are a user's delivery choices (PUT/GET /v1/users/{id}/preferences).
//
//   - Channels: channel -> false turns the channel off for every category.
//   - Categories: category -> channel -> false opts out of that category on
//     that channel; true opts in (overriding a channel turned off above).
//   - Unsubscribed categories receive nothing on any channel.
//   - QuietHours is a daily window in the user's time zone ("22:00"-"07:00"
//     wraps midnight); deliveries in it wait until it ends.
type Preferences struct {
	Channels     map[string]bool            `json:"channels"`
	Categories   map[string]map[string]bool `json:"categories"`
	Unsubscribed []string                   `json:"unsubscribed"`
	QuietHours   *QuietWindow               `json:"quiet_hours"`
}

// QuietWindow is a daily window, "HH:MM" each end, in the user's time zone.
type QuietWindow struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// GetPreferences returns a user's preferences (empty ones when none are set).
func (s *Service) GetPreferences(ctx context.Context, appID, userID string) (Preferences, error) {
	out := Preferences{Channels: map[string]bool{}, Categories: map[string]map[string]bool{}, Unsubscribed: []string{}}
	var qs, qe int
	err := s.db.R.QueryRowContext(ctx, `SELECT quiet_start, quiet_end FROM profile_users WHERE app_id = ? AND id = ?`, appID, userID).Scan(&qs, &qe)
	if err == sql.ErrNoRows {
		return Preferences{}, contracts.ErrUserNotFound
	}
	if err != nil {
		return Preferences{}, fmt.Errorf("get preferences of %s: %w", userID, err)
	}
	if qs >= 0 && qe >= 0 && qs != qe {
		out.QuietHours = &QuietWindow{Start: formatClock(qs), End: formatClock(qe)}
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT category, channel, allowed FROM profile_prefs WHERE app_id = ? AND user_id = ?`, appID, userID)
	if err != nil {
		return Preferences{}, fmt.Errorf("get preferences of %s: %w", userID, err)
	}
	for rows.Next() {
		var cat, ch string
		var allowed int
		if err := rows.Scan(&cat, &ch, &allowed); err != nil {
			rows.Close()
			return Preferences{}, fmt.Errorf("get preferences of %s: %w", userID, err)
		}
		if cat == "*" {
			out.Channels[ch] = allowed != 0
			continue
		}
		if out.Categories[cat] == nil {
			out.Categories[cat] = map[string]bool{}
		}
		out.Categories[cat][ch] = allowed != 0
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Preferences{}, fmt.Errorf("get preferences of %s: %w", userID, err)
	}
	rows, err = s.db.R.QueryContext(ctx, `SELECT category FROM profile_unsubscribes WHERE app_id = ? AND user_id = ? ORDER BY category`, appID, userID)
	if err != nil {
		return Preferences{}, fmt.Errorf("get unsubscribes of %s: %w", userID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var cat string
		if err := rows.Scan(&cat); err != nil {
			return Preferences{}, fmt.Errorf("get unsubscribes of %s: %w", userID, err)
		}
		out.Unsubscribed = append(out.Unsubscribed, cat)
	}
	return out, rows.Err()
}

// PutPreferences replaces a user's preferences, unsubscribes and quiet hours
// in one transaction. Invalid entries are a *httpx.Problem naming them.
func (s *Service) PutPreferences(ctx context.Context, appID, userID string, p Preferences) (Preferences, error) {
	c, err := p.compile()
	if err != nil {
		return Preferences{}, err
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.userExists(ctx, tx, appID, userID, s.forUpdate()); err != nil {
			return err
		}
		for _, t := range []string{"profile_prefs", "profile_unsubscribes"} {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+t+` WHERE app_id = ? AND user_id = ?`, appID, userID); err != nil {
				return fmt.Errorf("put preferences of %s: %w", userID, err)
			}
		}
		if len(c.rows) > 0 {
			args := make([]any, 0, 5*len(c.rows))
			for _, r := range c.rows {
				args = append(args, appID, userID, r.category, r.channel, boolInt(r.allowed))
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO profile_prefs (app_id, user_id, category, channel, allowed) VALUES `+rowsOf(5, len(c.rows)), args...); err != nil {
				return fmt.Errorf("put preferences of %s: %w", userID, err)
			}
		}
		if len(c.unsub) > 0 {
			now := sqldb.Now()
			args := make([]any, 0, 4*len(c.unsub))
			for _, cat := range c.unsub {
				args = append(args, appID, userID, cat, now)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO profile_unsubscribes (app_id, user_id, category, created_at) VALUES `+rowsOf(4, len(c.unsub)), args...); err != nil {
				return fmt.Errorf("put unsubscribes of %s: %w", userID, err)
			}
		}
		has := boolInt(len(c.rows) > 0 || len(c.unsub) > 0)
		if _, err := tx.ExecContext(ctx, `UPDATE profile_users SET quiet_start = ?, quiet_end = ?, has_prefs = ?, updated_at = ? WHERE app_id = ? AND id = ?`,
			c.quietStart, c.quietEnd, has, sqldb.Now(), appID, userID); err != nil {
			return fmt.Errorf("put quiet hours of %s: %w", userID, err)
		}
		return nil
	})
	s.cache.invalidate(appID, userID)
	if err != nil {
		return Preferences{}, err
	}
	return c.preferences(), nil
}

// preferences renders what was stored, without a read (a replica may lag
// behind the write).
func (c compiledPrefs) preferences() Preferences {
	out := Preferences{Channels: map[string]bool{}, Categories: map[string]map[string]bool{}, Unsubscribed: []string{}}
	for _, r := range c.rows {
		if r.category == "*" {
			out.Channels[r.channel] = r.allowed
			continue
		}
		if out.Categories[r.category] == nil {
			out.Categories[r.category] = map[string]bool{}
		}
		out.Categories[r.category][r.channel] = r.allowed
	}
	out.Unsubscribed = append(out.Unsubscribed, c.unsub...)
	sort.Strings(out.Unsubscribed)
	if c.quietStart >= 0 {
		out.QuietHours = &QuietWindow{Start: formatClock(c.quietStart), End: formatClock(c.quietEnd)}
	}
	return out
}

// Unsubscribe stops every delivery of category to the user (idempotent).
func (s *Service) Unsubscribe(ctx context.Context, appID, userID, category string) error {
	category = strings.TrimSpace(category)
	if !validCategory(category) {
		return badField("category", categoryReason)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.userExists(ctx, tx, appID, userID, s.forUpdate()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.db.InsertIgnore()+` INTO profile_unsubscribes (app_id, user_id, category, created_at) VALUES (?, ?, ?, ?)`,
			appID, userID, category, sqldb.Now()); err != nil {
			return fmt.Errorf("unsubscribe %s from %s: %w", userID, category, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE profile_users SET has_prefs = 1 WHERE app_id = ? AND id = ?`, appID, userID); err != nil {
			return fmt.Errorf("unsubscribe %s from %s: %w", userID, category, err)
		}
		return nil
	})
	s.cache.invalidate(appID, userID)
	return err
}

// Resubscribe undoes Unsubscribe (idempotent).
func (s *Service) Resubscribe(ctx context.Context, appID, userID, category string) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.userExists(ctx, tx, appID, userID, s.forUpdate()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM profile_unsubscribes WHERE app_id = ? AND user_id = ? AND category = ?`, appID, userID, category); err != nil {
			return fmt.Errorf("resubscribe %s to %s: %w", userID, category, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE profile_users SET has_prefs = CASE WHEN
			EXISTS (SELECT 1 FROM profile_prefs p WHERE p.app_id = ? AND p.user_id = ?) OR
			EXISTS (SELECT 1 FROM profile_unsubscribes x WHERE x.app_id = ? AND x.user_id = ?) THEN 1 ELSE 0 END
			WHERE app_id = ? AND id = ?`, appID, userID, appID, userID, appID, userID); err != nil {
			return fmt.Errorf("resubscribe %s to %s: %w", userID, category, err)
		}
		return nil
	})
	s.cache.invalidate(appID, userID)
	return err
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

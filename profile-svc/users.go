package profilesvc

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/sqldb"
)

// Identities are a user's ids on external messaging platforms.
type Identities struct {
	WeChat   string `json:"wechat,omitempty"`
	WeCom    string `json:"wecom,omitempty"`
	DingTalk string `json:"dingtalk,omitempty"`
	QQ       string `json:"qq,omitempty"`
}

// UserInput is the body of PUT /v1/users/{id} and one import row.
type UserInput struct {
	// ID is the app's own user id: required by imports; in a PUT body it may
	// be omitted and must otherwise match the path.
	ID         string     `json:"id,omitempty"`
	Name       string     `json:"name"`
	Email      string     `json:"email"`
	Phone      string     `json:"phone"`
	Locale     string     `json:"locale"`
	Timezone   string     `json:"timezone"`
	Identities Identities `json:"identities"`
	// Groups are the user's direct groups. On PUT, nil leaves memberships
	// unchanged and a list (even empty) replaces them; imports add them.
	Groups     []string `json:"groups"`
	WebhookURL string   `json:"webhook_url"`
}

// User is a stored user.
type User struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Email      string     `json:"email"`
	Phone      string     `json:"phone"`
	Locale     string     `json:"locale"`
	Timezone   string     `json:"timezone"`
	Identities Identities `json:"identities"`
	// Groups lists the groups the user is a direct member of.
	Groups     []string  `json:"groups"`
	WebhookURL string    `json:"webhook_url"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

const userCols = "id, name, email, phone, locale, timezone, wechat, wecom, dingtalk, qq, webhook_url, quiet_start, quiet_end, has_prefs, created_at, updated_at"

// userRow is one profile_users row.
type userRow struct {
	id, name, email, phone, locale, timezone string
	wechat, wecom, dingtalk, qq, webhook     string
	quietStart, quietEnd                     int
	hasPrefs                                 int
	created, updated                         int64
}

func (r *userRow) dest() []any {
	return []any{&r.id, &r.name, &r.email, &r.phone, &r.locale, &r.timezone, &r.wechat, &r.wecom, &r.dingtalk, &r.qq,
		&r.webhook, &r.quietStart, &r.quietEnd, &r.hasPrefs, &r.created, &r.updated}
}

func (r *userRow) user() User {
	return User{
		ID: r.id, Name: r.name, Email: r.email, Phone: r.phone, Locale: r.locale, Timezone: r.timezone,
		Identities: Identities{WeChat: r.wechat, WeCom: r.wecom, DingTalk: r.dingtalk, QQ: r.qq},
		Groups:     []string{}, WebhookURL: r.webhook, CreatedAt: ms(r.created), UpdatedAt: ms(r.updated),
	}
}

// packedCols selects what a profile needs in 9 columns instead of 14: the
// SQLite driver's cost is per column, and the directory reads profiles by
// the hundred thousand. The identities are joined with U+001F and the three
// small integers packed base 4096; scanPacked undoes both.
func (s *Service) packedCols(prefix string) string {
	p := func(c string) string { return prefix + c }
	idents := p("wechat") + " || char(31) || " + p("wecom") + " || char(31) || " + p("dingtalk") + " || char(31) || " + p("qq")
	if s.db.Dialect == sqldb.MySQL {
		idents = "CONCAT_WS(CHAR(31 USING utf8mb4), " + p("wechat") + ", " + p("wecom") + ", " + p("dingtalk") + ", " + p("qq") + ")"
	}
	return p("id") + ", " + p("name") + ", " + p("email") + ", " + p("phone") + ", " + p("locale") + ", " + p("timezone") + ", " +
		p("webhook_url") + ", " + idents + ", (" + p("has_prefs") + " * 4096 + " + p("quiet_start") + " + 1) * 4096 + " + p("quiet_end") + " + 1"
}

// scanPacked reads a row selected with packedCols (created/updated stay zero).
func (r *userRow) scanPacked(sc interface{ Scan(...any) error }) error {
	var idents string
	var packed int64
	if err := sc.Scan(&r.id, &r.name, &r.email, &r.phone, &r.locale, &r.timezone, &r.webhook, &idents, &packed); err != nil {
		return err
	}
	next := func() string {
		v, rest, _ := strings.Cut(idents, "\x1f")
		idents = rest
		return v
	}
	r.wechat, r.wecom, r.dingtalk, r.qq = next(), next(), next(), next()
	r.quietEnd = int(packed%4096) - 1
	packed /= 4096
	r.quietStart = int(packed%4096) - 1
	r.hasPrefs = int(packed / 4096)
	return nil
}

// profile converts the row; preferences are attached separately.
func (r *userRow) profile() *contracts.Profile {
	p := &contracts.Profile{
		UserID: r.id, Name: r.name, Email: r.email, Phone: r.phone, Locale: r.locale, Timezone: r.timezone,
		WebhookURL: r.webhook,
	}
	n := 0
	for _, v := range [...]string{r.wechat, r.wecom, r.dingtalk, r.qq} {
		if v != "" {
			n++
		}
	}
	if n > 0 {
		p.Identities = make(map[string]string, n)
		if r.wechat != "" {
			p.Identities["wechat"] = r.wechat
		}
		if r.wecom != "" {
			p.Identities["wecom"] = r.wecom
		}
		if r.dingtalk != "" {
			p.Identities["dingtalk"] = r.dingtalk
		}
		if r.qq != "" {
			p.Identities["qq"] = r.qq
		}
	}
	if r.quietStart >= 0 && r.quietEnd >= 0 && r.quietStart != r.quietEnd {
		p.Quiet = &contracts.QuietHours{Start: r.quietStart, End: r.quietEnd}
	}
	return p
}

// queryer is what reads need from *sql.DB and *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// PutUser creates or replaces a user; created reports which. Invalid fields
// and unknown groups are returned as a *httpx.Problem naming the field.
func (s *Service) PutUser(ctx context.Context, appID string, in UserInput) (u User, created bool, err error) {
	in.normalize()
	if fe := in.validate(true); len(fe) > 0 {
		return User{}, false, fe.problem()
	}
	now := sqldb.Now()
	err = s.tx(ctx, func(tx *sql.Tx) error {
		if in.Groups != nil {
			if err := s.checkGroups(ctx, tx, appID, in.Groups, "groups"); err != nil {
				return err
			}
		}
		var createdAt int64
		err := tx.QueryRowContext(ctx, `SELECT created_at FROM profile_users WHERE app_id = ? AND id = ?`+s.forUpdate(), appID, in.ID).Scan(&createdAt)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			created, createdAt = true, now
			_, err = tx.ExecContext(ctx, `INSERT INTO profile_users (app_id, id, name, email, phone, locale, timezone, wechat, wecom, dingtalk, qq, webhook_url, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				appID, in.ID, in.Name, in.Email, in.Phone, in.Locale, in.Timezone, in.Identities.WeChat, in.Identities.WeCom,
				in.Identities.DingTalk, in.Identities.QQ, in.WebhookURL, now, now)
		case err == nil:
			created = false
			_, err = tx.ExecContext(ctx, `UPDATE profile_users SET name = ?, email = ?, phone = ?, locale = ?, timezone = ?, wechat = ?, wecom = ?, dingtalk = ?, qq = ?, webhook_url = ?, updated_at = ?
				WHERE app_id = ? AND id = ?`,
				in.Name, in.Email, in.Phone, in.Locale, in.Timezone, in.Identities.WeChat, in.Identities.WeCom,
				in.Identities.DingTalk, in.Identities.QQ, in.WebhookURL, now, appID, in.ID)
		}
		if err != nil {
			return fmt.Errorf("put user %s: %w", in.ID, err)
		}
		if in.Groups != nil {
			if _, err := tx.ExecContext(ctx, `DELETE FROM profile_group_members WHERE app_id = ? AND user_id = ?`, appID, in.ID); err != nil {
				return fmt.Errorf("put user %s: clear groups: %w", in.ID, err)
			}
			for _, g := range in.Groups {
				if _, err := tx.ExecContext(ctx, `INSERT INTO profile_group_members (app_id, group_id, user_id) VALUES (?, ?, ?)`, appID, g, in.ID); err != nil {
					return fmt.Errorf("put user %s: add group %s: %w", in.ID, g, err)
				}
			}
		}
		u = User{
			ID: in.ID, Name: in.Name, Email: in.Email, Phone: in.Phone, Locale: in.Locale, Timezone: in.Timezone,
			Identities: in.Identities, WebhookURL: in.WebhookURL, CreatedAt: ms(createdAt), UpdatedAt: ms(now),
		}
		return nil
	})
	s.cache.invalidate(appID, in.ID)
	if err != nil {
		return User{}, false, err
	}
	if in.Groups != nil {
		u.Groups = append([]string{}, in.Groups...)
		sort.Strings(u.Groups)
	} else if u.Groups, err = s.userGroups(ctx, s.db.W, appID, in.ID); err != nil {
		return User{}, false, err
	}
	return u, created, nil
}

// checkGroups verifies every id names a group of the app, holding a shared
// lock on them until the transaction ends; field names the list in errors.
func (s *Service) checkGroups(ctx context.Context, tx *sql.Tx, appID string, groups []string, field string) error {
	if len(groups) == 0 {
		return nil
	}
	found, err := existing(ctx, tx, "profile_groups", appID, groups, s.shareLock())
	if err != nil {
		return fmt.Errorf("check groups: %w", err)
	}
	var fe fieldErrs
	for i, g := range groups {
		if !found[g] {
			fe.add(field+"["+strconv.Itoa(i)+"]", "unknown group %q", g)
		}
	}
	return fe.problem()
}

// existing returns which of ids exist in table (profile_users or profile_groups) for the app.
func existing(ctx context.Context, q queryer, table, appID string, ids []string, lock string) (map[string]bool, error) {
	found := make(map[string]bool, len(ids))
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(len(ids), start+500)]
		args := make([]any, 0, len(chunk)+1)
		args = append(args, appID)
		for _, id := range chunk {
			args = append(args, id)
		}
		rows, err := q.QueryContext(ctx, `SELECT id FROM `+table+` WHERE app_id = ? AND id IN (`+sqldb.Placeholders(len(chunk))+`)`+lock, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			found[id] = true
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// GetUser loads one user with their direct groups.
func (s *Service) GetUser(ctx context.Context, appID, id string) (User, error) {
	var r userRow
	err := s.db.R.QueryRowContext(ctx, `SELECT `+userCols+` FROM profile_users WHERE app_id = ? AND id = ?`, appID, id).Scan(r.dest()...)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, contracts.ErrUserNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("get user %s: %w", id, err)
	}
	u := r.user()
	if u.Groups, err = s.userGroups(ctx, s.db.R, appID, id); err != nil {
		return User{}, err
	}
	return u, nil
}

func (s *Service) userGroups(ctx context.Context, q queryer, appID, id string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT group_id FROM profile_group_members WHERE app_id = ? AND user_id = ? ORDER BY group_id`, appID, id)
	if err != nil {
		return nil, fmt.Errorf("user %s groups: %w", id, err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// userExists reports whether the app has the user (inside tx, holding a shared lock).
func (s *Service) userExists(ctx context.Context, q queryer, appID, id string, lock string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM profile_users WHERE app_id = ? AND id = ?`+lock, appID, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return contracts.ErrUserNotFound
	}
	if err != nil {
		return fmt.Errorf("look up user %s: %w", id, err)
	}
	return nil
}

// DeleteUser removes a user with their memberships, preferences and
// unsubscribes in one transaction.
func (s *Service) DeleteUser(ctx context.Context, appID, id string) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM profile_users WHERE app_id = ? AND id = ?`, appID, id)
		if err != nil {
			return fmt.Errorf("delete user %s: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return contracts.ErrUserNotFound
		}
		for _, t := range []string{"profile_group_members", "profile_prefs", "profile_unsubscribes"} {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+t+` WHERE app_id = ? AND user_id = ?`, appID, id); err != nil {
				return fmt.Errorf("delete user %s: %s: %w", id, t, err)
			}
		}
		return nil
	})
	s.cache.invalidate(appID, id)
	return err
}

// ListUsers returns up to limit users with ids after the cursor, in id order,
// and the cursor of the next page ("" at the end).
func (s *Service) ListUsers(ctx context.Context, appID string, limit int, after string) ([]User, string, error) {
	limit = clampLimit(limit)
	rows, err := s.db.R.QueryContext(ctx, `SELECT `+userCols+` FROM profile_users WHERE app_id = ? AND id > ? ORDER BY id LIMIT ?`, appID, after, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("list users: %w", err)
	}
	users := make([]User, 0, limit)
	for rows.Next() {
		var r userRow
		if err := rows.Scan(r.dest()...); err != nil {
			rows.Close()
			return nil, "", fmt.Errorf("list users: %w", err)
		}
		users = append(users, r.user())
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list users: %w", err)
	}
	next := ""
	if len(users) > limit {
		users = users[:limit]
		next = users[limit-1].ID
	}
	if err := s.attachGroups(ctx, appID, users); err != nil {
		return nil, "", err
	}
	return users, next, nil
}

// attachGroups fills each user's direct groups with one IN query per 500 users.
func (s *Service) attachGroups(ctx context.Context, appID string, users []User) error {
	idx := make(map[string]int, len(users))
	for i := range users {
		idx[users[i].ID] = i
	}
	for start := 0; start < len(users); start += 500 {
		chunk := users[start:min(len(users), start+500)]
		args := make([]any, 0, len(chunk)+1)
		args = append(args, appID)
		for _, u := range chunk {
			args = append(args, u.ID)
		}
		rows, err := s.db.R.QueryContext(ctx, `SELECT user_id, group_id FROM profile_group_members WHERE app_id = ? AND user_id IN (`+
			sqldb.Placeholders(len(chunk))+`) ORDER BY user_id, group_id`, args...)
		if err != nil {
			return fmt.Errorf("user groups: %w", err)
		}
		for rows.Next() {
			var uid, gid string
			if err := rows.Scan(&uid, &gid); err != nil {
				rows.Close()
				return fmt.Errorf("user groups: %w", err)
			}
			if i, ok := idx[uid]; ok {
				users[i].Groups = append(users[i].Groups, gid)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("user groups: %w", err)
		}
	}
	return nil
}

func clampLimit(n int) int {
	if n <= 0 {
		return DefaultPageLimit
	}
	return min(n, MaxPageLimit)
}

package templatesvc

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
	"herald.dev/platform/sqldb"
)

// prepareWrite validates in and compiles it; client mistakes come back as a
// *httpx.Problem naming the fields.
func (s *Service) prepareWrite(in *Input) (*body, *compiled, error) {
	var fe fieldErrs
	validate(in, &fe)
	b := &body{Name: in.Name, Category: in.Category, Variants: in.Variants, Locales: in.Locales}
	if in.Variables == nil {
		b.Derive = true
	} else {
		b.Variables = in.Variables
	}
	if len(fe) > 0 {
		// report syntax errors too, but only after the structural ones
		_, cfe := compile(b, true, s.opts.MaxOutput)
		fe = append(fe, cfe...)
		return nil, nil, fe.problem()
	}
	c, cfe := compile(b, true, s.opts.MaxOutput)
	if len(cfe) > 0 {
		return nil, nil, cfe.problem()
	}
	return b, c, nil
}

// Create stores version 1 of a new template, or, when the code belonged to a
// deleted template, the next version number after the old ones. It returns
// ErrExists when a live template has the code, and a *httpx.Problem for
// invalid input.
func (s *Service) Create(ctx context.Context, appID string, in Input) (Template, error) {
	b, c, err := s.prepareWrite(&in)
	if err != nil {
		return Template{}, err
	}
	now := sqldb.Now()
	b.CreatedAt = now
	var version int
	err = s.tx(ctx, func(tx *sql.Tx) error {
		channels := joinChannels(c.info.Channels)
		_, err := tx.ExecContext(ctx, `INSERT INTO templates (app_id, code, name, category, channels, latest_version, created_at, updated_at, deleted_at)
			VALUES (?, ?, ?, ?, ?, 1, ?, ?, 0)`, appID, in.Code, b.Name, b.Category, channels, now, now)
		switch {
		case err == nil:
			version = 1
		case sqldb.IsDuplicate(err):
			// revive a deleted code, continuing its version numbers
			res, err := tx.ExecContext(ctx, `UPDATE templates SET latest_version = latest_version + 1, name = ?, category = ?, channels = ?,
				created_at = ?, updated_at = ?, deleted_at = 0 WHERE app_id = ? AND code = ? AND deleted_at <> 0`,
				b.Name, b.Category, channels, now, now, appID, in.Code)
			if err != nil {
				return fmt.Errorf("revive template %s: %w", in.Code, err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return ErrExists
			}
			if err := tx.QueryRowContext(ctx, `SELECT latest_version FROM templates WHERE app_id = ? AND code = ?`, appID, in.Code).Scan(&version); err != nil {
				return fmt.Errorf("read template %s version: %w", in.Code, err)
			}
		default:
			return fmt.Errorf("insert template %s: %w", in.Code, err)
		}
		return insertVersion(ctx, tx, appID, in.Code, version, b, channels, now)
	})
	if err != nil {
		return Template{}, err
	}
	c.info.Code, c.info.Version = in.Code, version
	s.wrote(appID, in.Code, c)
	return toTemplate(in.Code, version, b, c, now), nil
}

// Update stores a new version of a live template. base, when > 0, is the
// version the caller edited: if another version was written since,
// ErrVersionConflict is returned and nothing is stored.
func (s *Service) Update(ctx context.Context, appID, code string, in Input, base int) (Template, error) {
	if in.Code == "" {
		in.Code = code
	}
	if in.Code != code {
		return Template{}, httpx.Invalid("code", "must match the code in the path (%q); codes cannot be renamed", code)
	}
	if !ValidCode(code) {
		return Template{}, ErrNotFound
	}
	if base < 0 {
		return Template{}, httpx.Invalid("version", "must be a positive version number")
	}
	b, c, err := s.prepareWrite(&in)
	if err != nil {
		return Template{}, err
	}
	now := sqldb.Now()
	var version int
	err = s.tx(ctx, func(tx *sql.Tx) error {
		// the UPDATE takes the row lock: concurrent updates of a code queue
		// here and each gets the next number
		res, err := tx.ExecContext(ctx, `UPDATE templates SET latest_version = latest_version + 1, name = ?, category = ?, channels = ?, updated_at = ?
			WHERE app_id = ? AND code = ? AND deleted_at = 0`, b.Name, b.Category, joinChannels(c.info.Channels), now, appID, code)
		if err != nil {
			return fmt.Errorf("update template %s: %w", code, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		if err := tx.QueryRowContext(ctx, `SELECT latest_version, created_at FROM templates WHERE app_id = ? AND code = ?`, appID, code).
			Scan(&version, &b.CreatedAt); err != nil {
			return fmt.Errorf("read template %s version: %w", code, err)
		}
		if base > 0 && version-1 != base {
			return ErrVersionConflict
		}
		return insertVersion(ctx, tx, appID, code, version, b, joinChannels(c.info.Channels), now)
	})
	if err != nil {
		return Template{}, err
	}
	c.info.Code, c.info.Version = code, version
	s.wrote(appID, code, c)
	return toTemplate(code, version, b, c, now), nil
}

func insertVersion(ctx context.Context, tx *sql.Tx, appID, code string, version int, b *body, channels string, now int64) error {
	raw, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("encode template %s: %w", code, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO template_versions (app_id, code, version, name, category, channels, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		appID, code, version, b.Name, b.Category, channels, string(raw), now); err != nil {
		return fmt.Errorf("insert template %s version %d: %w", code, version, err)
	}
	return nil
}

// Delete soft-deletes a template: reads and new sends of the code get
// ErrNotFound; its versions are kept.
func (s *Service) Delete(ctx context.Context, appID, code string) error {
	if !ValidCode(code) {
		return ErrNotFound
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE templates SET deleted_at = ? WHERE app_id = ? AND code = ? AND deleted_at = 0`, sqldb.Now(), appID, code)
		if err != nil {
			return fmt.Errorf("delete template %s: %w", code, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.wrote(appID, code, nil)
	return nil
}

// Get returns the latest version of a live template.
func (s *Service) Get(ctx context.Context, appID, code string) (Template, error) {
	return s.GetVersion(ctx, appID, code, 0)
}

// GetVersion returns one version (0 = latest) of a live template.
func (s *Service) GetVersion(ctx context.Context, appID, code string, version int) (Template, error) {
	if !ValidCode(code) || version < 0 {
		return Template{}, ErrNotFound
	}
	var latest int
	var deleted int64
	err := s.db.R.QueryRowContext(ctx, `SELECT latest_version, deleted_at FROM templates WHERE app_id = ? AND code = ?`, appID, code).Scan(&latest, &deleted)
	if errors.Is(err, sql.ErrNoRows) || err == nil && deleted != 0 {
		return Template{}, ErrNotFound
	}
	if err != nil {
		return Template{}, fmt.Errorf("get template %s: %w", code, err)
	}
	if version == 0 {
		version = latest
	}
	b, at, err := s.loadVersionBody(ctx, appID, code, version)
	if err != nil {
		return Template{}, err
	}
	c, err := s.compiledBody(appID, code, version, b)
	if err != nil {
		return Template{}, err
	}
	return toTemplate(code, version, b, c, at), nil
}

// ListFilter narrows List.
type ListFilter struct {
	Category string
}

// List returns up to limit live templates with codes after cursor, in code
// order, and the cursor of the next page ("" at the end).
func (s *Service) List(ctx context.Context, appID string, f ListFilter, limit int, cursor string) ([]Summary, string, error) {
	limit = clampLimit(limit)
	q := `SELECT code, name, category, channels, latest_version, created_at, updated_at FROM templates WHERE app_id = ? AND deleted_at = 0 AND code > ?`
	args := []any{appID, cursor}
	if f.Category != "" {
		q += ` AND category = ?`
		args = append(args, f.Category)
	}
	q += ` ORDER BY code LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list templates: %w", err)
	}
	defer rows.Close()
	out := make([]Summary, 0, limit)
	for rows.Next() {
		var t Summary
		var channels string
		var created, updated int64
		if err := rows.Scan(&t.Code, &t.Name, &t.Category, &channels, &t.Version, &created, &updated); err != nil {
			return nil, "", fmt.Errorf("list templates: %w", err)
		}
		t.Channels, t.CreatedAt, t.UpdatedAt = splitChannels(channels), domain.FromMillis(created), domain.FromMillis(updated)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list templates: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].Code
	}
	return out, next, nil
}

// Versions returns up to limit versions of a live template, newest first,
// with numbers below before (0 = from the latest), and the cursor of the
// next page (0 at the end). Versions of earlier incarnations of the code
// (before a delete) are part of the history.
func (s *Service) Versions(ctx context.Context, appID, code string, limit, before int) ([]VersionInfo, int, error) {
	if !ValidCode(code) {
		return nil, 0, ErrNotFound
	}
	var deleted int64
	err := s.db.R.QueryRowContext(ctx, `SELECT deleted_at FROM templates WHERE app_id = ? AND code = ?`, appID, code).Scan(&deleted)
	if errors.Is(err, sql.ErrNoRows) || err == nil && deleted != 0 {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("list template %s versions: %w", code, err)
	}
	limit = clampLimit(limit)
	if before <= 0 {
		before = int(^uint32(0) >> 1)
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT version, name, category, channels, created_at FROM template_versions WHERE app_id = ? AND code = ? AND version < ? ORDER BY version DESC LIMIT ?`,
		appID, code, before, limit+1)
	if err != nil {
		return nil, 0, fmt.Errorf("list template %s versions: %w", code, err)
	}
	defer rows.Close()
	out := make([]VersionInfo, 0, limit)
	for rows.Next() {
		var v VersionInfo
		var channels string
		var at int64
		if err := rows.Scan(&v.Version, &v.Name, &v.Category, &channels, &at); err != nil {
			return nil, 0, fmt.Errorf("list template %s versions: %w", code, err)
		}
		v.Channels, v.CreatedAt = splitChannels(channels), domain.FromMillis(at)
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("list template %s versions: %w", code, err)
	}
	next := 0
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].Version
	}
	return out, next, nil
}

// loadLatestVersion reads the latest version of a live code. It reads from
// the primary on MySQL (a replica could lag behind a write just made); on
// SQLite the read pool sees every commit.
func (s *Service) loadLatestVersion(ctx context.Context, appID, code string) (int, error) {
	q := s.db.R
	if s.db.Dialect == sqldb.MySQL {
		q = s.db.W
	}
	var v int
	var deleted int64
	err := q.QueryRowContext(ctx, `SELECT latest_version, deleted_at FROM templates WHERE app_id = ? AND code = ?`, appID, code).Scan(&v, &deleted)
	if errors.Is(err, sql.ErrNoRows) || err == nil && deleted != 0 {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("load template %s: %w", code, err)
	}
	return v, nil
}

// loadVersionBody reads a stored version, falling back to the primary when a
// MySQL replica does not have it yet.
func (s *Service) loadVersionBody(ctx context.Context, appID, code string, version int) (*body, int64, error) {
	const q = `SELECT body, created_at FROM template_versions WHERE app_id = ? AND code = ? AND version = ?`
	var raw string
	var at int64
	err := s.db.R.QueryRowContext(ctx, q, appID, code, version).Scan(&raw, &at)
	if errors.Is(err, sql.ErrNoRows) && s.db.R != s.db.W {
		err = s.db.W.QueryRowContext(ctx, q, appID, code, version).Scan(&raw, &at)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, fmt.Errorf("template %s version %d: %w", code, version, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load template %s version %d: %w", code, version, err)
	}
	b, err := decodeBody([]byte(raw))
	if err != nil {
		return nil, 0, fmt.Errorf("decode template %s version %d: %w", code, version, err)
	}
	return b, at, nil
}

// tx runs fn in a write transaction, retrying MySQL deadlocks and lock
// timeouts a few times (concurrent creates of one code can deadlock on the
// duplicate-key path).
func (s *Service) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	var err error
	for attempt := 0; attempt < 12; attempt++ {
		err = s.db.Tx(ctx, fn)
		if !sqldb.IsRetryable(err) {
			return err
		}
		// growing, jittered waits so racing writers stop colliding
		wait := time.Duration(attempt+1)*5*time.Millisecond + time.Duration(rand.Int64N(int64(10*time.Millisecond)))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
	return err
}

func clampLimit(n int) int {
	if n <= 0 {
		return DefaultPageLimit
	}
	if n > MaxPageLimit {
		return MaxPageLimit
	}
	return n
}

func joinChannels(chs []domain.Channel) string {
	s := make([]string, len(chs))
	for i, c := range chs {
		s[i] = string(c)
	}
	return strings.Join(s, ",")
}

func splitChannels(s string) []domain.Channel {
	out := []domain.Channel{}
	if s == "" {
		return out
	}
	for _, p := range strings.Split(s, ",") {
		out = append(out, domain.Channel(p))
	}
	return out
}

func toTemplate(code string, version int, b *body, c *compiled, updated int64) Template {
	t := Template{
		Code: code, Name: b.Name, Category: b.Category, Version: version,
		Channels: append([]domain.Channel{}, c.info.Channels...),
		Variants: b.Variants, Locales: b.Locales,
		Variables:        append([]Variable{}, c.vars...),
		VariablesDerived: c.derived,
		CreatedAt:        domain.FromMillis(b.CreatedAt),
		UpdatedAt:        domain.FromMillis(updated),
	}
	return t
}

package profilesvc

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/sqldb"
)

// Group kinds: a module is a group that stands for a business module.
const (
	KindGroup  = "group"
	KindModule = "module"
)

// GroupInput is the body of POST /v1/groups and PUT /v1/groups/{id}.
type GroupInput struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Kind is "group" (default) or "module".
	Kind string `json:"kind"`
	// Parent makes this group a subgroup: its members are members of the parent.
	Parent string `json:"parent"`
}

// Group is a stored group or module.
type Group struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	Parent    string    `json:"parent,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

const groupCols = "id, name, kind, parent_id, created_at, updated_at"

func scanGroup(sc interface{ Scan(...any) error }) (Group, error) {
	var g Group
	var c, u int64
	err := sc.Scan(&g.ID, &g.Name, &g.Kind, &g.Parent, &c, &u)
	g.CreatedAt, g.UpdatedAt = ms(c), ms(u)
	return g, err
}

// CreateGroup makes a group or module. A taken id is ErrGroupExists; an
// unknown parent or invalid field is a *httpx.Problem.
func (s *Service) CreateGroup(ctx context.Context, appID string, in GroupInput) (Group, error) {
	in.normalize()
	if fe := in.validate(); len(fe) > 0 {
		return Group{}, fe.problem()
	}
	now := sqldb.Now()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if in.Parent != "" {
			if err := s.checkParent(ctx, tx, appID, in.ID, in.Parent); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO profile_groups (app_id, id, name, kind, parent_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			appID, in.ID, in.Name, in.Kind, in.Parent, now, now)
		if sqldb.IsDuplicate(err) {
			return ErrGroupExists
		}
		if err != nil {
			return fmt.Errorf("create group %s: %w", in.ID, err)
		}
		return nil
	})
	if err != nil {
		return Group{}, err
	}
	return Group{ID: in.ID, Name: in.Name, Kind: in.Kind, Parent: in.Parent, CreatedAt: ms(now), UpdatedAt: ms(now)}, nil
}

// checkParent verifies that parent exists and that making it id's parent
// creates no cycle, walking (and locking) parent's ancestor chain.
func (s *Service) checkParent(ctx context.Context, tx *sql.Tx, appID, id, parent string) error {
	cur := parent
	for depth := 0; cur != ""; depth++ {
		if cur == id {
			return badField("parent", "group %q is a subgroup of %q: making it the parent would create a cycle", parent, id)
		}
		if depth >= MaxGroupDepth {
			return badField("parent", "groups nest at most %d levels deep", MaxGroupDepth)
		}
		var next string
		err := tx.QueryRowContext(ctx, `SELECT parent_id FROM profile_groups WHERE app_id = ? AND id = ?`+s.forUpdate(), appID, cur).Scan(&next)
		if errors.Is(err, sql.ErrNoRows) {
			if cur == parent {
				return badField("parent", "unknown group %q", parent)
			}
			return nil // a dangling ancestor link ends the chain
		}
		if err != nil {
			return fmt.Errorf("check parent %s: %w", parent, err)
		}
		cur = next
	}
	return nil
}

func badField(field, reason string, args ...any) error {
	var fe fieldErrs
	fe.add(field, reason, args...)
	return fe.problem()
}

// GetGroup loads one group.
func (s *Service) GetGroup(ctx context.Context, appID, id string) (Group, error) {
	g, err := scanGroup(s.db.R.QueryRowContext(ctx, `SELECT `+groupCols+` FROM profile_groups WHERE app_id = ? AND id = ?`, appID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Group{}, contracts.ErrGroupNotFound
	}
	if err != nil {
		return Group{}, fmt.Errorf("get group %s: %w", id, err)
	}
	return g, nil
}

// UpdateGroup replaces a group's name, kind and parent. Moving a group under
// one of its own subgroups is rejected (422 naming "parent").
func (s *Service) UpdateGroup(ctx context.Context, appID, id string, in GroupInput) (Group, error) {
	if in.ID == "" {
		in.ID = id
	}
	in.normalize()
	if in.ID != id {
		return Group{}, badField("id", "must match the id in the path")
	}
	if fe := in.validate(); len(fe) > 0 {
		return Group{}, fe.problem()
	}
	var g Group
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		g, err = scanGroup(tx.QueryRowContext(ctx, `SELECT `+groupCols+` FROM profile_groups WHERE app_id = ? AND id = ?`+s.forUpdate(), appID, id))
		if errors.Is(err, sql.ErrNoRows) {
			return contracts.ErrGroupNotFound
		}
		if err != nil {
			return fmt.Errorf("update group %s: %w", id, err)
		}
		if in.Parent != "" {
			if err := s.checkParent(ctx, tx, appID, id, in.Parent); err != nil {
				return err
			}
		}
		now := sqldb.Now()
		if _, err := tx.ExecContext(ctx, `UPDATE profile_groups SET name = ?, kind = ?, parent_id = ?, updated_at = ? WHERE app_id = ? AND id = ?`,
			in.Name, in.Kind, in.Parent, now, appID, id); err != nil {
			return fmt.Errorf("update group %s: %w", id, err)
		}
		g.Name, g.Kind, g.Parent, g.UpdatedAt = in.Name, in.Kind, in.Parent, ms(now)
		return nil
	})
	return g, err
}

// DeleteGroup removes a group and its memberships. A group that still has
// subgroups is ErrGroupHasChildren.
func (s *Service) DeleteGroup(ctx context.Context, appID, id string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM profile_groups WHERE app_id = ? AND id = ?`+s.forUpdate(), appID, id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return contracts.ErrGroupNotFound
		}
		if err != nil {
			return fmt.Errorf("delete group %s: %w", id, err)
		}
		var child string
		err = tx.QueryRowContext(ctx, `SELECT id FROM profile_groups WHERE app_id = ? AND parent_id = ? LIMIT 1`+s.forUpdate(), appID, id).Scan(&child)
		if err == nil {
			return fmt.Errorf("%w: %q is a subgroup of %q; delete or move it first", ErrGroupHasChildren, child, id)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("delete group %s: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM profile_group_members WHERE app_id = ? AND group_id = ?`, appID, id); err != nil {
			return fmt.Errorf("delete group %s members: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM profile_groups WHERE app_id = ? AND id = ?`, appID, id); err != nil {
			return fmt.Errorf("delete group %s: %w", id, err)
		}
		return nil
	})
}

// GroupFilter narrows ListGroups.
type GroupFilter struct {
	// Kind keeps only "group" or "module" when set.
	Kind string
	// Parent keeps only direct subgroups of this group when set; TopLevel
	// keeps only groups without a parent.
	Parent   string
	TopLevel bool
}

// ListGroups returns up to limit groups with ids after the cursor, in id order.
func (s *Service) ListGroups(ctx context.Context, appID string, f GroupFilter, limit int, after string) ([]Group, string, error) {
	limit = clampLimit(limit)
	q := `SELECT ` + groupCols + ` FROM profile_groups WHERE app_id = ? AND id > ?`
	args := []any{appID, after}
	if f.Kind != "" {
		q += ` AND kind = ?`
		args = append(args, f.Kind)
	}
	if f.Parent != "" || f.TopLevel {
		q += ` AND parent_id = ?`
		args = append(args, f.Parent)
	}
	q += ` ORDER BY id LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list groups: %w", err)
	}
	defer rows.Close()
	out := make([]Group, 0, limit)
	for rows.Next() {
		g, err := scanGroup(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list groups: %w", err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list groups: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// AddMembers adds users to a group (already-present members are skipped) and
// returns how many were new. Unknown users are a *httpx.Problem naming
// user_ids[i]; an unknown group is contracts.ErrGroupNotFound.
func (s *Service) AddMembers(ctx context.Context, appID, groupID string, userIDs []string) (int, error) {
	var fe fieldErrs
	if len(userIDs) == 0 {
		fe.add("user_ids", "must have at least 1 item")
	} else if len(userIDs) > MaxMembersPerCall {
		fe.add("user_ids", "must have at most %d items", MaxMembersPerCall)
	}
	for i, u := range userIDs {
		if !ValidID(u) {
			fe.add("user_ids["+strconv.Itoa(i)+"]", idReason)
		}
	}
	if len(fe) > 0 {
		return 0, fe.problem()
	}
	added := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		added = 0
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM profile_groups WHERE app_id = ? AND id = ?`+s.shareLock(), appID, groupID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return contracts.ErrGroupNotFound
		}
		if err != nil {
			return fmt.Errorf("add members to %s: %w", groupID, err)
		}
		found, err := existing(ctx, tx, "profile_users", appID, userIDs, s.shareLock())
		if err != nil {
			return fmt.Errorf("add members to %s: %w", groupID, err)
		}
		var fe fieldErrs
		for i, u := range userIDs {
			if !found[u] {
				fe.add("user_ids["+strconv.Itoa(i)+"]", "unknown user %q", u)
			}
		}
		if len(fe) > 0 {
			return fe.problem()
		}
		for start := 0; start < len(userIDs); start += 500 {
			chunk := userIDs[start:min(len(userIDs), start+500)]
			args := make([]any, 0, 3*len(chunk))
			for _, u := range chunk {
				args = append(args, appID, groupID, u)
			}
			res, err := tx.ExecContext(ctx, s.db.InsertIgnore()+` INTO profile_group_members (app_id, group_id, user_id) VALUES `+rowsOf(3, len(chunk)), args...)
			if err != nil {
				return fmt.Errorf("add members to %s: %w", groupID, err)
			}
			n, _ := res.RowsAffected()
			added += int(n)
		}
		return nil
	})
	return added, err
}

// RemoveMember removes a user from a group's direct members (a no-op when
// they are not one). An unknown group is contracts.ErrGroupNotFound.
func (s *Service) RemoveMember(ctx context.Context, appID, groupID, userID string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM profile_groups WHERE app_id = ? AND id = ?`, appID, groupID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return contracts.ErrGroupNotFound
		}
		if err != nil {
			return fmt.Errorf("remove member from %s: %w", groupID, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM profile_group_members WHERE app_id = ? AND group_id = ? AND user_id = ?`, appID, groupID, userID); err != nil {
			return fmt.Errorf("remove member from %s: %w", groupID, err)
		}
		return nil
	})
}

// ListMembers returns up to limit members of a group in user id order after
// the cursor: direct members, or with nested every member of the group and
// its subgroups (each once).
func (s *Service) ListMembers(ctx context.Context, appID, groupID string, nested bool, limit int, after string) ([]User, string, error) {
	limit = clampLimit(limit)
	groups := []string{groupID}
	if nested {
		var err error
		if groups, err = s.descendants(ctx, appID, groupID); err != nil {
			return nil, "", err
		}
	} else if _, err := s.GetGroup(ctx, appID, groupID); err != nil {
		return nil, "", err
	}
	st := s.newMemberStream(appID, groups, limit+1, after, true)
	rows, err := st.next(ctx, limit+1)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = rows[limit-1].id
	}
	users := make([]User, len(rows))
	for i := range rows {
		users[i] = rows[i].user()
	}
	if err := s.attachGroups(ctx, appID, users); err != nil {
		return nil, "", err
	}
	return users, next, nil
}

// rowsOf returns "(?, ?), (?, ?)" for n rows of cols values.
func rowsOf(cols, n int) string {
	one := "(" + sqldb.Placeholders(cols) + ")"
	b := make([]byte, 0, n*(len(one)+2))
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, one...)
	}
	return string(b)
}

package profilesvc

import (
	"container/heap"
	"context"
	"fmt"
	"strings"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/sqldb"
)

// Profiles implements contracts.Directory: it loads the given users of an app
// (unknown ids are absent from the map) through the profile cache, reading
// misses with batched IN queries. The returned profiles are shared with the
// cache: callers must not modify them.
func (s *Service) Profiles(ctx context.Context, appID string, userIDs []string) (map[string]*contracts.Profile, error) {
	out := make(map[string]*contracts.Profile, len(userIDs))
	now := time.Now().UnixNano()
	var miss []string
	seen := make(map[string]bool, len(userIDs))
	for _, id := range userIDs {
		if seen[id] {
			continue
		}
		seen[id] = true
		if p, ok := s.cache.get(appID, id, now); ok {
			if p != nil {
				out[id] = p
			}
			continue
		}
		miss = append(miss, id)
	}
	if len(miss) == 0 {
		return out, nil
	}
	gens := s.cache.generations()
	for start := 0; start < len(miss); start += 500 {
		chunk := miss[start:min(len(miss), start+500)]
		args := make([]any, 0, len(chunk)+1)
		args = append(args, appID)
		for _, id := range chunk {
			args = append(args, id)
		}
		rows, err := s.db.R.QueryContext(ctx, `SELECT `+s.packedCols("")+` FROM profile_users WHERE app_id = ? AND id IN (`+sqldb.Placeholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("load profiles: %w", err)
		}
		got := make([]*contracts.Profile, 0, len(chunk))
		var withPrefs []string
		for rows.Next() {
			var r userRow
			if err := r.scanPacked(rows); err != nil {
				rows.Close()
				return nil, fmt.Errorf("load profiles: %w", err)
			}
			p := r.profile()
			got = append(got, p)
			if r.hasPrefs != 0 {
				withPrefs = append(withPrefs, r.id)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("load profiles: %w", err)
		}
		if err := s.attachPrefs(ctx, appID, got, withPrefs); err != nil {
			return nil, err
		}
		for _, p := range got {
			out[p.UserID] = p
		}
	}
	now = time.Now().UnixNano()
	for _, id := range miss {
		s.cache.put(appID, id, out[id], &gens, now)
	}
	return out, nil
}

// attachPrefs loads preferences and unsubscribes of the listed users (those
// flagged has_prefs) into their profiles.
func (s *Service) attachPrefs(ctx context.Context, appID string, profiles []*contracts.Profile, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	byID := make(map[string]*contracts.Profile, len(ids))
	for _, p := range profiles {
		byID[p.UserID] = p
	}
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(len(ids), start+500)]
		args := make([]any, 0, len(chunk)+1)
		args = append(args, appID)
		for _, id := range chunk {
			args = append(args, id)
		}
		in := `(` + sqldb.Placeholders(len(chunk)) + `)`
		rows, err := s.db.R.QueryContext(ctx, `SELECT user_id, category, channel, allowed FROM profile_prefs WHERE app_id = ? AND user_id IN `+in, args...)
		if err != nil {
			return fmt.Errorf("load preferences: %w", err)
		}
		for rows.Next() {
			var uid, cat, ch string
			var allowed int
			if err := rows.Scan(&uid, &cat, &ch, &allowed); err != nil {
				rows.Close()
				return fmt.Errorf("load preferences: %w", err)
			}
			if p := byID[uid]; p != nil {
				applyPref(p, prefRow{cat, ch, allowed != 0})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("load preferences: %w", err)
		}
		rows, err = s.db.R.QueryContext(ctx, `SELECT user_id, category FROM profile_unsubscribes WHERE app_id = ? AND user_id IN `+in, args...)
		if err != nil {
			return fmt.Errorf("load unsubscribes: %w", err)
		}
		for rows.Next() {
			var uid, cat string
			if err := rows.Scan(&uid, &cat); err != nil {
				rows.Close()
				return fmt.Errorf("load unsubscribes: %w", err)
			}
			if p := byID[uid]; p != nil {
				if p.Unsubscribed == nil {
					p.Unsubscribed = map[string]bool{}
				}
				p.Unsubscribed[cat] = true
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("load unsubscribes: %w", err)
		}
	}
	return nil
}

// applyPref maps a stored preference onto the profile: channel defaults
// (category "*") and per-category choices; false is an opt-out, true an
// explicit opt-in (which overrides a channel default for that category).
func applyPref(p *contracts.Profile, r prefRow) {
	m := &p.OptOut
	if r.allowed {
		m = &p.OptIn
	}
	if *m == nil {
		*m = map[string]map[domain.Channel]bool{}
	}
	if (*m)[r.category] == nil {
		(*m)[r.category] = map[domain.Channel]bool{}
	}
	(*m)[r.category][domain.Channel(r.channel)] = true
}

// GroupMembers implements contracts.Directory: it streams the members of the
// group and of all its subgroups, each user once, in user id order, as
// batches of at most batch full profiles. Memory stays bounded by the batch
// and the number of subgroups: every group is read with keyset pagination
// and the sorted streams are merged. It does not go through the profile
// cache (a large audience would flush it).
func (s *Service) GroupMembers(ctx context.Context, appID, groupID string, batch int, fn func([]*contracts.Profile) error) error {
	if batch <= 0 {
		batch = 1000
	}
	groups, err := s.descendants(ctx, appID, groupID)
	if err != nil {
		return err
	}
	st := s.newMemberStream(appID, groups, batch, "", false)
	for {
		rows, err := st.next(ctx, batch)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		profiles := make([]*contracts.Profile, len(rows))
		var withPrefs []string
		for i := range rows {
			profiles[i] = rows[i].profile()
			if rows[i].hasPrefs != 0 {
				withPrefs = append(withPrefs, rows[i].id)
			}
		}
		if err := s.attachPrefs(ctx, appID, profiles, withPrefs); err != nil {
			return err
		}
		if err := fn(profiles); err != nil {
			return err
		}
		if len(rows) < batch {
			return nil
		}
	}
}

// descendants returns groupID and the ids of all its subgroups (breadth
// first), or contracts.ErrGroupNotFound.
func (s *Service) descendants(ctx context.Context, appID, groupID string) ([]string, error) {
	if _, err := s.GetGroup(ctx, appID, groupID); err != nil {
		return nil, err
	}
	out := []string{groupID}
	seen := map[string]bool{groupID: true}
	frontier := []string{groupID}
	for len(frontier) > 0 {
		var next []string
		for start := 0; start < len(frontier); start += 500 {
			chunk := frontier[start:min(len(frontier), start+500)]
			args := make([]any, 0, len(chunk)+1)
			args = append(args, appID)
			for _, g := range chunk {
				args = append(args, g)
			}
			rows, err := s.db.R.QueryContext(ctx, `SELECT id FROM profile_groups WHERE app_id = ? AND parent_id IN (`+sqldb.Placeholders(len(chunk))+`)`, args...)
			if err != nil {
				return nil, fmt.Errorf("subgroups of %s: %w", groupID, err)
			}
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return nil, fmt.Errorf("subgroups of %s: %w", groupID, err)
				}
				if !seen[id] { // cycles are rejected on write; this guards reads anyway
					seen[id] = true
					out = append(out, id)
					next = append(next, id)
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, fmt.Errorf("subgroups of %s: %w", groupID, err)
			}
		}
		frontier = next
	}
	return out, nil
}

// memberStream merges the sorted member lists of several groups, each read
// in keyset-paginated chunks joined with the user rows, into one sorted,
// de-duplicated stream.
type memberStream struct {
	s       *Service
	appID   string
	chunk   int
	pending []*groupCursor // cursors not yet filled
	h       cursorHeap
	last    string // last emitted user id
	// idsOnly merges bare member ids (several groups: a user in two of them
	// is read twice, so only the cheap covering-index rows are) and loads
	// the distinct users afterwards; a single group joins the user rows directly.
	idsOnly bool
	full    bool
	cols    string // the user columns selected, prefixed "u."
}

type groupCursor struct {
	groupID string
	after   string
	buf     []userRow
	pos     int
	done    bool
}

const memberStreamBudget = 100_000 // rows buffered across all cursors at most

// newMemberStream merges the members of groups after the cursor; full rows
// (with timestamps) are for listings, packed ones for profiles.
func (s *Service) newMemberStream(appID string, groups []string, batch int, after string, full bool) *memberStream {
	chunk := max(batch, 64)
	if len(groups)*chunk > memberStreamBudget {
		chunk = max(32, memberStreamBudget/len(groups))
	}
	st := &memberStream{s: s, appID: appID, chunk: chunk, last: after, idsOnly: len(groups) > 1, full: full}
	if full {
		st.cols = "u." + strings.ReplaceAll(userCols, ", ", ", u.")
	} else {
		st.cols = s.packedCols("u.")
	}
	for _, g := range groups {
		st.pending = append(st.pending, &groupCursor{groupID: g, after: after})
	}
	return st
}

const memberIDQuery = `SELECT user_id FROM profile_group_members WHERE app_id = ? AND group_id = ? AND user_id > ? ORDER BY user_id LIMIT ?`

// fill reads the cursor's next chunk; it reports whether rows are buffered.
func (st *memberStream) fill(ctx context.Context, c *groupCursor) (bool, error) {
	if c.done {
		return false, nil
	}
	q := memberIDQuery
	if !st.idsOnly {
		q = `SELECT ` + st.cols + ` FROM profile_group_members m JOIN profile_users u ON u.app_id = m.app_id AND u.id = m.user_id
			WHERE m.app_id = ? AND m.group_id = ? AND m.user_id > ? ORDER BY m.user_id LIMIT ?`
	}
	rows, err := st.s.db.R.QueryContext(ctx, q, st.appID, c.groupID, c.after, st.chunk)
	if err != nil {
		return false, fmt.Errorf("members of %s: %w", c.groupID, err)
	}
	defer rows.Close()
	c.buf = c.buf[:0]
	c.pos = 0
	for rows.Next() {
		var r userRow
		switch {
		case st.idsOnly:
			err = rows.Scan(&r.id)
		case st.full:
			err = rows.Scan(r.dest()...)
		default:
			err = r.scanPacked(rows)
		}
		if err != nil {
			return false, fmt.Errorf("members of %s: %w", c.groupID, err)
		}
		c.buf = append(c.buf, r)
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("members of %s: %w", c.groupID, err)
	}
	if len(c.buf) < st.chunk {
		c.done = true
	}
	if len(c.buf) > 0 {
		c.after = c.buf[len(c.buf)-1].id
		return true, nil
	}
	return false, nil
}

// next returns up to n distinct member rows after the last one returned;
// fewer only at the end of the stream.
func (st *memberStream) next(ctx context.Context, n int) ([]userRow, error) {
	if !st.idsOnly {
		return st.merge(ctx, n)
	}
	var out []userRow
	for len(out) < n {
		ids, err := st.merge(ctx, n-len(out))
		if err != nil || len(ids) == 0 {
			return out, err
		}
		full, err := st.hydrate(ctx, ids)
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = full
		} else {
			out = append(out, full...)
		}
	}
	return out, nil
}

// merge returns up to n distinct rows from the merged cursors.
func (st *memberStream) merge(ctx context.Context, n int) ([]userRow, error) {
	for _, c := range st.pending {
		ok, err := st.fill(ctx, c)
		if err != nil {
			return nil, err
		}
		if ok {
			heap.Push(&st.h, c)
		}
	}
	st.pending = nil
	out := make([]userRow, 0, min(n, 4096))
	for len(out) < n && st.h.Len() > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c := st.h[0]
		r := c.buf[c.pos]
		if r.id > st.last {
			out = append(out, r)
			st.last = r.id
		}
		c.pos++
		if c.pos < len(c.buf) {
			heap.Fix(&st.h, 0)
			continue
		}
		ok, err := st.fill(ctx, c)
		if err != nil {
			return nil, err
		}
		if ok {
			heap.Fix(&st.h, 0)
		} else {
			heap.Pop(&st.h)
		}
	}
	return out, nil
}

// hydrate replaces bare ids (sorted) with full user rows, in the same order;
// users deleted meanwhile drop out.
func (st *memberStream) hydrate(ctx context.Context, ids []userRow) ([]userRow, error) {
	full := make([]userRow, 0, len(ids))
	for start := 0; start < len(ids); start += 1000 {
		chunk := ids[start:min(len(ids), start+1000)]
		args := make([]any, 0, len(chunk)+1)
		args = append(args, st.appID)
		for _, r := range chunk {
			args = append(args, r.id)
		}
		rows, err := st.s.db.R.QueryContext(ctx, `SELECT `+st.cols+` FROM profile_users u WHERE u.app_id = ? AND u.id IN (`+
			sqldb.Placeholders(len(chunk))+`) ORDER BY u.id`, args...)
		if err != nil {
			return nil, fmt.Errorf("load members: %w", err)
		}
		for rows.Next() {
			var r userRow
			if st.full {
				err = rows.Scan(r.dest()...)
			} else {
				err = r.scanPacked(rows)
			}
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("load members: %w", err)
			}
			full = append(full, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("load members: %w", err)
		}
	}
	return full, nil
}

type cursorHeap []*groupCursor

func (h cursorHeap) Len() int           { return len(h) }
func (h cursorHeap) Less(i, j int) bool { return h[i].buf[h[i].pos].id < h[j].buf[h[j].pos].id }
func (h cursorHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *cursorHeap) Push(x any)        { *h = append(*h, x.(*groupCursor)) }
func (h *cursorHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

package profilesvc_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	profilesvc "herald.dev/profile-svc"

	"herald.dev/platform/auth"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
)

var sources = []sqldb.Source{auth.Migrations, profilesvc.Migrations}

func each(t *testing.T, fn func(t *testing.T, db *sqldb.DB, s *profilesvc.Service)) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		fn(t, db, profilesvc.New(db, profilesvc.Options{}))
	}, sources...)
}

var ctx = context.Background()

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fieldOf returns the first field a validation problem names ("" if err is not one).
func fieldOf(err error) string {
	var p *httpx.Problem
	if errors.As(err, &p) && len(p.Errors) > 0 {
		return p.Errors[0].Field
	}
	return ""
}

func count(t testing.TB, db *sqldb.DB, q string, args ...any) int {
	t.Helper()
	var n int
	must(t, db.W.QueryRowContext(ctx, q, args...).Scan(&n))
	return n
}

func TestUsersCRUD(t *testing.T) {
	each(t, func(t *testing.T, db *sqldb.DB, s *profilesvc.Service) {
		_, err := s.CreateGroup(ctx, "app1", profilesvc.GroupInput{ID: "ops"})
		must(t, err)
		_, err = s.CreateGroup(ctx, "app1", profilesvc.GroupInput{ID: "dev", Kind: "module"})
		must(t, err)
		in := profilesvc.UserInput{ID: "u.1@corp:x-y", Name: "Li Lei", Email: "li@example.com", Phone: "+8613800138000",
			Locale: "zh-CN", Timezone: "Asia/Shanghai", Identities: profilesvc.Identities{WeChat: "oWx1", QQ: "12345"},
			Groups: []string{"ops", "dev"}, WebhookURL: "https://hooks.example.com/li"}
		u, created, err := s.PutUser(ctx, "app1", in)
		must(t, err)
		if !created || u.ID != in.ID || strings.Join(u.Groups, ",") != "dev,ops" {
			t.Fatalf("put: created=%v %+v", created, u)
		}
		got, err := s.GetUser(ctx, "app1", in.ID)
		must(t, err)
		if got.Email != in.Email || got.Identities != in.Identities || got.Timezone != "Asia/Shanghai" ||
			strings.Join(got.Groups, ",") != "dev,ops" || got.WebhookURL != in.WebhookURL {
			t.Fatalf("get: %+v", got)
		}
		// replace without "groups": memberships kept, fields replaced
		u, created, err = s.PutUser(ctx, "app1", profilesvc.UserInput{ID: in.ID, Name: "Lei"})
		must(t, err)
		if created || u.Email != "" || strings.Join(u.Groups, ",") != "dev,ops" || !u.CreatedAt.Equal(got.CreatedAt) {
			t.Fatalf("replace: created=%v %+v", created, u)
		}
		// an empty list clears them
		u, _, err = s.PutUser(ctx, "app1", profilesvc.UserInput{ID: in.ID, Groups: []string{}})
		must(t, err)
		if len(u.Groups) != 0 || count(t, db, `SELECT COUNT(*) FROM profile_group_members`) != 0 {
			t.Fatalf("groups not cleared: %+v", u)
		}
		// tenancy: another app sees nothing
		if _, err := s.GetUser(ctx, "app2", in.ID); !errors.Is(err, contracts.ErrUserNotFound) {
			t.Fatalf("other app get: %v", err)
		}
		if err := s.DeleteUser(ctx, "app2", in.ID); !errors.Is(err, contracts.ErrUserNotFound) {
			t.Fatalf("other app delete: %v", err)
		}
		// delete removes memberships and preferences too
		_, _, err = s.PutUser(ctx, "app1", profilesvc.UserInput{ID: in.ID, Groups: []string{"ops"}})
		must(t, err)
		_, err = s.PutPreferences(ctx, "app1", in.ID, profilesvc.Preferences{Channels: map[string]bool{"sms": false}, Unsubscribed: []string{"marketing"}})
		must(t, err)
		must(t, s.DeleteUser(ctx, "app1", in.ID))
		for _, tbl := range []string{"profile_users", "profile_group_members", "profile_prefs", "profile_unsubscribes"} {
			if n := count(t, db, `SELECT COUNT(*) FROM `+tbl); n != 0 {
				t.Fatalf("%s has %d rows after delete", tbl, n)
			}
		}
		if err := s.DeleteUser(ctx, "app1", in.ID); !errors.Is(err, contracts.ErrUserNotFound) {
			t.Fatalf("second delete: %v", err)
		}
	})
}

func TestListUsersPagination(t *testing.T) {
	each(t, func(t *testing.T, db *sqldb.DB, s *profilesvc.Service) {
		for i := 0; i < 7; i++ {
			_, _, err := s.PutUser(ctx, "a", profilesvc.UserInput{ID: fmt.Sprintf("u%02d", i)})
			must(t, err)
		}
		_, _, err := s.PutUser(ctx, "b", profilesvc.UserInput{ID: "other"})
		must(t, err)
		var all []string
		after := ""
		pages := 0
		for {
			users, next, err := s.ListUsers(ctx, "a", 3, after)
			must(t, err)
			pages++
			for _, u := range users {
				all = append(all, u.ID)
			}
			if next == "" {
				break
			}
			after = next
		}
		if strings.Join(all, ",") != "u00,u01,u02,u03,u04,u05,u06" || pages != 3 {
			t.Fatalf("pages=%d ids=%v", pages, all)
		}
	})
}

func TestUserValidation(t *testing.T) {
	each(t, func(t *testing.T, db *sqldb.DB, s *profilesvc.Service) {
		_, err := s.CreateGroup(ctx, "a", profilesvc.GroupInput{ID: "g1"})
		must(t, err)
		cases := []struct {
			name  string
			in    profilesvc.UserInput
			field string
		}{
			{"bad id", profilesvc.UserInput{ID: "has space"}, "id"},
			{"long id", profilesvc.UserInput{ID: strings.Repeat("x", 129)}, "id"},
			{"email", profilesvc.UserInput{ID: "u", Email: "not-an-email"}, "email"},
			{"phone no plus", profilesvc.UserInput{ID: "u", Phone: "8613800138000"}, "phone"},
			{"phone letters", profilesvc.UserInput{ID: "u", Phone: "+86138abc"}, "phone"},
			{"timezone", profilesvc.UserInput{ID: "u", Timezone: "Mars/Olympus"}, "timezone"},
			{"timezone Local", profilesvc.UserInput{ID: "u", Timezone: "Local"}, "timezone"},
			{"locale", profilesvc.UserInput{ID: "u", Locale: "not a locale"}, "locale"},
			{"webhook scheme", profilesvc.UserInput{ID: "u", WebhookURL: "ftp://x.example.com/"}, "webhook_url"},
			{"webhook relative", profilesvc.UserInput{ID: "u", WebhookURL: "/hook"}, "webhook_url"},
			{"identity too long", profilesvc.UserInput{ID: "u", Identities: profilesvc.Identities{DingTalk: strings.Repeat("d", 129)}}, "identities.dingtalk"},
			{"unknown group", profilesvc.UserInput{ID: "u", Groups: []string{"g1", "nope"}}, "groups[1]"},
			{"duplicate group", profilesvc.UserInput{ID: "u", Groups: []string{"g1", "g1"}}, "groups[1]"},
		}
		for _, tc := range cases {
			_, _, err := s.PutUser(ctx, "a", tc.in)
			if got := fieldOf(err); got != tc.field {
				t.Errorf("%s: field %q, want %q (err %v)", tc.name, got, tc.field, err)
			}
		}
		// a group of another app is unknown here
		_, err = s.CreateGroup(ctx, "b", profilesvc.GroupInput{ID: "bg"})
		must(t, err)
		if _, _, err := s.PutUser(ctx, "a", profilesvc.UserInput{ID: "u", Groups: []string{"bg"}}); fieldOf(err) != "groups[0]" {
			t.Fatalf("other app's group: %v", err)
		}
		if n := count(t, db, `SELECT COUNT(*) FROM profile_users`); n != 0 {
			t.Fatalf("invalid puts wrote %d users", n)
		}
		// valid edge values
		for _, in := range []profilesvc.UserInput{
			{ID: "ok1", Timezone: "UTC", Locale: "en", Phone: "+12025550123"},
			{ID: "ok2", Timezone: "America/New_York", Locale: "zh-Hans-CN", WebhookURL: "http://127.0.0.1:8080/x"},
		} {
			_, _, err := s.PutUser(ctx, "a", in)
			must(t, err)
		}
	})
}

func TestGroupsAndCycles(t *testing.T) {
	each(t, func(t *testing.T, db *sqldb.DB, s *profilesvc.Service) {
		mk := func(id, parent string) error {
			_, err := s.CreateGroup(ctx, "a", profilesvc.GroupInput{ID: id, Name: strings.ToUpper(id), Parent: parent})
			return err
		}
		must(t, mk("root", ""))
		must(t, mk("mid", "root"))
		must(t, mk("leaf", "mid"))
		if err := mk("root", ""); !errors.Is(err, profilesvc.ErrGroupExists) {
			t.Fatalf("duplicate: %v", err)
		}
		if err := mk("x", "nope"); fieldOf(err) != "parent" {
			t.Fatalf("unknown parent: %v", err)
		}
		if err := mk("x", "x"); fieldOf(err) != "parent" {
			t.Fatalf("self parent: %v", err)
		}
		if _, err := s.CreateGroup(ctx, "a", profilesvc.GroupInput{ID: "y", Kind: "team"}); fieldOf(err) != "kind" {
			t.Fatalf("bad kind: %v", err)
		}
		// root under leaf would be a cycle, as would mid under leaf
		for _, id := range []string{"root", "mid"} {
			if _, err := s.UpdateGroup(ctx, "a", id, profilesvc.GroupInput{Parent: "leaf"}); fieldOf(err) != "parent" {
				t.Fatalf("cycle %s under leaf: %v", id, err)
			}
		}
		g, err := s.GetGroup(ctx, "a", "root")
		must(t, err)
		if g.Parent != "" || g.Name != "ROOT" {
			t.Fatalf("root changed: %+v", g)
		}
		// a legal move, and kind change
		g, err = s.UpdateGroup(ctx, "a", "leaf", profilesvc.GroupInput{Name: "Leaf", Kind: "module", Parent: "root"})
		must(t, err)
		if g.Parent != "root" || g.Kind != "module" {
			t.Fatalf("update: %+v", g)
		}
		if _, err := s.UpdateGroup(ctx, "b", "leaf", profilesvc.GroupInput{}); !errors.Is(err, contracts.ErrGroupNotFound) {
			t.Fatalf("other app update: %v", err)
		}
		// list filters
		mods, _, err := s.ListGroups(ctx, "a", profilesvc.GroupFilter{Kind: "module"}, 10, "")
		must(t, err)
		kids, _, err := s.ListGroups(ctx, "a", profilesvc.GroupFilter{Parent: "root"}, 10, "")
		must(t, err)
		top, _, err := s.ListGroups(ctx, "a", profilesvc.GroupFilter{TopLevel: true}, 10, "")
		must(t, err)
		if len(mods) != 1 || len(kids) != 2 || len(top) != 1 || top[0].ID != "root" {
			t.Fatalf("filters: mods=%v kids=%v top=%v", mods, kids, top)
		}
		// delete: not while it has subgroups; memberships go with it
		if err := s.DeleteGroup(ctx, "a", "root"); !errors.Is(err, profilesvc.ErrGroupHasChildren) {
			t.Fatalf("delete parent: %v", err)
		}
		_, _, err = s.PutUser(ctx, "a", profilesvc.UserInput{ID: "u1", Groups: []string{"mid"}})
		must(t, err)
		must(t, s.DeleteGroup(ctx, "a", "mid"))
		if n := count(t, db, `SELECT COUNT(*) FROM profile_group_members`); n != 0 {
			t.Fatalf("memberships left: %d", n)
		}
		if err := s.DeleteGroup(ctx, "a", "mid"); !errors.Is(err, contracts.ErrGroupNotFound) {
			t.Fatalf("delete twice: %v", err)
		}
	})
}

// TestConcurrentMovesNoCycle races opposite moves (x under y, y under x):
// at most one may win.
func TestConcurrentMovesNoCycle(t *testing.T) {
	each(t, func(t *testing.T, db *sqldb.DB, s *profilesvc.Service) {
		for round := 0; round < 10; round++ {
			x, y := fmt.Sprintf("x%d", round), fmt.Sprintf("y%d", round)
			for _, g := range []string{x, y} {
				_, err := s.CreateGroup(ctx, "a", profilesvc.GroupInput{ID: g})
				must(t, err)
			}
			errs := make(chan error, 2)
			go func() { _, err := s.UpdateGroup(ctx, "a", x, profilesvc.GroupInput{Parent: y}); errs <- err }()
			go func() { _, err := s.UpdateGroup(ctx, "a", y, profilesvc.GroupInput{Parent: x}); errs <- err }()
			e1, e2 := <-errs, <-errs
			if e1 == nil && e2 == nil {
				t.Fatalf("round %d: both moves succeeded: a cycle", round)
			}
			for _, e := range []error{e1, e2} {
				if e != nil && fieldOf(e) != "parent" {
					t.Fatalf("round %d: unexpected error %v", round, e)
				}
			}
		}
	})
}

func TestMembers(t *testing.T) {
	each(t, func(t *testing.T, db *sqldb.DB, s *profilesvc.Service) {
		_, err := s.CreateGroup(ctx, "a", profilesvc.GroupInput{ID: "g"})
		must(t, err)
		for _, u := range []string{"u1", "u2", "u3"} {
			_, _, err := s.PutUser(ctx, "a", profilesvc.UserInput{ID: u})
			must(t, err)
		}
		_, _, err = s.PutUser(ctx, "b", profilesvc.UserInput{ID: "bu"})
		must(t, err)
		n, err := s.AddMembers(ctx, "a", "g", []string{"u1", "u2"})
		must(t, err)
		if n != 2 {
			t.Fatalf("added %d", n)
		}
		n, err = s.AddMembers(ctx, "a", "g", []string{"u2", "u3"}) // idempotent for u2
		must(t, err)
		if n != 1 {
			t.Fatalf("added %d, want 1", n)
		}
		if _, err := s.AddMembers(ctx, "a", "g", []string{"u1", "bu"}); fieldOf(err) != "user_ids[1]" {
			t.Fatalf("other app's user: %v", err)
		}
		if _, err := s.AddMembers(ctx, "a", "g", []string{"bad id"}); fieldOf(err) != "user_ids[0]" {
			t.Fatalf("bad id: %v", err)
		}
		if _, err := s.AddMembers(ctx, "b", "g", []string{"bu"}); !errors.Is(err, contracts.ErrGroupNotFound) {
			t.Fatalf("other app's group: %v", err)
		}
		must(t, s.RemoveMember(ctx, "a", "g", "u2"))
		must(t, s.RemoveMember(ctx, "a", "g", "u2"))
		users, next, err := s.ListMembers(ctx, "a", "g", false, 1, "")
		must(t, err)
		users2, next2, err := s.ListMembers(ctx, "a", "g", false, 1, next)
		must(t, err)
		if len(users) != 1 || users[0].ID != "u1" || len(users2) != 1 || users2[0].ID != "u3" || next2 != "" {
			t.Fatalf("members: %v %q %v %q", users, next, users2, next2)
		}
		if strings.Join(users[0].Groups, ",") != "g" {
			t.Fatalf("member groups: %v", users[0].Groups)
		}
	})
}

// collect streams a group and returns the user ids in order, failing on duplicates or oversized batches.
func collect(t *testing.T, s *profilesvc.Service, app, group string, batch int) ([]string, map[string]*contracts.Profile) {
	t.Helper()
	var ids []string
	byID := map[string]*contracts.Profile{}
	err := s.GroupMembers(ctx, app, group, batch, func(ps []*contracts.Profile) error {
		if len(ps) == 0 || len(ps) > batch {
			t.Fatalf("batch of %d (max %d)", len(ps), batch)
		}
		for _, p := range ps {
			if byID[p.UserID] != nil {
				t.Fatalf("user %s streamed twice", p.UserID)
			}
			byID[p.UserID] = p
			ids = append(ids, p.UserID)
		}
		return nil
	})
	must(t, err)
	return ids, byID
}

func TestGroupMembersNested(t *testing.T) {
	each(t, func(t *testing.T, db *sqldb.DB, s *profilesvc.Service) {
		// root <- a <- a1 ; root <- b ; other (not under root)
		for _, g := range [][2]string{{"root", ""}, {"a", "root"}, {"a1", "a"}, {"b", "root"}, {"other", ""}} {
			_, err := s.CreateGroup(ctx, "app", profilesvc.GroupInput{ID: g[0], Parent: g[1]})
			must(t, err)
		}
		members := map[string][]string{
			"u01": {"root"}, "u02": {"a", "b"}, "u03": {"a1", "a", "root"}, "u04": {"b"},
			"u05": {"other"}, "u06": {"a1"}, "u07": {"b", "other"}, "u08": {}, "u09": {"a1", "b"},
		}
		for u, gs := range members {
			_, _, err := s.PutUser(ctx, "app", profilesvc.UserInput{ID: u, Email: u + "@example.com",
				Identities: profilesvc.Identities{WeCom: "wc-" + u}, Groups: gs})
			must(t, err)
		}
		_, err := s.PutPreferences(ctx, "app", "u02", profilesvc.Preferences{Channels: map[string]bool{"email": false}})
		must(t, err)
		want := "u01,u02,u03,u04,u06,u07,u09"
		for _, batch := range []int{1, 2, 3, 100} {
			ids, byID := collect(t, s, "app", "root", batch)
			if strings.Join(ids, ",") != want {
				t.Fatalf("batch %d: %v, want %s", batch, ids, want)
			}
			if p := byID["u03"]; p.Email != "u03@example.com" || p.Identities["wecom"] != "wc-u03" || p.Address(domain.ChannelWeCom) != "wc-u03" {
				t.Fatalf("profile: %+v", p)
			}
			if ok, _ := byID["u02"].Allows("x", domain.ChannelEmail); ok {
				t.Fatal("u02 preferences not attached")
			}
		}
		ids, _ := collect(t, s, "app", "a", 10)
		if strings.Join(ids, ",") != "u02,u03,u06,u09" {
			t.Fatalf("group a: %v", ids)
		}
		ids, _ = collect(t, s, "app", "a1", 10)
		if strings.Join(ids, ",") != "u03,u06,u09" {
			t.Fatalf("group a1: %v", ids)
		}
		// nested HTTP-style listing pages through the same merge
		var paged []string
		after := ""
		for {
			users, next, err := s.ListMembers(ctx, "app", "root", true, 2, after)
			must(t, err)
			for _, u := range users {
				paged = append(paged, u.ID)
			}
			if next == "" {
				break
			}
			after = next
		}
		if strings.Join(paged, ",") != want {
			t.Fatalf("paged nested: %v", paged)
		}
		// empty group, unknown group, other app's group
		_, err = s.CreateGroup(ctx, "app", profilesvc.GroupInput{ID: "empty"})
		must(t, err)
		if ids, _ := collect(t, s, "app", "empty", 10); len(ids) != 0 {
			t.Fatalf("empty: %v", ids)
		}
		for _, c := range [][2]string{{"app", "nope"}, {"app2", "root"}} {
			err := s.GroupMembers(ctx, c[0], c[1], 10, func([]*contracts.Profile) error { return nil })
			if !errors.Is(err, contracts.ErrGroupNotFound) {
				t.Fatalf("%v: %v", c, err)
			}
		}
		// the callback's error stops the stream
		stop := errors.New("stop")
		calls := 0
		err = s.GroupMembers(ctx, "app", "root", 2, func([]*contracts.Profile) error { calls++; return stop })
		if !errors.Is(err, stop) || calls != 1 {
			t.Fatalf("stop: %v after %d calls", err, calls)
		}
		// a membership whose user row is missing (written around the API) is skipped
		// without shortening batches
		_, err = db.W.ExecContext(ctx, `INSERT INTO profile_group_members (app_id, group_id, user_id) VALUES ('app', 'a1', 'u035')`)
		must(t, err)
		for _, batch := range []int{1, 2} {
			if ids, _ := collect(t, s, "app", "root", batch); strings.Join(ids, ",") != want {
				t.Fatalf("with dangling member, batch %d: %v", batch, ids)
			}
		}
		if ids, _ := collect(t, s, "app", "a1", 1); strings.Join(ids, ",") != "u03,u06,u09" {
			t.Fatalf("a1 with dangling member: %v", ids)
		}
		// deleting a user drops them from the stream
		must(t, s.DeleteUser(ctx, "app", "u03"))
		ids, _ = collect(t, s, "app", "root", 3)
		if strings.Join(ids, ",") != "u01,u02,u04,u06,u07,u09" {
			t.Fatalf("after delete: %v", ids)
		}
	})
}

func TestPreferencesSemantics(t *testing.T) {
	each(t, func(t *testing.T, db *sqldb.DB, s *profilesvc.Service) {
		_, _, err := s.PutUser(ctx, "a", profilesvc.UserInput{ID: "u", Timezone: "Asia/Shanghai", Email: "u@example.com", Phone: "+8613800138000"})
		must(t, err)
		in := profilesvc.Preferences{
			Channels:     map[string]bool{"sms": false},
			Categories:   map[string]map[string]bool{"billing": {"email": false, "sms": true}},
			Unsubscribed: []string{"marketing"},
			QuietHours:   &profilesvc.QuietWindow{Start: "22:00", End: "07:00"},
		}
		out, err := s.PutPreferences(ctx, "a", "u", in)
		must(t, err)
		got, err := s.GetPreferences(ctx, "a", "u")
		must(t, err)
		for _, p := range []profilesvc.Preferences{out, got} {
			if p.Channels["sms"] || len(p.Channels) != 1 || p.Categories["billing"]["email"] || !p.Categories["billing"]["sms"] ||
				strings.Join(p.Unsubscribed, ",") != "marketing" || p.QuietHours == nil || p.QuietHours.Start != "22:00" || p.QuietHours.End != "07:00" {
				t.Fatalf("round trip: %+v", p)
			}
		}
		ps, err := s.Profiles(ctx, "a", []string{"u", "ghost"})
		must(t, err)
		p := ps["u"]
		if p == nil || len(ps) != 1 {
			t.Fatalf("profiles: %v", ps)
		}
		checks := []struct {
			cat  string
			ch   domain.Channel
			want bool
		}{
			{"billing", domain.ChannelSMS, true},    // category opt-in beats the channel default
			{"billing", domain.ChannelEmail, false}, // category opt-out
			{"alerts", domain.ChannelSMS, false},    // channel off
			{"alerts", domain.ChannelEmail, true},
			{"marketing", domain.ChannelEmail, false}, // unsubscribed
			{"", domain.ChannelSMS, false},
		}
		for _, c := range checks {
			if ok, why := p.Allows(c.cat, c.ch); ok != c.want {
				t.Errorf("Allows(%q,%s) = %v (%s), want %v", c.cat, c.ch, ok, why, c.want)
			}
		}
		sh, _ := time.LoadLocation("Asia/Shanghai")
		at := time.Date(2025, 3, 1, 23, 30, 0, 0, sh)
		if until := p.QuietUntil(at); !until.Equal(time.Date(2025, 3, 2, 7, 0, 0, 0, sh)) {
			t.Fatalf("quiet until %v", until)
		}
		if until := p.QuietUntil(time.Date(2025, 3, 1, 12, 0, 0, 0, sh)); !until.IsZero() {
			t.Fatalf("noon is quiet until %v", until)
		}
		// unsubscribe / resubscribe are idempotent and seen at once (cache invalidation)
		must(t, s.Unsubscribe(ctx, "a", "u", "news"))
		must(t, s.Unsubscribe(ctx, "a", "u", "news"))
		ps, err = s.Profiles(ctx, "a", []string{"u"})
		must(t, err)
		if ok, _ := ps["u"].Allows("news", domain.ChannelEmail); ok {
			t.Fatal("unsubscribe not seen")
		}
		must(t, s.Resubscribe(ctx, "a", "u", "news"))
		must(t, s.Resubscribe(ctx, "a", "u", "news"))
		ps, err = s.Profiles(ctx, "a", []string{"u"})
		must(t, err)
		if ok, _ := ps["u"].Allows("news", domain.ChannelEmail); !ok {
			t.Fatal("resubscribe not seen")
		}
		// clearing everything resets the profile
		_, err = s.PutPreferences(ctx, "a", "u", profilesvc.Preferences{})
		must(t, err)
		ps, err = s.Profiles(ctx, "a", []string{"u"})
		must(t, err)
		if p := ps["u"]; p.Quiet != nil || len(p.OptOut) != 0 || len(p.Unsubscribed) != 0 {
			t.Fatalf("cleared: %+v", p)
		}
		// validation
		bad := []struct {
			p     profilesvc.Preferences
			field string
		}{
			{profilesvc.Preferences{QuietHours: &profilesvc.QuietWindow{Start: "22:00", End: "22:00"}}, "quiet_hours.end"},
			{profilesvc.Preferences{QuietHours: &profilesvc.QuietWindow{Start: "25:00", End: "07:00"}}, "quiet_hours.start"},
			{profilesvc.Preferences{QuietHours: &profilesvc.QuietWindow{Start: "22:00", End: "7"}}, "quiet_hours.end"},
			{profilesvc.Preferences{Channels: map[string]bool{"pigeon": false}}, "channels.pigeon"},
			{profilesvc.Preferences{Categories: map[string]map[string]bool{"billing": {"fax": true}}}, "categories.billing.fax"},
			{profilesvc.Preferences{Categories: map[string]map[string]bool{"*": {"sms": true}}}, "categories.*"},
			{profilesvc.Preferences{Unsubscribed: []string{"ok", "bad cat"}}, "unsubscribed[1]"},
		}
		for _, b := range bad {
			if _, err := s.PutPreferences(ctx, "a", "u", b.p); fieldOf(err) != b.field {
				t.Errorf("%+v: field %q (%v), want %q", b.p, fieldOf(err), err, b.field)
			}
		}
		if _, err := s.PutPreferences(ctx, "b", "u", profilesvc.Preferences{}); !errors.Is(err, contracts.ErrUserNotFound) {
			t.Fatalf("other app: %v", err)
		}
		if err := s.Unsubscribe(ctx, "b", "u", "x"); !errors.Is(err, contracts.ErrUserNotFound) {
			t.Fatalf("other app unsubscribe: %v", err)
		}
	})
}

func TestProfilesCacheInvalidation(t *testing.T) {
	each(t, func(t *testing.T, db *sqldb.DB, s *profilesvc.Service) {
		ps, err := s.Profiles(ctx, "a", []string{"u"})
		must(t, err)
		if len(ps) != 0 {
			t.Fatalf("%v", ps)
		}
		// the miss was cached; creating the user here invalidates it
		_, _, err = s.PutUser(ctx, "a", profilesvc.UserInput{ID: "u", Email: "one@example.com"})
		must(t, err)
		ps, err = s.Profiles(ctx, "a", []string{"u", "u"})
		must(t, err)
		if ps["u"] == nil || ps["u"].Email != "one@example.com" {
			t.Fatalf("after create: %v", ps)
		}
		_, _, err = s.PutUser(ctx, "a", profilesvc.UserInput{ID: "u", Email: "two@example.com"})
		must(t, err)
		ps, err = s.Profiles(ctx, "a", []string{"u"})
		must(t, err)
		if ps["u"].Email != "two@example.com" {
			t.Fatalf("after update: %+v", ps["u"])
		}
		// an import invalidates too
		_, err = s.ImportUsers(ctx, "a", sliceSource([]profilesvc.UserInput{{ID: "u", Email: "three@example.com"}}))
		must(t, err)
		ps, err = s.Profiles(ctx, "a", []string{"u"})
		must(t, err)
		if ps["u"].Email != "three@example.com" {
			t.Fatalf("after import: %+v", ps["u"])
		}
		must(t, s.DeleteUser(ctx, "a", "u"))
		ps, err = s.Profiles(ctx, "a", []string{"u"})
		must(t, err)
		if len(ps) != 0 {
			t.Fatalf("after delete: %v", ps)
		}
		// another instance (a second process) sees writes once its TTL lapses: with a
		// zero-length TTL it reads through every time.
		other := profilesvc.New(db, profilesvc.Options{CacheTTL: time.Nanosecond})
		_, _, err = s.PutUser(ctx, "a", profilesvc.UserInput{ID: "v", Name: "first"})
		must(t, err)
		ps, err = other.Profiles(ctx, "a", []string{"v"})
		must(t, err)
		_, _, err = s.PutUser(ctx, "a", profilesvc.UserInput{ID: "v", Name: "second"})
		must(t, err)
		ps2, err := other.Profiles(ctx, "a", []string{"v"})
		must(t, err)
		if ps["v"].Name != "first" || ps2["v"].Name != "second" {
			t.Fatalf("other instance: %q then %q", ps["v"].Name, ps2["v"].Name)
		}
		// many ids in one call (several IN batches), bounded cache
		small := profilesvc.New(db, profilesvc.Options{CacheSize: 64})
		var inputs []profilesvc.UserInput
		var ids []string
		for i := 0; i < 1200; i++ {
			id := fmt.Sprintf("m%04d", i)
			inputs = append(inputs, profilesvc.UserInput{ID: id})
			ids = append(ids, id)
		}
		_, err = s.ImportUsers(ctx, "a", sliceSource(inputs))
		must(t, err)
		ps, err = small.Profiles(ctx, "a", ids)
		must(t, err)
		if len(ps) != 1200 {
			t.Fatalf("got %d profiles", len(ps))
		}
		keys := make([]string, 0, len(ps))
		for k := range ps {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if keys[0] != "m0000" || keys[1199] != "m1199" {
			t.Fatalf("keys %s..%s", keys[0], keys[1199])
		}
	})
}

func sliceSource(in []profilesvc.UserInput) func() (profilesvc.UserInput, bool, error) {
	i := 0
	return func() (profilesvc.UserInput, bool, error) {
		if i >= len(in) {
			return profilesvc.UserInput{}, false, nil
		}
		i++
		return in[i-1], true, nil
	}
}

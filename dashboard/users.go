package dashboard

import (
	"net/url"
	"strings"

	"github.com/gofiber/fiber/v2"
)

type usersView struct {
	Lookup Field
	Items  []User
	Next   string
	First  string
	Err    *APIError
}

// users is the lookup form and the first page(s) of users; ?id= jumps to one.
func (d *Dashboard) users(r *req) error {
	c := r.c
	if id := strings.TrimSpace(c.Query("id")); id != "" {
		return c.Redirect(d.link("/users/"+url.PathEscape(id), nil), fiber.StatusSeeOther)
	}
	q := url.Values{"limit": {"50"}}
	if cur := c.Query("cursor"); cur != "" {
		q.Set("cursor", cur)
	}
	v := usersView{Lookup: Field{Name: "id", Label: "User id", Mono: true, Required: true}}
	var page Page[User]
	if v.Err = r.api.get(apiPath(q, "users"), &page); v.Err == nil {
		v.Items = page.Items
		if page.NextCursor != "" {
			v.Next = d.link("/users", url.Values{"cursor": {page.NextCursor}})
		}
	}
	if c.Query("cursor") != "" {
		v.First = d.link("/users", nil)
	}
	return r.render(statusFor(v.Err, fiber.StatusOK), "Users", "users", usersPage(v))
}

type userView struct {
	ID       string
	User     *User
	Err      *APIError
	Prefs    *Preferences
	PrefsErr *APIError
	Inbox    *Inbox
	InboxErr *APIError
	Filters  []Field
	Next     string
	First    string
}

var inboxFilters = []string{"kind", "state"}

// user shows a profile with its groups, preferences and inbox.
func (d *Dashboard) user(r *req) error {
	c := r.c
	id := param(c, "id")
	v := userView{ID: id}
	iq := url.Values{"limit": {"50"}}
	for _, n := range inboxFilters {
		if s := strings.TrimSpace(c.Query(n)); s != "" {
			iq.Set(n, s)
		}
	}
	if cur := c.Query("cursor"); cur != "" {
		iq.Set("cursor", cur)
	}
	all(func() {
		var u User
		if v.Err = r.api.get(apiPath(nil, "users", id), &u); v.Err == nil {
			v.User = &u
		}
	}, func() {
		var p Preferences
		if v.PrefsErr = r.api.get(apiPath(nil, "users", id, "preferences"), &p); v.PrefsErr == nil {
			v.Prefs = &p
		}
	}, func() {
		var in Inbox
		if v.InboxErr = r.api.get(apiPath(iq, "users", id, "inbox"), &in); v.InboxErr == nil {
			v.Inbox = &in
		}
	})
	base := "/users/" + url.PathEscape(id)
	if v.Inbox != nil && v.Inbox.NextCursor != "" {
		nq := pageQuery(c, inboxFilters)
		nq.Set("cursor", v.Inbox.NextCursor)
		v.Next = d.link(base, nq)
	}
	if c.Query("cursor") != "" {
		v.First = d.link(base, pageQuery(c, inboxFilters))
	}
	fe := newFieldErrors(inboxFilters, v.InboxErr.FieldErrors())
	v.Filters = []Field{
		{Name: "kind", Label: "Kind", Type: "select", Value: c.Query("kind"), Options: options("any", kinds), Errors: fe.get("kind")},
		{Name: "state", Label: "State", Type: "select", Value: c.Query("state"), Options: options("any", []string{"unread", "read", "pending", "done"}), Errors: fe.get("state")},
	}
	return r.render(statusFor(v.Err, fiber.StatusOK), "User "+id, "users", userPage(v))
}

package dashboard

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/domain"
)

// The choices of the filters and forms, from Herald's shared vocabulary.
var (
	messageStatuses = strs(domain.MessageAccepted, domain.MessageScheduled, domain.MessageQueued, domain.MessageProcessing,
		domain.MessageDone, domain.MessageExpired, domain.MessageCancelled)
	priorities = strs(domain.PriorityHigh, domain.PriorityMedium, domain.PriorityLow)
	kinds      = strs(domain.KindNotice, domain.KindReminder, domain.KindTodo)
	// channelNames are the channels an operator may pick: every known one
	// but the load-test channel.
	channelNames = func() []string {
		var out []string
		for _, c := range domain.KnownChannels {
			if c != domain.ChannelBench {
				out = append(out, string(c))
			}
		}
		return out
	}()
)

func strs[T ~string](vals ...T) []string {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = string(v)
	}
	return out
}

func options(any string, vals []string) []Option {
	var out []Option
	if any != "" {
		out = append(out, Option{"", any})
	}
	for _, v := range vals {
		out = append(out, Option{v, v})
	}
	return out
}

type notificationsView struct {
	Filters  []Field
	Items    []Notification
	Next     string // link to the next page, "" when none
	First    string // link to the first page when not on it
	Err      *APIError
	Summary  []errorLink
	Filtered bool
}

var filterNames = []string{"status", "priority", "channel", "category", "user_id", "from", "to"}

// notifications lists notifications with filters and cursor paging. The
// date filters take the browser's datetime-local value, read as UTC, or an
// RFC 3339 time.
func (d *Dashboard) notifications(r *req) error {
	c := r.c
	in := map[string]string{}
	for _, n := range filterNames {
		in[n] = strings.TrimSpace(c.Query(n))
	}
	fe := newFieldErrors(filterNames, nil)
	q := url.Values{"limit": {"50"}}
	for _, n := range []string{"status", "priority", "channel", "category", "user_id"} {
		if in[n] != "" {
			q.Set(n, in[n])
		}
	}
	for _, n := range []string{"from", "to"} {
		if in[n] == "" {
			continue
		}
		t, ok := parseUTCInput(in[n])
		if !ok {
			fe.add(n, "must be a date and time such as 2025-03-10T08:00 (UTC)")
			continue
		}
		q.Set(n, t.Format(time.RFC3339))
	}
	if cur := c.Query("cursor"); cur != "" {
		q.Set("cursor", cur)
	}
	v := notificationsView{}
	if !fe.any() {
		var page Page[Notification]
		if v.Err = r.api.get(apiPath(q, "notifications"), &page); v.Err == nil {
			v.Items = page.Items
			if page.NextCursor != "" {
				nq := pageQuery(c, filterNames)
				nq.Set("cursor", page.NextCursor)
				v.Next = d.link("/notifications", nq)
			}
		} else {
			fe = newFieldErrors(filterNames, v.Err.FieldErrors())
		}
	}
	if c.Query("cursor") != "" {
		v.First = d.link("/notifications", pageQuery(c, filterNames))
	}
	for _, n := range filterNames {
		if in[n] != "" {
			v.Filtered = true
		}
	}
	v.Filters = []Field{
		{Name: "status", Label: "Status", Type: "select", Value: in["status"], Options: options("any", messageStatuses)},
		{Name: "priority", Label: "Priority", Type: "select", Value: in["priority"], Options: options("any", priorities)},
		{Name: "channel", Label: "Channel", Type: "select", Value: in["channel"], Options: options("any", channelNames)},
		{Name: "category", Label: "Category", Value: in["category"]},
		{Name: "user_id", Label: "User id", Value: in["user_id"]},
		{Name: "from", Label: "From (UTC)", Type: "datetime-local", Value: localInput(in["from"])},
		{Name: "to", Label: "To (UTC)", Type: "datetime-local", Value: localInput(in["to"])},
	}
	for i := range v.Filters {
		v.Filters[i].Errors = fe.get(v.Filters[i].Name)
	}
	v.Summary = fe.summary(filterNames)
	status := fiber.StatusOK
	if v.Err != nil || fe.any() {
		status = statusFor(v.Err, fiber.StatusUnprocessableEntity)
	}
	return r.render(status, "Notifications", "notifications", notificationsPage(v))
}

// pageQuery is the current filters without the cursor.
func pageQuery(c *fiber.Ctx, names []string) url.Values {
	q := url.Values{}
	for _, n := range names {
		if v := strings.TrimSpace(c.Query(n)); v != "" {
			q.Set(n, v)
		}
	}
	return q
}

// parseUTCInput reads a datetime-local value (as UTC), a date, or RFC 3339.
func parseUTCInput(s string) (time.Time, bool) {
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, true
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), true
	}
	return time.Time{}, false
}

// localInput formats a filter value for a datetime-local control.
func localInput(s string) string {
	if t, ok := parseUTCInput(s); ok {
		return t.Format("2006-01-02T15:04")
	}
	return s
}

// statusFor is the page status for an API failure: the API's own 4xx, 502
// when the API failed or could not be reached.
func statusFor(err *APIError, def int) int {
	switch {
	case err == nil:
		return def
	case err.Status >= 400 && err.Status < 500:
		return err.Status
	default:
		return http.StatusBadGateway
	}
}

type notificationView struct {
	ID        string
	N         *Notification
	Err       *APIError
	Events    []Event
	EventsErr *APIError
	NoEvents  bool
	Failed    int
	ResendErr *APIError
}

func (d *Dashboard) loadNotification(r *req, id string) notificationView {
	v := notificationView{ID: id}
	all(func() {
		var n Notification
		if v.Err = r.api.get(apiPath(nil, "notifications", id), &n); v.Err == nil {
			v.N = &n
		}
	}, func() {
		var t Trace
		if v.EventsErr = r.api.get(apiPath(nil, "notifications", id, "events"), &t); v.EventsErr == nil {
			v.Events = t.Events
		}
	})
	if isStatus(v.EventsErr, http.StatusNotFound) {
		v.EventsErr, v.NoEvents = nil, true
	}
	if v.N != nil {
		for _, dl := range v.N.Deliveries {
			if dl.Status == "failed" {
				v.Failed++
			}
		}
	}
	return v
}

// notification shows one notification: every delivery and the event trace.
func (d *Dashboard) notification(r *req) error {
	id := param(r.c, "id")
	v := d.loadNotification(r, id)
	return r.render(statusFor(v.Err, fiber.StatusOK), "Notification "+id, "notifications", notificationPage(v))
}

// resend puts the failed deliveries back in the queue.
func (d *Dashboard) resend(r *req) error {
	id := param(r.c, "id")
	var res ResendResult
	err := r.api.do(http.MethodPost, apiPath(nil, "notifications", id, "resend"), nil, &res)
	if err == nil {
		return r.redirect("/notifications/"+url.PathEscape(id), url.Values{"flash": {"resent"}, "n": {strconv.Itoa(res.Resent)}})
	}
	v := d.loadNotification(r, id)
	v.ResendErr = err
	return r.render(statusFor(err, fiber.StatusOK), "Notification "+id, "notifications", notificationPage(v))
}

// param is a route parameter, percent-decoded and copied out of fiber's
// reusable buffer.
func param(c *fiber.Ctx, name string) string {
	raw := c.Params(name)
	if v, err := url.PathUnescape(raw); err == nil {
		return strings.Clone(v)
	}
	return strings.Clone(raw)
}

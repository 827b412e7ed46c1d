package notify

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/auth"
	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
	"herald.dev/platform/messages"
	"herald.dev/platform/queue"
)

// NotificationView is the query API's JSON form of a notification.
type NotificationView struct {
	ID              string                    `json:"id"`
	Status          domain.MessageStatus      `json:"status"`
	Priority        domain.Priority           `json:"priority"`
	Kind            domain.Kind               `json:"kind"`
	Category        string                    `json:"category"`
	Template        string                    `json:"template"`
	TemplateVersion int                       `json:"template_version"`
	Content         map[string]domain.Content `json:"content,omitempty"`
	Data            map[string]any            `json:"data"`
	Recipients      []domain.Recipient        `json:"recipients"`
	Channels        []domain.Channel          `json:"channels"`
	Fallback        []domain.Channel          `json:"fallback,omitempty"`
	TodoKey         string                    `json:"todo_key,omitempty"`
	Locale          string                    `json:"locale,omitempty"`
	Meta            map[string]string         `json:"meta,omitempty"`
	SendAt          string                    `json:"send_at,omitempty"`
	ExpiresAt       string                    `json:"expires_at,omitempty"`
	CreatedAt       string                    `json:"created_at,omitempty"`
	DispatchedAt    string                    `json:"dispatched_at,omitempty"`
	CompletedAt     string                    `json:"completed_at,omitempty"`
	DeliveriesTotal int                       `json:"deliveries_total"`
	Error           string                    `json:"error"`
	Deliveries      *[]DeliveryView           `json:"deliveries,omitempty"`
}

// DeliveryView is the JSON form of one delivery.
type DeliveryView struct {
	ID        string                `json:"id"`
	UserID    string                `json:"user_id"`
	Recipient string                `json:"recipient"`
	Channel   domain.Channel        `json:"channel"`
	Address   string                `json:"address"`
	Status    domain.DeliveryStatus `json:"status"`
	Attempts  int                   `json:"attempts"`
	Error     string                `json:"error"`
	ParentID  string                `json:"parent_id"`
	CreatedAt string                `json:"created_at,omitempty"`
	UpdatedAt string                `json:"updated_at,omitempty"`
	SentAt    string                `json:"sent_at,omitempty"`
}

// Timestamp formats t as RFC 3339 UTC with milliseconds, "" for the zero time.
func Timestamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// View converts a stored notification.
func View(n *messages.Notification) NotificationView {
	v := NotificationView{
		ID: n.ID, Status: n.Status, Priority: n.Priority, Kind: n.Kind, Category: n.Category,
		Template: n.TemplateCode, TemplateVersion: n.TemplateVersion, Content: n.Payload.Content,
		Data: n.Payload.Data, Recipients: n.Payload.Recipients, Channels: n.Payload.Channels,
		Fallback: n.Payload.Fallback, TodoKey: n.Payload.TodoKey, Locale: n.Payload.Locale, Meta: n.Payload.Meta,
		SendAt: Timestamp(n.SendAt), ExpiresAt: Timestamp(n.ExpiresAt), CreatedAt: Timestamp(n.CreatedAt),
		DispatchedAt: Timestamp(n.DispatchedAt), CompletedAt: Timestamp(n.CompletedAt),
		DeliveriesTotal: n.DeliveriesTotal, Error: n.Error,
	}
	if v.Data == nil {
		v.Data = map[string]any{}
	}
	if v.Recipients == nil {
		v.Recipients = []domain.Recipient{}
	}
	if v.Channels == nil {
		v.Channels = []domain.Channel{}
	}
	return v
}

// DeliveryViewOf converts a stored delivery.
func DeliveryViewOf(d *messages.Delivery) DeliveryView {
	return DeliveryView{
		ID: d.ID, UserID: d.UserID, Recipient: d.Recipient, Channel: d.Channel, Address: d.Address,
		Status: d.Status, Attempts: d.Attempts, Error: d.Error, ParentID: d.ParentID,
		CreatedAt: Timestamp(d.CreatedAt), UpdatedAt: Timestamp(d.UpdatedAt), SentAt: Timestamp(d.SentAt),
	}
}

func (a *API) load(c *fiber.Ctx) (*messages.Notification, error) {
	id := c.Params("id")
	if id == "" || len(id) > 64 {
		return nil, httpx.NotFound("notification", id)
	}
	n, err := a.store.Get(c.UserContext(), auth.AppID(c), id)
	if errors.Is(err, messages.ErrNotFound) {
		return nil, httpx.NotFound("notification", id)
	}
	return n, err
}

// get handles GET /v1/notifications/:id.
func (a *API) get(c *fiber.Ctx) error {
	n, err := a.load(c)
	if err != nil {
		return err
	}
	ds, err := a.store.DeliveriesOfApp(c.UserContext(), n.AppID, n.ID)
	if err != nil {
		return err
	}
	dv := make([]DeliveryView, len(ds))
	for i, d := range ds {
		dv[i] = DeliveryViewOf(d)
	}
	v := View(n)
	v.Deliveries = &dv
	return c.JSON(v)
}

// ListResponse is the answer of GET /v1/notifications.
type ListResponse struct {
	Items      []NotificationView `json:"items"`
	NextCursor string             `json:"next_cursor"`
}

var messageStatuses = []domain.MessageStatus{domain.MessageAccepted, domain.MessageScheduled, domain.MessageQueued,
	domain.MessageProcessing, domain.MessageDone, domain.MessageExpired, domain.MessageCancelled}

// parseFilter reads and checks the list query parameters; unknown
// parameters are refused so a typo does not silently widen the result.
func parseFilter(c *fiber.Ctx) (messages.Filter, *httpx.Problem) {
	var f messages.Filter
	var fe fieldErrors
	c.Context().QueryArgs().VisitAll(func(k, v []byte) {
		key, val := string(k), string(v)
		switch key {
		case "user_id":
			if len(val) > maxUserID {
				fe.add(key, fmt.Sprintf("must be at most %d characters", maxUserID))
			}
			f.UserID = val
		case "status":
			f.Status = domain.MessageStatus(val)
			ok := val == ""
			for _, s := range messageStatuses {
				ok = ok || s == f.Status
			}
			if !ok {
				fe.add(key, "must be one of: accepted, scheduled, queued, processing, done, expired, cancelled")
			}
		case "priority":
			f.Priority = domain.Priority(val)
			if val != "" && !f.Priority.Valid() {
				fe.add(key, "must be one of: high, medium, low")
			}
		case "category":
			if len(val) > maxCategory {
				fe.add(key, fmt.Sprintf("must be at most %d characters", maxCategory))
			}
			f.Category = val
		case "channel":
			f.Channel = domain.Channel(val)
			if val != "" && !f.Channel.Valid() {
				fe.add(key, fmt.Sprintf("unknown channel %q", val))
			}
		case "from", "to":
			if val == "" {
				return
			}
			t, err := parseTime(val)
			if err != nil {
				fe.add(key, "must be an RFC 3339 time such as 2030-01-02T15:04:05Z")
			}
			if key == "from" {
				f.From = t
			} else {
				f.To = t
			}
		case "limit":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > 500 {
				fe.add(key, "must be a whole number from 1 to 500")
			}
			f.Limit = n
		case "cursor":
			if len(val) > 64 {
				fe.add(key, "is not a cursor returned by this API")
			}
			f.Cursor = val
		default:
			fe.add(key, "unknown query parameter (want user_id, status, priority, category, channel, from, to, limit, cursor)")
		}
	})
	if !f.From.IsZero() && !f.To.IsZero() && !f.To.After(f.From) {
		fe.add("to", "must be after from")
	}
	return f, fe.problem()
}

// list handles GET /v1/notifications.
func (a *API) list(c *fiber.Ctx) error {
	f, p := parseFilter(c)
	if p != nil {
		return p
	}
	ns, next, err := a.store.List(c.UserContext(), auth.AppID(c), f)
	if errors.Is(err, messages.ErrNoUserIndex) {
		var fe fieldErrors
		fe.add("user_id", "filtering by user is off on this server (database.user_index: false)")
		return fe.problem()
	}
	if err != nil {
		return err
	}
	out := ListResponse{Items: make([]NotificationView, len(ns)), NextCursor: next}
	for i, n := range ns {
		out.Items[i] = View(n)
	}
	return c.JSON(out)
}

// resend handles POST /v1/notifications/:id/resend: failed deliveries go back
// to pending and the notification goes back on its lane; the outbound
// handler resumes a processing notification by dispatching its open deliveries.
func (a *API) resend(c *fiber.Ctx) error {
	n, err := a.load(c)
	if err != nil {
		return err
	}
	ds, err := a.store.ResetFailed(c.UserContext(), n.AppID, n.ID)
	if err != nil {
		return err
	}
	if len(ds) == 0 {
		return httpx.CodeConflict.New("notification %s has no failed deliveries to resend", n.ID)
	}
	if a.queue != nil {
		if err := a.queue.Publish(c.UserContext(), queue.Message{ID: n.ID, AppID: n.AppID, Priority: n.Priority}); err != nil {
			a.pubErrs.log(a.logf, "notify: publish resend of %s (left to the outbox sweeper): %v", n.ID, err)
		}
	}
	c.Status(fiber.StatusAccepted)
	return c.JSON(fiber.Map{"id": n.ID, "resent": len(ds)})
}

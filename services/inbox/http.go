package inbox

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/auth"
	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
)

// ItemView is the JSON form of an item (API answers and WebSocket frames).
type ItemView struct {
	ID             string         `json:"id"`
	NotificationID string         `json:"notification_id"`
	Kind           domain.Kind    `json:"kind"`
	Category       string         `json:"category"`
	Title          string         `json:"title"`
	Body           string         `json:"body"`
	State          string         `json:"state"`
	TodoKey        string         `json:"todo_key,omitempty"`
	Data           map[string]any `json:"data"`
	CreatedAt      string         `json:"created_at,omitempty"`
	ReadAt         string         `json:"read_at,omitempty"`
	DoneAt         string         `json:"done_at,omitempty"`
}

// View converts an item.
func View(it *Item) ItemView {
	v := ItemView{
		ID: it.ID, NotificationID: it.NotificationID, Kind: it.Kind, Category: it.Category, Title: it.Title,
		Body: it.Body, State: it.State, TodoKey: it.TodoKey, Data: it.Data,
		CreatedAt: timestamp(it.CreatedAt), ReadAt: timestamp(it.ReadAt), DoneAt: timestamp(it.DoneAt),
	}
	if v.Data == nil {
		v.Data = map[string]any{}
	}
	return v
}

func timestamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// API serves the inbox routes.
type API struct{ s *Store }

// NewAPI returns the inbox API over s.
func NewAPI(s *Store) *API { return &API{s: s} }

// Mount adds the routes to r (already under /v1 behind auth.Middleware).
func (a *API) Mount(r fiber.Router) {
	r.Get("/users/:id/inbox", a.list)
	r.Post("/users/:id/inbox/read-all", a.readAll)
	r.Post("/users/:id/inbox/:item_id/read", a.read)
	r.Post("/users/:id/inbox/:item_id/done", a.done)
	r.Post("/todos/done", a.completeTodo)
}

// UserParam returns the :id path parameter, checked.
func UserParam(c *fiber.Ctx) (string, error) {
	id := c.Params("id")
	if id == "" || len(id) > maxUserID {
		return "", httpx.Invalid("id", "the user id must be 1 to %d characters", maxUserID)
	}
	return id, nil
}

// ListResponse is the answer of GET /v1/users/{id}/inbox.
type ListResponse struct {
	Items      []ItemView `json:"items"`
	NextCursor string     `json:"next_cursor"`
	Unread     int        `json:"unread"`
	Pending    int        `json:"pending"`
}

func (a *API) list(c *fiber.Ctx) error {
	user, err := UserParam(c)
	if err != nil {
		return err
	}
	var f Filter
	var fes []httpx.FieldError
	c.Context().QueryArgs().VisitAll(func(k, v []byte) {
		key, val := string(k), string(v)
		switch key {
		case "kind":
			f.Kind = domain.Kind(val)
			if val != "" && !f.Kind.Valid() {
				fes = append(fes, httpx.FieldError{Field: key, Reason: "must be one of: notice, reminder, todo"})
			}
		case "state":
			switch val {
			case "", StateUnread, StateRead, StatePending, StateDone:
				f.State = val
			default:
				fes = append(fes, httpx.FieldError{Field: key, Reason: "must be one of: unread, read, pending, done"})
			}
		case "limit":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > 200 {
				fes = append(fes, httpx.FieldError{Field: key, Reason: "must be a whole number from 1 to 200"})
			}
			f.Limit = n
		case "cursor":
			if len(val) > maxID {
				fes = append(fes, httpx.FieldError{Field: key, Reason: "is not a cursor returned by this API"})
			}
			f.Cursor = val
		default:
			fes = append(fes, httpx.FieldError{Field: key, Reason: "unknown query parameter (want kind, state, limit, cursor)"})
		}
	})
	if len(fes) > 0 {
		return httpx.CodeValidation.Fields(fes...)
	}
	app := auth.AppID(c)
	items, next, err := a.s.List(c.UserContext(), app, user, f)
	if err != nil {
		return err
	}
	unread, pending, err := a.s.Counts(c.UserContext(), app, user)
	if err != nil {
		return err
	}
	out := ListResponse{Items: make([]ItemView, len(items)), NextCursor: next, Unread: unread, Pending: pending}
	for i, it := range items {
		out.Items[i] = View(it)
	}
	return c.JSON(out)
}

func (a *API) read(c *fiber.Ctx) error {
	return a.change(c, a.s.MarkRead, "only notices and reminders are read; complete a to-do with POST .../done")
}

func (a *API) done(c *fiber.Ctx) error {
	return a.change(c, a.s.MarkDone, "only to-dos are done; mark a notice or reminder with POST .../read")
}

func (a *API) change(c *fiber.Ctx, fn func(ctx context.Context, app, user, id string) (*Item, bool, error), wrongKind string) error {
	user, err := UserParam(c)
	if err != nil {
		return err
	}
	id := c.Params("item_id")
	if id == "" || len(id) > maxID {
		return httpx.NotFound("inbox item", id)
	}
	it, _, err := fn(c.UserContext(), auth.AppID(c), user, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return httpx.NotFound("inbox item", id)
	case errors.Is(err, ErrWrongKind):
		return httpx.CodeConflict.New("item %s is a %s: %s", id, it.Kind, wrongKind)
	case err != nil:
		return err
	}
	return c.JSON(View(it))
}

func (a *API) readAll(c *fiber.Ctx) error {
	user, err := UserParam(c)
	if err != nil {
		return err
	}
	items, err := a.s.MarkAllRead(c.UserContext(), auth.AppID(c), user)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"read": len(items)})
}

// TodoDoneRequest is the body of POST /v1/todos/done.
type TodoDoneRequest struct {
	TodoKey string `json:"todo_key" validate:"required,max=255"`
	UserID  string `json:"user_id,omitempty" validate:"omitempty,max=128"`
}

func (a *API) completeTodo(c *fiber.Ctx) error {
	var req TodoDoneRequest
	if err := httpx.Bind(c, &req); err != nil {
		return err
	}
	items, err := a.s.CompleteTodo(c.UserContext(), auth.AppID(c), req.TodoKey, req.UserID)
	if err != nil {
		return fmt.Errorf("complete to-do %q: %w", req.TodoKey, err)
	}
	return c.JSON(fiber.Map{"done": len(items)})
}

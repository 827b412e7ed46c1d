// Package notify is the simple notification API (accept: validate, check the
// template, persist to the outbox with group commit, publish to the priority
// lanes), the query API over notifications and their deliveries, and resend.
package notify

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/auth"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
	"herald.dev/platform/ids"
	"herald.dev/platform/messages"
	"herald.dev/platform/queue"
	"herald.dev/platform/sqldb"
)

// HeaderIdempotencyKey names the request header carrying the idempotency key.
const HeaderIdempotencyKey = "Idempotency-Key"

// HeaderReplayed marks an answer replayed from an earlier request with the same key.
const HeaderReplayed = "Idempotent-Replayed"

// DefaultOutboxDelay is how long an accepted notification waits before the
// outbox sweeper republishes it, should the publish to the lanes be lost.
const DefaultOutboxDelay = 30 * time.Second

// Options wire the API.
type Options struct {
	Store *messages.Store
	// Queue receives a reference to each accepted notification; nil leaves
	// every notification to the outbox sweeper.
	Queue    queue.Queue
	Renderer contracts.Renderer
	Tracker  contracts.Tracker
	Logf     func(string, ...any)
	// OutboxDelay sets next_at of immediate sends (default 30s).
	OutboxDelay time.Duration
}

// Holder is the outbound handler of this process when it consumes the
// lanes the API publishes to: it claims a notification as it is accepted,
// so its fan-out starts without a claim of its own.
type Holder interface {
	// Hold marks n, about to be accepted, as claimed by this process
	// (processing, with a lease); false leaves n unchanged.
	Hold(n *messages.Notification) bool
	// Unhold gives a held notification back when its lane message will
	// not be published: committed says whether its row was written.
	Unhold(id string, committed bool)
}

// API serves /v1/notifications.
type API struct {
	store       *messages.Store
	queue       queue.Queue
	holder      Holder
	renderer    contracts.Renderer
	tracker     contracts.Tracker
	logf        func(string, ...any)
	outboxDelay time.Duration
	pubErrs     throttle
}

// SetHolder makes immediate sends claimed at accept by h (call it before
// the API serves). h must consume the lanes of the API's queue.
func (a *API) SetHolder(h Holder) { a.holder = h }

// New returns the API.
func New(opts Options) *API {
	a := &API{store: opts.Store, queue: opts.Queue, renderer: opts.Renderer, tracker: opts.Tracker,
		logf: opts.Logf, outboxDelay: opts.OutboxDelay}
	if a.tracker == nil {
		a.tracker = contracts.NopTracker{}
	}
	if a.logf == nil {
		a.logf = func(string, ...any) {}
	}
	if a.outboxDelay <= 0 {
		a.outboxDelay = DefaultOutboxDelay
	}
	return a
}

// Mount adds the routes to r (already under /v1 behind auth.Middleware).
func (a *API) Mount(r fiber.Router) {
	r.Post("/notifications", a.Send)
	r.Get("/notifications", a.list)
	r.Get("/notifications/:id", a.get)
	r.Post("/notifications/:id/resend", a.resend)
}

// Send handles POST /v1/notifications.
func (a *API) Send(c *fiber.Ctx) error {
	appID := auth.AppID(c)
	if appID == "" {
		return httpx.CodeUnauthorized.New("send Authorization: Bearer <api key>")
	}
	if ct := c.Request().Header.ContentType(); len(ct) > 0 && !jsonContentType(ct) {
		return httpx.CodeUnsupported.New("content type %q: send application/json", ct)
	}
	var idemKey string
	if raw := c.Request().Header.Peek(HeaderIdempotencyKey); len(raw) > 0 {
		idemKey = string(raw)
		if !validIdempotencyKey(idemKey) {
			return httpx.Invalid(HeaderIdempotencyKey, "must be 1 to %d visible ASCII characters", MaxIdempotencyKey)
		}
	}
	body, err := httpx.Body(c)
	if err != nil {
		return err
	}
	var req SendRequest
	if p := decodeRequest(body, &req); p != nil {
		return p
	}
	now := time.Now()
	chk, prob := validate(&req, now)
	if prob != nil {
		return prob
	}
	ctx := c.UserContext()

	var info contracts.TemplateInfo
	if req.Template != "" {
		if a.renderer == nil {
			return httpx.CodeUnavailable.New("templates are not available on this server: send inline content")
		}
		info, err = a.renderer.Check(ctx, appID, req.Template, req.Data)
		if p := templateProblem(req.Template, err); p != nil {
			return p
		} else if err != nil {
			return err
		}
	}

	n := &messages.Notification{
		ID:              ids.New("ntf"),
		AppID:           appID,
		Status:          domain.MessageAccepted,
		Priority:        chk.priority,
		Kind:            chk.kind,
		Category:        req.Category,
		TemplateCode:    req.Template,
		TemplateVersion: info.Version,
		Payload: messages.Payload{
			Data: req.Data, Recipients: req.Recipients, Channels: chk.channels, Content: req.Content,
			TodoKey: req.TodoKey, Locale: req.Locale, Fallback: chk.fallback, Meta: req.Meta,
		},
		SendAt:    chk.sendAt,
		ExpiresAt: chk.expiresAt,
		NextAt:    now.Add(a.outboxDelay),
		CreatedAt: now,
		UpdatedAt: now,
	}
	if n.Category == "" {
		n.Category = info.Category
	}
	if chk.sendAt.After(now) {
		n.Status, n.NextAt = domain.MessageScheduled, chk.sendAt
	}
	if idemKey != "" {
		n.IdempotencyKey = idemKey
		n.RequestHash = requestHash(&req)
	}

	held := n.Status == domain.MessageAccepted && a.queue != nil && a.holder != nil && a.holder.Hold(n)
	res, err := a.store.Accept(ctx, n)
	for try := 0; try < 2 && err != nil && idemKey != "" && sqldb.IsDuplicate(err); try++ {
		// Another writer (a concurrent committer or instance) won the race
		// for this key and has committed: accepting again resolves to its row.
		res, err = a.store.Accept(ctx, n)
	}
	if held && (err != nil || res.Duplicate) {
		a.holder.Unhold(n.ID, false) // no row of n's was written
	}
	switch {
	case errors.Is(err, messages.ErrIdempotencyConflict):
		return httpx.CodeConflict.New("the Idempotency-Key %q was already used with a different request body", idemKey)
	case errors.Is(err, messages.ErrClosed):
		return httpx.CodeUnavailable.New("the server is shutting down: retry")
	case err != nil:
		return err
	}
	if res.Duplicate {
		return a.replay(c, appID, res.ID, chk.sendAt, now)
	}
	// Committed: now hand it to the lanes. A lost publish is not an error for
	// the client: the row is in the outbox with next_at set, and the sweeper
	// publishes it when next_at passes.
	status := n.Status
	if held {
		status = domain.MessageAccepted // claimed by this process, not yet dispatched
	}
	if status == domain.MessageAccepted && a.queue != nil {
		if err := a.queue.Publish(ctx, queue.Message{ID: n.ID, AppID: appID, Priority: n.Priority}); err != nil {
			if held {
				a.holder.Unhold(n.ID, true) // reconciliation publishes it again
			}
			a.pubErrs.log(a.logf, "notify: publish %s to the %s lane (left to the outbox sweeper): %v", n.ID, n.Priority, err)
		}
	}
	ev := contracts.Event{AppID: appID, NotificationID: n.ID, Category: n.Category, Priority: n.Priority, Type: contracts.EventAccepted, At: now}
	if status == domain.MessageScheduled {
		ev2 := ev
		ev2.Type = contracts.EventScheduled
		a.tracker.Track(ev, ev2)
	} else {
		a.tracker.Track(ev)
	}
	return writeAccepted(c, n.ID, status, false)
}

// replay answers a repeated request with the first answer. The body is the
// same, so send_at tells the first status, except when send_at has passed
// since: then the stored row says whether it was scheduled.
func (a *API) replay(c *fiber.Ctx, appID, id string, sendAt, now time.Time) error {
	status := domain.MessageAccepted
	switch {
	case sendAt.IsZero():
	case sendAt.After(now):
		status = domain.MessageScheduled
	default:
		first, err := a.store.Get(c.UserContext(), appID, id)
		if err == nil && first.SendAt.After(first.CreatedAt) {
			status = domain.MessageScheduled
		}
	}
	return writeAccepted(c, id, status, true)
}

func writeAccepted(c *fiber.Ctx, id string, status domain.MessageStatus, replayed bool) error {
	if replayed {
		c.Set(HeaderReplayed, "true")
	}
	c.Set(fiber.HeaderLocation, "/v1/notifications/"+id)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Status(fiber.StatusAccepted)
	b := make([]byte, 0, 32+len(id)+len(status))
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","status":"`...)
	b = append(b, status...)
	b = append(b, `"}`...)
	return c.Send(b)
}

// templateProblem maps a Renderer.Check failure to a client error (nil for
// success or for a server-side failure).
func templateProblem(code string, err error) *httpx.Problem {
	if err == nil {
		return nil
	}
	var mv *contracts.MissingVariableError
	switch {
	case errors.Is(err, contracts.ErrTemplateNotFound):
		return httpx.Invalid("template", "unknown template %q", code)
	case errors.As(err, &mv):
		return httpx.Invalid("data", "missing template variables: %s", strings.Join(mv.Variables, ", "))
	}
	return nil
}

// requestHash fingerprints the decoded request (so formatting differences do
// not matter); only computed when an idempotency key is sent.
func requestHash(r *SendRequest) string {
	b, err := json.Marshal(r)
	if err != nil { // cannot happen for decoded JSON; fall back to a unique value
		return ids.New("unhashable")
	}
	return messages.Hash(b)
}

func jsonContentType(ct []byte) bool {
	s := string(ct)
	return strings.HasPrefix(s, "application/json") || strings.Contains(s, "+json")
}

// throttle limits a repeated log line to one per interval, counting the rest.
type throttle struct {
	mu         sync.Mutex
	last       time.Time
	suppressed atomic.Int64
}

func (t *throttle) log(logf func(string, ...any), format string, args ...any) {
	t.mu.Lock()
	now := time.Now()
	if now.Sub(t.last) < 5*time.Second {
		t.mu.Unlock()
		t.suppressed.Add(1)
		return
	}
	t.last = now
	t.mu.Unlock()
	if n := t.suppressed.Swap(0); n > 0 {
		format += " (and %d similar since the last report)"
		args = append(args, n)
	}
	logf(format, args...)
}

package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Problem is an API error document (application/problem+json).
type Problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Code      string       `json:"code"`
	Detail    string       `json:"detail"`
	Instance  string       `json:"instance"`
	RequestID string       `json:"request_id"`
	Errors    []FieldError `json:"errors"`
}

// FieldError is one entry of a problem's errors[].
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// APIError is a failed API call as the pages show it: the HTTP status and
// the problem document, or the transport / decoding failure.
type APIError struct {
	Method, Path string
	// Status is the answer's status; 0 when no answer was had.
	Status int
	// Problem is the decoded problem document, nil when the body was not one.
	Problem *Problem
	// Body is the start of a body that was not a problem document.
	Body string
	// Err is a transport or decoding failure.
	Err error
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: ", e.Method, e.Path)
	if e.Status != 0 {
		fmt.Fprintf(&b, "%d %s", e.Status, http.StatusText(e.Status))
	}
	if e.Problem != nil {
		if e.Problem.Code != "" {
			b.WriteString(" " + e.Problem.Code)
		}
		if e.Problem.Detail != "" {
			b.WriteString(": " + e.Problem.Detail)
		}
	}
	if e.Err != nil {
		b.WriteString(" " + e.Err.Error())
	}
	return b.String()
}

// StatusLine is "422 Unprocessable Entity" (or "no answer").
func (e *APIError) StatusLine() string {
	if e.Status == 0 {
		return "no answer"
	}
	if t := http.StatusText(e.Status); t != "" {
		return fmt.Sprintf("%d %s", e.Status, t)
	}
	return fmt.Sprint(e.Status)
}

// FieldErrors lists the problem's per-field errors.
func (e *APIError) FieldErrors() []FieldError {
	if e == nil || e.Problem == nil {
		return nil
	}
	return e.Problem.Errors
}

// client calls the API with one session's key. It is safe for concurrent
// use by the goroutines of one request.
type client struct {
	d            *Dashboard
	key          string
	ctx          context.Context
	unauthorized atomic.Bool
}

const maxErrBody = 300

// do sends one request: in (when not nil) as JSON; a 2xx answer is decoded
// into out (when not nil). Any other answer is an *APIError.
func (cl *client) do(method, p string, in, out any) *APIError {
	var body []byte
	ct := ""
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return &APIError{Method: method, Path: pathOnly(p), Err: fmt.Errorf("encode request: %w", err)}
		}
		ct = "application/json"
	}
	ctx, cancel := context.WithTimeout(cl.ctx, cl.d.timeout)
	defer cancel()
	status, resp, err := cl.d.api.Do(ctx, method, p, cl.key, body, ct)
	if err != nil {
		cl.d.logf("dashboard: API %s %s: %v", method, pathOnly(p), err)
		return &APIError{Method: method, Path: pathOnly(p), Err: err}
	}
	if status >= 200 && status < 300 {
		if out == nil || status == http.StatusNoContent {
			return nil
		}
		if err := json.Unmarshal(resp, out); err != nil {
			return &APIError{Method: method, Path: pathOnly(p), Status: status, Body: snippet(resp),
				Err: fmt.Errorf("the answer could not be read: %v", err)}
		}
		return nil
	}
	if status == http.StatusUnauthorized {
		cl.unauthorized.Store(true)
	}
	e := &APIError{Method: method, Path: pathOnly(p), Status: status}
	var pr Problem
	if json.Unmarshal(resp, &pr) == nil && (pr.Code != "" || pr.Title != "" || pr.Detail != "" || len(pr.Errors) > 0) {
		e.Problem = &pr
	} else {
		e.Body = snippet(resp)
	}
	return e
}

func (cl *client) get(p string, out any) *APIError { return cl.do(http.MethodGet, p, nil, out) }

// all runs the calls concurrently and waits for them.
func all(calls ...func()) {
	var wg sync.WaitGroup
	for _, f := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	wg.Wait()
}

func pathOnly(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

func snippet(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > maxErrBody {
		b = b[:maxErrBody]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
		return strings.ToValidUTF8(string(b), "?") + "…"
	}
	return strings.ToValidUTF8(string(b), "?")
}

// apiPath joins escaped path segments under /v1 and adds a query.
func apiPath(q url.Values, segs ...string) string {
	var b strings.Builder
	b.WriteString("/v1")
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	if enc := q.Encode(); enc != "" {
		b.WriteByte('?')
		b.WriteString(enc)
	}
	return b.String()
}

// isStatus reports whether err is an API answer with that status.
func isStatus(err *APIError, status int) bool { return err != nil && err.Status == status }

// Types mirroring the API's JSON answers. Fields the pages do not show are
// left out; unknown fields are ignored, so API additions do not break pages.

// Page is a cursor-paged list answer.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// Recipient is one recipient of a send request.
type Recipient struct {
	UserID  string `json:"user_id,omitempty"`
	GroupID string `json:"group_id,omitempty"`
	Email   string `json:"email,omitempty"`
	Phone   string `json:"phone,omitempty"`
}

func (r Recipient) String() string {
	switch {
	case r.UserID != "":
		return "user " + r.UserID
	case r.GroupID != "":
		return "group " + r.GroupID
	case r.Email != "":
		return "email " + r.Email
	case r.Phone != "":
		return "phone " + r.Phone
	}
	return "(empty)"
}

// Notification is GET /v1/notifications/{id} (and a list item).
type Notification struct {
	ID              string            `json:"id"`
	Status          string            `json:"status"`
	Priority        string            `json:"priority"`
	Kind            string            `json:"kind"`
	Category        string            `json:"category"`
	Template        string            `json:"template"`
	TemplateVersion int               `json:"template_version"`
	Content         json.RawMessage   `json:"content"`
	Data            json.RawMessage   `json:"data"`
	Recipients      []Recipient       `json:"recipients"`
	Channels        []string          `json:"channels"`
	Fallback        []string          `json:"fallback"`
	TodoKey         string            `json:"todo_key"`
	Locale          string            `json:"locale"`
	Meta            map[string]string `json:"meta"`
	SendAt          string            `json:"send_at"`
	ExpiresAt       string            `json:"expires_at"`
	CreatedAt       string            `json:"created_at"`
	DispatchedAt    string            `json:"dispatched_at"`
	CompletedAt     string            `json:"completed_at"`
	DeliveriesTotal int               `json:"deliveries_total"`
	Error           string            `json:"error"`
	Deliveries      []Delivery        `json:"deliveries"`
}

// Delivery is one delivery of a notification.
type Delivery struct {
	ID        string `json:"id"`
	UserID    string `json:"user_id"`
	Recipient string `json:"recipient"`
	Channel   string `json:"channel"`
	Address   string `json:"address"`
	Status    string `json:"status"`
	Attempts  int    `json:"attempts"`
	Error     string `json:"error"`
	ParentID  string `json:"parent_id"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
	SentAt    string `json:"sent_at"`
}

// Event is one tracker event of a notification's trace.
type Event struct {
	NotificationID string `json:"notification_id"`
	DeliveryID     string `json:"delivery_id"`
	UserID         string `json:"user_id"`
	Channel        string `json:"channel"`
	Category       string `json:"category"`
	Priority       string `json:"priority"`
	Type           string `json:"type"`
	Error          string `json:"error"`
	At             string `json:"at"`
	LatencyMS      int64  `json:"latency_ms"`
}

// Trace is GET /v1/notifications/{id}/events.
type Trace struct {
	NotificationID string  `json:"notification_id"`
	Events         []Event `json:"events"`
}

// ResendResult is POST /v1/notifications/{id}/resend.
type ResendResult struct {
	ID     string `json:"id"`
	Resent int    `json:"resent"`
}

// SendResult is POST /v1/notifications.
type SendResult struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// Summary is GET /v1/analytics/summary.
type Summary struct {
	From         string                    `json:"from"`
	To           string                    `json:"to"`
	Counts       map[string]int64          `json:"counts"`
	Channels     map[string]ChannelSummary `json:"channels"`
	SuccessRate  *float64                  `json:"success_rate"`
	AvgLatencyMS float64                   `json:"avg_latency_ms"`
	MaxLatencyMS int64                     `json:"max_latency_ms"`
}

// ChannelSummary is one channel's part of a Summary.
type ChannelSummary struct {
	Counts       map[string]int64 `json:"counts"`
	SuccessRate  *float64         `json:"success_rate"`
	AvgLatencyMS float64          `json:"avg_latency_ms"`
	MaxLatencyMS int64            `json:"max_latency_ms"`
}

// Series is GET /v1/analytics/series.
type Series struct {
	Bucket string  `json:"bucket"`
	Type   string  `json:"type"`
	From   string  `json:"from"`
	To     string  `json:"to"`
	Points []Point `json:"points"`
}

// Point is one bucket of a Series.
type Point struct {
	T            string  `json:"t"`
	Count        int64   `json:"count"`
	AvgLatencyMS float64 `json:"avg_latency_ms"`
	MaxLatencyMS int64   `json:"max_latency_ms"`
}

// TemplateSummary is an item of GET /v1/templates.
type TemplateSummary struct {
	Code      string   `json:"code"`
	Name      string   `json:"name"`
	Category  string   `json:"category"`
	Version   int      `json:"version"`
	Channels  []string `json:"channels"`
	CreatedAt string   `json:"created_at"`
	UpdatedAt string   `json:"updated_at"`
}

// Template is GET /v1/templates/{code} (and one version).
type Template struct {
	Code             string                                `json:"code"`
	Name             string                                `json:"name"`
	Category         string                                `json:"category"`
	Version          int                                   `json:"version"`
	Channels         []string                              `json:"channels"`
	Variants         map[string]map[string]json.RawMessage `json:"variants"`
	Locales          map[string]json.RawMessage            `json:"locales"`
	Variables        json.RawMessage                       `json:"variables"`
	VariablesDerived bool                                  `json:"variables_derived"`
	CreatedAt        string                                `json:"created_at"`
	UpdatedAt        string                                `json:"updated_at"`
}

// TemplateVersion is an item of GET /v1/templates/{code}/versions.
type TemplateVersion struct {
	Version   int      `json:"version"`
	Name      string   `json:"name"`
	Category  string   `json:"category"`
	Channels  []string `json:"channels"`
	CreatedAt string   `json:"created_at"`
}

// Variable is one declared template variable.
type Variable struct {
	Name        string          `json:"name"`
	Required    bool            `json:"required"`
	Sample      json.RawMessage `json:"sample"`
	Description string          `json:"description"`
}

// Preview is POST /v1/templates/{code}/preview.
type Preview struct {
	Code     string                                `json:"code"`
	Version  int                                   `json:"version"`
	Locale   string                                `json:"locale"`
	Data     json.RawMessage                       `json:"data"`
	Channels map[string]map[string]json.RawMessage `json:"channels"`
}

// User is GET /v1/users/{id}.
type User struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Email      string            `json:"email"`
	Phone      string            `json:"phone"`
	Locale     string            `json:"locale"`
	Timezone   string            `json:"timezone"`
	Identities map[string]string `json:"identities"`
	Groups     []string          `json:"groups"`
	WebhookURL string            `json:"webhook_url"`
	CreatedAt  string            `json:"created_at"`
	UpdatedAt  string            `json:"updated_at"`
}

// Preferences is GET /v1/users/{id}/preferences.
type Preferences struct {
	Channels     map[string]bool            `json:"channels"`
	Categories   map[string]map[string]bool `json:"categories"`
	Unsubscribed []string                   `json:"unsubscribed"`
	QuietHours   *struct {
		Start string `json:"start"`
		End   string `json:"end"`
	} `json:"quiet_hours"`
}

// Inbox is GET /v1/users/{id}/inbox.
type Inbox struct {
	Items      []InboxItem `json:"items"`
	NextCursor string      `json:"next_cursor"`
	Unread     int         `json:"unread"`
	Pending    int         `json:"pending"`
}

// InboxItem is one inbox entry.
type InboxItem struct {
	ID             string `json:"id"`
	NotificationID string `json:"notification_id"`
	Kind           string `json:"kind"`
	Category       string `json:"category"`
	Title          string `json:"title"`
	Body           string `json:"body"`
	State          string `json:"state"`
	TodoKey        string `json:"todo_key"`
	CreatedAt      string `json:"created_at"`
	ReadAt         string `json:"read_at"`
	DoneAt         string `json:"done_at"`
}

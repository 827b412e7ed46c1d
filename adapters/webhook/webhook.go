// Package webhook POSTs signed JSON to the user's webhook URL, or else to
// the app's configured webhook URL.
//
// Every request carries Herald-Delivery-Id (the idempotency key: the same on
// every retry of a delivery), Herald-Timestamp (Unix seconds) and
// Herald-Signature: v1=hex(HMAC-SHA256(app webhook secret, timestamp + "." +
// body)). Receivers check it with Verify.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"herald.dev/adapters/registry"
	"herald.dev/platform/auth"
	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

func init() {
	registry.Register(domain.ChannelWebhook, func(deps registry.Deps) (contracts.Sender, error) {
		if deps.Apps == nil {
			return nil, fmt.Errorf("webhook: no app lookup wired (needed for URLs and signing secrets): %w", registry.ErrNotConfigured)
		}
		return New(deps.Config.Webhook, deps.Apps, deps.Clock()), nil
	})
}

var _ contracts.Sender = (*Adapter)(nil)

// DefaultTimeout applies when webhook.timeout is not set.
const DefaultTimeout = 10 * time.Second

// AppCacheTTL is how long an app's webhook URL and secret are cached.
const AppCacheTTL = 30 * time.Second

// maxRetryAfter caps a receiver's requested delay.
const maxRetryAfter = 24 * time.Hour

// Payload is the JSON body of a webhook request.
type Payload struct {
	ID             string          `json:"id"`
	NotificationID string          `json:"notification_id"`
	AppID          string          `json:"app_id"`
	UserID         string          `json:"user_id"`
	Channel        domain.Channel  `json:"channel"`
	Kind           domain.Kind     `json:"kind"`
	Category       string          `json:"category"`
	Priority       domain.Priority `json:"priority"`
	Title          string          `json:"title"`
	Body           string          `json:"body"`
	Text           string          `json:"text"`
	URL            string          `json:"url,omitempty"`
	TodoKey        string          `json:"todo_key,omitempty"`
	Data           map[string]any  `json:"data"`
	CreatedAt      time.Time       `json:"created_at"`
}

// NewPayload builds the body for a delivery: title is Content.Title falling
// back to Subject, body Content.Body falling back to Text.
func NewPayload(d *contracts.Delivery) Payload {
	data := d.Data
	if data == nil {
		data = map[string]any{}
	}
	return Payload{
		ID:             d.ID,
		NotificationID: d.NotificationID,
		AppID:          d.AppID,
		UserID:         d.UserID,
		Channel:        domain.ChannelWebhook,
		Kind:           d.Kind,
		Category:       d.Category,
		Priority:       d.Priority,
		Title:          firstNonEmpty(d.Content.Title, d.Content.Subject),
		Body:           firstNonEmpty(d.Content.Body, d.Content.Text, d.Content.Markdown),
		Text:           d.Content.Text,
		URL:            d.Content.URL,
		TodoKey:        d.TodoKey,
		Data:           data,
		CreatedAt:      d.CreatedAt.UTC(),
	}
}

// Adapter sends webhooks.
type Adapter struct {
	client  *http.Client
	timeout time.Duration
	apps    *appCache
	now     func() time.Time
	bufs    sync.Pool
}

// New returns a webhook adapter. Unless cfg.AllowPrivate is set, it refuses
// to connect to loopback, private and link-local addresses; the check runs
// at dial time on the resolved address.
func New(cfg config.Webhook, apps registry.AppLookup, now func() time.Time) *Adapter {
	if now == nil {
		now = time.Now
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !cfg.AllowPrivate {
		dialer.Control = guardControl
	}
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would hide the destination from the address check
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
	}
	return &Adapter{
		client: &http.Client{
			Transport: tr,
			// Redirects are not followed: a receiver must answer at its URL.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		timeout: timeout,
		apps:    newAppCache(apps, AppCacheTTL, now),
		now:     now,
		bufs:    sync.Pool{New: func() any { return new(bytes.Buffer) }},
	}
}

// Channel implements contracts.Sender.
func (a *Adapter) Channel() domain.Channel { return domain.ChannelWebhook }

// Close releases idle connections.
func (a *Adapter) Close() error {
	a.client.CloseIdleConnections()
	return nil
}

// Send POSTs the delivery. 2xx is success; timeouts, connection errors, 408,
// 429 (with Retry-After) and 5xx are retryable; other statuses, a missing or
// non-http(s) URL, a refused destination and an unknown app are permanent.
func (a *Adapter) Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	if err := ctx.Err(); err != nil {
		return contracts.Result{}, fmt.Errorf("webhook send %s: %w", d.ID, err)
	}
	app, err := a.apps.get(ctx, d.AppID)
	if err != nil {
		if ctx.Err() != nil {
			return contracts.Result{}, fmt.Errorf("webhook send %s: %w", d.ID, ctx.Err())
		}
		if errors.Is(err, auth.ErrNotFound) {
			return contracts.Result{}, contracts.Permanent("unknown app", fmt.Errorf("app %s: %w", d.AppID, err))
		}
		return contracts.Result{}, contracts.Retryable("app lookup failed", err, 0)
	}
	target := d.Address
	if target == "" {
		target = app.Settings.WebhookURL
	}
	if target == "" {
		return contracts.Result{}, contracts.Permanent("no webhook URL configured", fmt.Errorf("app %s has no webhook_url and delivery %s has no address", d.AppID, d.ID))
	}
	u, err := CheckURL(target)
	if err != nil {
		return contracts.Result{}, contracts.Permanent("invalid webhook URL", err)
	}

	buf := a.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer a.bufs.Put(buf)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(NewPayload(d)); err != nil {
		return contracts.Result{}, contracts.Permanent("payload not encodable", fmt.Errorf("encode delivery %s: %w", d.ID, err))
	}
	body := bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})

	rctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return contracts.Result{}, contracts.Permanent("invalid webhook URL", fmt.Errorf("build request: %w", err))
	}
	ts := strconv.FormatInt(a.now().Unix(), 10)
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "Herald-Webhook/1")
	h.Set(HeaderDeliveryID, d.ID)
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderAttempt, strconv.Itoa(max(d.Attempt, 1)))
	if secret := app.Settings.WebhookSecret; secret != "" {
		h.Set(HeaderSignature, signString(secret, []byte(ts), body))
	}

	resp, err := a.client.Do(req)
	if err != nil {
		return contracts.Result{}, a.classifyTransport(ctx, d, u, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return contracts.Result{ProviderID: resp.Header.Get("X-Request-Id")}, nil
	}
	return contracts.Result{}, classifyStatus(resp, redact(u), snippet, a.now())
}

func (a *Adapter) classifyTransport(ctx context.Context, d *contracts.Delivery, u *url.URL, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("webhook send %s: %w", d.ID, ctx.Err())
	}
	where := redact(u)
	if errors.Is(err, ErrDestinationNotAllowed) {
		return contracts.Permanent("webhook destination not allowed", fmt.Errorf("post %s: %w", where, err))
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return contracts.Retryable("webhook timed out", fmt.Errorf("post %s after %s: %w", where, a.timeout, err), 0)
	}
	return contracts.Retryable("webhook connection failed", fmt.Errorf("post %s: %w", where, err), 0)
}

// StatusError is a non-2xx answer from a webhook receiver.
type StatusError struct {
	URL    string
	Status int
	Body   string // the first bytes of the response body
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("post %s: HTTP %d", e.URL, e.Status)
	}
	return fmt.Sprintf("post %s: HTTP %d: %s", e.URL, e.Status, e.Body)
}

func classifyStatus(resp *http.Response, where string, snippet []byte, now time.Time) error {
	serr := &StatusError{URL: where, Status: resp.StatusCode, Body: strings.TrimSpace(strings.ToValidUTF8(string(snippet), ""))}
	code := resp.StatusCode
	switch {
	case code == http.StatusTooManyRequests:
		return contracts.Retryable("webhook rate limited", serr, ParseRetryAfter(resp.Header.Get("Retry-After"), now))
	case code == http.StatusRequestTimeout:
		return contracts.Retryable("webhook request timeout", serr, 0)
	case code >= 500:
		return contracts.Retryable(fmt.Sprintf("webhook server error %d", code), serr, ParseRetryAfter(resp.Header.Get("Retry-After"), now))
	case code >= 300 && code < 400:
		if loc := resp.Header.Get("Location"); loc != "" {
			serr.Body = "redirect to " + loc + " (redirects are not followed)"
		}
		return contracts.Permanent(fmt.Sprintf("webhook redirected (%d)", code), serr)
	default:
		return contracts.Permanent(fmt.Sprintf("webhook rejected (%d)", code), serr)
	}
}

// ParseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
// Unparsable or past values give 0; the result is capped at 24 hours.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	if d <= 0 {
		return 0
	}
	return min(d, maxRetryAfter)
}

// CheckURL parses a webhook URL and refuses anything but absolute http and
// https URLs with a host.
func CheckURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("parse webhook URL: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	default:
		return nil, fmt.Errorf("webhook URL %s: scheme %q not allowed (want http or https)", redact(u), u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("webhook URL %s: no host", redact(u))
	}
	return u, nil
}

// redact prints a URL without its credentials and query (which may carry tokens).
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		c.RawQuery = "..."
	}
	c.Fragment = ""
	return c.String()
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// appCache caches apps for ttl and lets concurrent misses for one app share
// a single lookup. Failed lookups are not cached.
type appCache struct {
	lookup registry.AppLookup
	ttl    time.Duration
	now    func() time.Time

	mu sync.Mutex
	m  map[string]*appEntry
}

type appEntry struct {
	ready   chan struct{}
	app     auth.App
	err     error
	expires time.Time
}

func newAppCache(lookup registry.AppLookup, ttl time.Duration, now func() time.Time) *appCache {
	return &appCache{lookup: lookup, ttl: ttl, now: now, m: map[string]*appEntry{}}
}

func (c *appCache) get(ctx context.Context, id string) (auth.App, error) {
	c.mu.Lock()
	e := c.m[id]
	if e != nil {
		select {
		case <-e.ready:
			if c.now().Before(e.expires) {
				c.mu.Unlock()
				return e.app, nil
			}
			e = nil // expired: refresh
		default: // a lookup is in flight: share it
		}
	}
	if e == nil {
		e = &appEntry{ready: make(chan struct{})}
		c.m[id] = e
		c.mu.Unlock()
		// The lookup does not inherit this caller's cancellation: waiters
		// from other sends share its result.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		app, err := c.lookup.GetApp(lctx, id)
		cancel()
		c.mu.Lock()
		e.app, e.err, e.expires = app, err, c.now().Add(c.ttl)
		if err != nil && c.m[id] == e {
			delete(c.m, id)
		}
		close(e.ready)
		c.mu.Unlock()
	} else {
		c.mu.Unlock()
	}
	select {
	case <-e.ready:
	case <-ctx.Done():
		return auth.App{}, ctx.Err()
	}
	if e.err != nil {
		return auth.App{}, fmt.Errorf("load app %s: %w", id, e.err)
	}
	return e.app, nil
}

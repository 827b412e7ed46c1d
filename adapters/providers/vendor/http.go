package vendor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"herald.dev/adapters/protect"
	"herald.dev/platform/contracts"
)

// MaxResponse caps how much of a vendor response is read.
const MaxResponse = 1 << 20

// Response is a vendor's answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends req and reads the response. A transport failure is retryable
// (or, when ctx ended, wraps ctx.Err()); its message names the method and
// the URL without its query string, which carries credentials (access
// tokens, robot keys, signatures) on most vendor APIs. A 429 is a
// throttling failure honouring Retry-After; a 5xx is retryable. Other
// statuses are returned for the caller to interpret.
func Do(ctx context.Context, client *http.Client, req *http.Request, what string) (*Response, error) {
	req = req.WithContext(ctx)
	resp, err := client.Do(req)
	if err != nil {
		cause := err
		var ue *url.Error
		if errors.As(err, &ue) {
			cause = ue.Err
		}
		err = fmt.Errorf("%s %s: %w", req.Method, Redact(req.URL), cause)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", what, errors.Join(ctx.Err(), err))
		}
		return nil, contracts.Retryable(what+" unreachable", err, 0)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: read response: %w", what, errors.Join(ctx.Err(), err))
		}
		return nil, contracts.Retryable(what+" response cut off", fmt.Errorf("%s %s: %w", req.Method, Redact(req.URL), err), 0)
	}
	r := &Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return r, protect.Throttled(what+" answered 429", fmt.Errorf("HTTP 429: %s", Snippet(body)), RetryAfter(resp.Header, time.Now(), 10*time.Second))
	case resp.StatusCode >= 500:
		after := RetryAfter(resp.Header, time.Now(), 0)
		return r, contracts.Retryable(fmt.Sprintf("%s answered HTTP %d", what, resp.StatusCode), fmt.Errorf("HTTP %d: %s", resp.StatusCode, Snippet(body)), after)
	}
	return r, nil
}

// PostJSON marshals body and POSTs it to u with Content-Type
// application/json; extra headers are added.
func PostJSON(ctx context.Context, client *http.Client, u string, body any, header http.Header, what string) (*Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, contracts.Permanent("encode "+what+" request", err)
	}
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return nil, protect.ProviderFault("bad "+what+" URL", err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	for k, vs := range header {
		req.Header[k] = vs
	}
	return Do(ctx, client, req, what)
}

// Get sends a GET to u.
func Get(ctx context.Context, client *http.Client, u, what string) (*Response, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, protect.ProviderFault("bad "+what+" URL", err)
	}
	return Do(ctx, client, req, what)
}

// Redact renders u without its query string and user info.
func Redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		c.RawQuery = "…"
	}
	c.Fragment = ""
	return c.String()
}

// RetryAfter parses a Retry-After header (seconds or an HTTP date), capped
// at a day; def applies when it is absent or unparsable.
func RetryAfter(h http.Header, now time.Time, def time.Duration) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return def
	}
	var d time.Duration
	if n, err := strconv.Atoi(v); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return def
	}
	if d < 0 {
		d = 0
	}
	return min(d, 24*time.Hour)
}

// Snippet returns the start of a response body for error messages.
func Snippet(b []byte) string {
	const n = 300
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// DecodeJSON decodes a vendor answer; an unparsable answer is retryable (a
// proxy or gateway page rather than the vendor's API).
func DecodeJSON(r *Response, v any, what string) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return contracts.Retryable(fmt.Sprintf("%s answered HTTP %d with an unexpected body", what, r.Status), fmt.Errorf("%w: %s", err, Snippet(r.Body)), 0)
	}
	return nil
}

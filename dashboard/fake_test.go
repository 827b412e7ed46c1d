package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
)

const testKey = "hk_01TESTKEY.s3cr3t-secret-part"

// fakeAPI is a hand-written APIClient: canned answers by "METHOD path"
// (with or without the query string), a record of every call, and 401 for
// any key but the valid one.
type fakeAPI struct {
	mu     sync.Mutex
	key    string
	routes map[string]fakeAnswer
	funcs  map[string]func(fakeCall) fakeAnswer
	calls  []fakeCall
}

type fakeAnswer struct {
	status int
	body   string
	err    error
}

type fakeCall struct {
	Method, Path, Query, Key, Body, ContentType string
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{key: testKey, routes: map[string]fakeAnswer{
		"GET /v1/templates": {200, `{"items":[],"next_cursor":""}`, nil},
	}}
}

func (f *fakeAPI) on(route string, status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[route] = fakeAnswer{status: status, body: body}
}

// onFunc answers a route with a function of the call (checked before on's answers).
func (f *fakeAPI) onFunc(route string, h func(fakeCall) fakeAnswer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.funcs == nil {
		f.funcs = map[string]func(fakeCall) fakeAnswer{}
	}
	f.funcs[route] = h
}

func (f *fakeAPI) fail(route string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[route] = fakeAnswer{err: err}
}

func (f *fakeAPI) Do(ctx context.Context, method, path, apiKey string, body []byte, contentType string) (int, []byte, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	p, q, _ := strings.Cut(path, "?")
	f.mu.Lock()
	defer f.mu.Unlock()
	call := fakeCall{method, p, q, apiKey, string(body), contentType}
	f.calls = append(f.calls, call)
	if apiKey != f.key {
		return 401, []byte(`{"type":"https://herald.dev/problems/unauthorized","title":"Missing or invalid credentials","status":401,"code":"unauthorized","detail":"invalid api key"}`), nil
	}
	if h, ok := f.funcs[method+" "+p]; ok {
		a := h(call)
		return a.status, []byte(a.body), a.err
	}
	a, ok := f.routes[method+" "+path]
	if !ok {
		a, ok = f.routes[method+" "+p]
	}
	if !ok {
		return 404, []byte(`{"type":"https://herald.dev/problems/not_found","title":"Not found","status":404,"code":"not_found","detail":"no route ` + method + " " + p + `"}`), nil
	}
	return a.status, []byte(a.body), a.err
}

// callsTo lists the recorded calls of one method and path.
func (f *fakeAPI) callsTo(method, path string) []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeCall
	for _, c := range f.calls {
		if c.Method == method && c.Path == path {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeAPI) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	t     *testing.T
	api   *fakeAPI
	app   *fiber.App
	d     *Dashboard
	clock *testClock
	logs  *logBuf
}

type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSpace(strings.SplitN(fmt.Sprintf(format, args...), "\n", 2)[0]))
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, api: newFakeAPI(), clock: &testClock{t: time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)}, logs: &logBuf{}}
	d, err := New(Options{API: e.api, CookieKey: []byte("0123456789abcdef-test-cookie-key"), Logf: e.logs.logf, Now: e.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	e.app = fiber.New(fiber.Config{DisableStartupMessage: true})
	d.Mount(e.app)
	t.Cleanup(func() {
		if n := d.panics.Load(); n != 0 {
			t.Errorf("%d handler panics; log: %v", n, e.logs.lines)
		}
	})
	return e
}

// browser is a minimal cookie-keeping client over app.Test.
type browser struct {
	e       *env
	cookies map[string]string
	headers map[string]string
	last    string // body of the last HTML answer
}

func (e *env) browser() *browser {
	return &browser{e: e, cookies: map[string]string{}, headers: map[string]string{}}
}

type answer struct {
	Status  int
	Header  http.Header
	Body    string
	Cookies []*http.Cookie
}

func (b *browser) do(method, target string, form url.Values) answer {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, target, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range b.headers {
		req.Header.Set(k, v)
	}
	for k, v := range b.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	resp, err := b.e.app.Test(req, -1)
	if err != nil {
		b.e.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{Status: resp.StatusCode, Header: resp.Header, Body: string(raw), Cookies: resp.Cookies()}
	for _, c := range a.Cookies {
		if c.MaxAge < 0 || c.Value == "" {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c.Value
		}
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		b.last = a.Body
	}
	return a
}

func (b *browser) get(target string) answer { return b.do(http.MethodGet, target, nil) }

// post submits a form with the CSRF token of the last page.
func (b *browser) post(target string, form url.Values) answer {
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form[csrfField]; !ok {
		form.Set(csrfField, b.csrf())
	}
	return b.do(http.MethodPost, target, form)
}

var csrfRe = regexp.MustCompile(`name="_csrf" value="([^"]+)"`)

func (b *browser) csrf() string {
	m := csrfRe.FindStringSubmatch(b.last)
	if m == nil {
		return ""
	}
	return m[1]
}

// login logs in through the form and fails the test if it does not work.
func (b *browser) login() {
	b.e.t.Helper()
	if a := b.get("/admin/login"); a.Status != 200 {
		b.e.t.Fatalf("login page: %d", a.Status)
	}
	a := b.post("/admin/login", url.Values{"api_key": {testKey}})
	if a.Status != http.StatusSeeOther || a.Header.Get("Location") != "/admin/" {
		b.e.t.Fatalf("login: %d %s\n%s", a.Status, a.Header.Get("Location"), a.Body)
	}
	if b.cookies[sessionCookie] == "" {
		b.e.t.Fatal("login set no session cookie")
	}
	b.get("/admin/") // a page with the session's CSRF token
}

func mustContain(t *testing.T, body string, wants ...string) {
	t.Helper()
	missing := false
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("page lacks %q", w)
			missing = true
		}
	}
	if missing {
		t.Logf("page:\n%s", body)
	}
}

func mustNotContain(t *testing.T, body string, bads ...string) {
	t.Helper()
	for _, w := range bads {
		if strings.Contains(body, w) {
			t.Errorf("page unexpectedly contains %q", w)
		}
	}
}

// fieldBlock returns the HTML of the form field wrapper of the control with
// the given name (from its <div class="field…"> up to the next one), to
// check that an error sits next to its control.
func fieldBlock(t *testing.T, body, name string) string {
	t.Helper()
	id := `id="f-` + slug(name) + `"`
	i := strings.Index(body, id)
	if i < 0 {
		t.Fatalf("no control %s on the page", name)
	}
	start := max(strings.LastIndex(body[:i], `<div class="field">`), strings.LastIndex(body[:i], `<div class="field has-error">`))
	if start < 0 {
		t.Fatalf("control %s is not in a field wrapper", name)
	}
	rest := body[i:]
	end := len(rest)
	for _, next := range []string{`<div class="field">`, `<div class="field has-error">`, `</form>`} {
		if j := strings.Index(rest, next); j >= 0 && j < end {
			end = j
		}
	}
	return body[start : i+end]
}

func jsonBody(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("request body %q: %v", s, err)
	}
	return m
}

var errUnreachable = errors.New("dial tcp 127.0.0.1:8080: connection refused")

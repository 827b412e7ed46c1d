package dashboard

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestNewValidatesOptions(t *testing.T) {
	api := newFakeAPI()
	key := []byte("0123456789abcdef")
	for _, tc := range []struct {
		name string
		o    Options
		ok   bool
	}{
		{"no api", Options{CookieKey: key}, false},
		{"short key", Options{API: api, CookieKey: []byte("short")}, false},
		{"bad base", Options{API: api, CookieKey: key, BasePath: "admin"}, false},
		{"unclean base", Options{API: api, CookieKey: key, BasePath: "/a/../b"}, false},
		{"root base", Options{API: api, CookieKey: key, BasePath: "/"}, false},
		{"default", Options{API: api, CookieKey: key}, true},
		{"custom base", Options{API: api, CookieKey: key, BasePath: "/ops/herald/"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(tc.o)
			if (err == nil) != tc.ok {
				t.Fatalf("New: %v, want ok=%v", err, tc.ok)
			}
			if tc.name == "default" && d.BasePath() != "/admin" {
				t.Errorf("base %q", d.BasePath())
			}
			if tc.name == "custom base" && d.BasePath() != "/ops/herald" {
				t.Errorf("base %q", d.BasePath())
			}
		})
	}
}

func TestRedirectsToLoginWhenNotLoggedIn(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for _, tc := range []struct{ path, want string }{
		{"/admin/", "/admin/login"},
		{"/admin", "/admin/login"},
		{"/admin/notifications?status=done", "/admin/login?next=%2Fadmin%2Fnotifications%3Fstatus%3Ddone"},
		{"/admin/templates/order.shipped", "/admin/login?next=%2Fadmin%2Ftemplates%2Forder.shipped"},
		{"/admin/users/u-1", "/admin/login?next=%2Fadmin%2Fusers%2Fu-1"},
		{"/admin/send", "/admin/login?next=%2Fadmin%2Fsend"},
		{"/admin/no-such-page", "/admin/login?next=%2Fadmin%2Fno-such-page"},
	} {
		a := b.get(tc.path)
		if a.Status != http.StatusSeeOther || a.Header.Get("Location") != tc.want {
			t.Errorf("GET %s: %d → %q, want 303 → %q", tc.path, a.Status, a.Header.Get("Location"), tc.want)
		}
	}
	// A POST without a session goes to the login page too, and calls nothing.
	a := b.do(http.MethodPost, "/admin/notifications/n1/resend", url.Values{"_csrf": {"x"}})
	if a.Status != http.StatusSeeOther || a.Header.Get("Location") != "/admin/login" {
		t.Errorf("POST without session: %d → %q", a.Status, a.Header.Get("Location"))
	}
	if len(e.api.calls) != 0 {
		t.Errorf("API called without a session: %+v", e.api.calls)
	}
}

func TestLoginAndLogout(t *testing.T) {
	e := newEnv(t)
	e.api.on("GET /v1/notifications", 200, `{"items":[],"next_cursor":""}`)
	b := e.browser()

	// The login page sets the pre-login cookie and carries its CSRF token.
	a := b.get("/admin/login?next=%2Fadmin%2Fnotifications")
	if a.Status != 200 {
		t.Fatalf("login page: %d", a.Status)
	}
	mustContain(t, a.Body, `name="api_key"`, `type="password"`, `autocomplete="off"`, `name="next" value="/admin/notifications"`)
	if b.csrf() == "" || b.cookies[loginCookie] == "" {
		t.Fatal("no login CSRF token / cookie")
	}
	if b.cookies[sessionCookie] != "" {
		t.Fatal("session cookie before login")
	}

	// A wrong key: the API's 401 is shown next to the key field; no session.
	a = b.post("/admin/login", url.Values{"api_key": {"hk_wrong.key"}, "next": {"/admin/notifications"}})
	if a.Status != http.StatusUnauthorized {
		t.Fatalf("wrong key: %d", a.Status)
	}
	mustContain(t, fieldBlock(t, a.Body, "api_key"), "The API rejected this key: invalid api key.", `aria-invalid="true"`)
	mustNotContain(t, a.Body, "hk_wrong.key")
	if b.cookies[sessionCookie] != "" {
		t.Fatal("session after a rejected key")
	}

	// An empty key is refused without asking the API.
	e.api.reset()
	a = b.post("/admin/login", url.Values{"api_key": {"  "}})
	if a.Status != http.StatusUnprocessableEntity || len(e.api.calls) != 0 {
		t.Fatalf("empty key: %d, calls %v", a.Status, e.api.calls)
	}
	mustContain(t, fieldBlock(t, a.Body, "api_key"), "Paste an API key.")

	// The right key: validated with GET /v1/templates, then the session.
	e.api.reset()
	a = b.post("/admin/login", url.Values{"api_key": {" " + testKey + " "}, "next": {"/admin/notifications"}})
	if a.Status != http.StatusSeeOther || a.Header.Get("Location") != "/admin/notifications" {
		t.Fatalf("login: %d → %q\n%s", a.Status, a.Header.Get("Location"), a.Body)
	}
	calls := e.api.callsTo("GET", "/v1/templates")
	if len(calls) != 1 || calls[0].Key != testKey || calls[0].Query != "limit=1" {
		t.Fatalf("validation calls: %+v", calls)
	}
	var sc *http.Cookie
	for _, c := range a.Cookies {
		if c.Name == sessionCookie {
			sc = c
		}
		if c.Name == loginCookie && c.MaxAge >= 0 {
			t.Errorf("login cookie not cleared: %+v", c)
		}
	}
	if sc == nil {
		t.Fatal("no session cookie")
	}
	if !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/admin" || sc.Secure {
		t.Errorf("session cookie attributes: %+v", sc)
	}
	if sc.MaxAge != int((12 * time.Hour).Seconds()) {
		t.Errorf("session max-age %d", sc.MaxAge)
	}
	if strings.Contains(sc.Value, "s3cr3t") || strings.Contains(sc.Value, "TESTKEY") {
		t.Errorf("the key is readable in the cookie: %s", sc.Value)
	}
	a = b.get("/admin/notifications")
	if a.Status != 200 {
		t.Fatalf("after login: %d", a.Status)
	}
	mustContain(t, a.Body, "Log out", `aria-current="page">Notifications`)
	mustNotContain(t, a.Body, testKey, "s3cr3t")
	if c := e.api.callsTo("GET", "/v1/notifications"); len(c) != 1 || c[0].Key != testKey {
		t.Fatalf("page calls: %+v", c)
	}

	// Visiting the login page while logged in goes home.
	if a := b.get("/admin/login"); a.Status != http.StatusSeeOther || a.Header.Get("Location") != "/admin/" {
		t.Errorf("login page while logged in: %d %q", a.Status, a.Header.Get("Location"))
	}

	// Logout (a CSRF-protected POST) clears the cookie.
	b.get("/admin/notifications")
	a = b.post("/admin/logout", nil)
	if a.Status != http.StatusSeeOther || a.Header.Get("Location") != "/admin/login?flash=loggedout" {
		t.Fatalf("logout: %d %q", a.Status, a.Header.Get("Location"))
	}
	if b.cookies[sessionCookie] != "" {
		t.Fatal("session cookie kept after logout")
	}
	a = b.get("/admin/login?flash=loggedout")
	mustContain(t, a.Body, "You are logged out.")
	if a := b.get("/admin/notifications"); a.Status != http.StatusSeeOther {
		t.Fatalf("after logout: %d", a.Status)
	}
}

func TestLoginRedirectTargetIsConfined(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ next, want string }{
		{"", "/admin/"},
		{"/admin/notifications?status=done", "/admin/notifications?status=done"},
		{"/admin/templates/a.b/edit", "/admin/templates/a.b/edit"},
		{"/admin", "/admin"},
		{"https://evil.example/admin/", "/admin/"},
		{"//evil.example/admin/", "/admin/"},
		{"/\\evil.example", "/admin/"},
		{"/admin/../v1/templates", "/admin/"},
		{"/other", "/admin/"},
		{"/adminx", "/admin/"},
		{"/admin/login", "/admin/"},
		{"/admin/static/dashboard.css", "/admin/"},
		{"javascript:alert(1)", "/admin/"},
	} {
		if got := e.d.safeNext(tc.next); got != tc.want {
			t.Errorf("safeNext(%q) = %q, want %q", tc.next, got, tc.want)
		}
	}
}

func TestCSRF(t *testing.T) {
	e := newEnv(t)
	e.api.on("POST /v1/notifications/n1/resend", 202, `{"id":"n1","resent":1}`)
	b := e.browser()
	b.login()
	good := b.csrf()
	if good == "" {
		t.Fatal("no CSRF token on the page")
	}
	for _, tc := range []struct {
		name  string
		token []string
	}{
		{"missing", nil},
		{"empty", []string{""}},
		{"wrong", []string{"AAAA" + good[4:]}},
	} {
		form := url.Values{}
		if tc.token != nil {
			form[csrfField] = tc.token
		} else {
			form[csrfField] = []string{}
		}
		a := b.do(http.MethodPost, "/admin/notifications/n1/resend", form)
		if a.Status != http.StatusForbidden {
			t.Errorf("%s token: %d", tc.name, a.Status)
		}
		mustContain(t, a.Body, "Form expired")
	}
	if n := len(e.api.callsTo("POST", "/v1/notifications/n1/resend")); n != 0 {
		t.Fatalf("resend called %d times without a valid token", n)
	}
	// Logout needs the token too.
	if a := b.do(http.MethodPost, "/admin/logout", url.Values{}); a.Status != http.StatusForbidden || b.cookies[sessionCookie] == "" {
		t.Fatalf("logout without token: %d", a.Status)
	}
	// Another session's token does not work here.
	other := e.browser()
	other.login()
	if a := b.do(http.MethodPost, "/admin/notifications/n1/resend", url.Values{csrfField: {other.csrf()}}); a.Status != http.StatusForbidden {
		t.Fatalf("other session's token: %d", a.Status)
	}
	// The right token works.
	if a := b.post("/admin/notifications/n1/resend", url.Values{csrfField: {good}}); a.Status != http.StatusSeeOther {
		t.Fatalf("with token: %d\n%s", a.Status, a.Body)
	}

	// The login form has its own token, bound to the pre-login cookie.
	anon := e.browser()
	anon.get("/admin/login")
	e.api.reset()
	a := anon.do(http.MethodPost, "/admin/login", url.Values{"api_key": {testKey}, csrfField: {"forged"}})
	if a.Status != http.StatusForbidden || anon.cookies[sessionCookie] != "" || len(e.api.calls) != 0 {
		t.Fatalf("login with a forged token: %d, calls %v", a.Status, e.api.calls)
	}
	mustContain(t, a.Body, "The login form expired")
	// The page it answers with carries a fresh working token.
	if a := anon.post("/admin/login", url.Values{"api_key": {testKey}}); a.Status != http.StatusSeeOther {
		t.Fatalf("retry after forged token: %d", a.Status)
	}
	// Without the pre-login cookie (a cross-site form post) login fails.
	cross := e.browser()
	if a := cross.do(http.MethodPost, "/admin/login", url.Values{"api_key": {testKey}, csrfField: {good}}); a.Status != http.StatusForbidden {
		t.Fatalf("login without the pre-login cookie: %d", a.Status)
	}
}

func TestSessionCookieIntegrityAndExpiry(t *testing.T) {
	e := newEnv(t)
	e.api.on("GET /v1/notifications", 200, `{"items":[]}`)
	b := e.browser()
	b.login()
	v := b.cookies[sessionCookie]

	// Flipping a character makes the cookie worthless.
	tampered := []byte(v)
	i := len(tampered) / 2
	if tampered[i] == 'A' {
		tampered[i] = 'B'
	} else {
		tampered[i] = 'A'
	}
	b.cookies[sessionCookie] = string(tampered)
	if a := b.get("/admin/notifications"); a.Status != http.StatusSeeOther {
		t.Fatalf("tampered cookie: %d", a.Status)
	}
	// The session value does not open as the login cookie (name-bound).
	b.cookies[sessionCookie] = v
	if _, err := e.d.sealer.open(loginCookie, v); err == nil {
		t.Fatal("session cookie accepted under another name")
	}
	// Another dashboard (other key) cannot read it.
	d2, _ := New(Options{API: e.api, CookieKey: []byte("another-key-of-32-bytes-........"), Now: e.clock.now})
	if _, err := d2.sealer.open(sessionCookie, v); err == nil {
		t.Fatal("cookie opened with another key")
	}
	if a := b.get("/admin/notifications"); a.Status != 200 {
		t.Fatalf("valid cookie: %d", a.Status)
	}
	// After 12 hours the session is over.
	e.clock.add(12*time.Hour + time.Second)
	if a := b.get("/admin/notifications"); a.Status != http.StatusSeeOther {
		t.Fatalf("expired session: %d", a.Status)
	}
}

func TestSecureCookieBehindTLS(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.headers["X-Forwarded-Proto"] = "https"
	b.get("/admin/login")
	a := b.post("/admin/login", url.Values{"api_key": {testKey}})
	found := false
	for _, c := range a.Cookies {
		if c.Name == sessionCookie {
			found = true
			if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
				t.Errorf("cookie over TLS: %+v", c)
			}
		}
	}
	if !found {
		t.Fatalf("no session cookie: %d", a.Status)
	}
}

func TestRevokedKeyEndsSession(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login()
	e.api.key = "hk_someone.else" // the operator's key was revoked
	a := b.get("/admin/notifications")
	if a.Status != http.StatusSeeOther || a.Header.Get("Location") != "/admin/login?flash=rejected" {
		t.Fatalf("revoked key: %d %q", a.Status, a.Header.Get("Location"))
	}
	if b.cookies[sessionCookie] != "" {
		t.Fatal("session kept after the API rejected the key")
	}
}

func TestSecurityHeadersAndStatic(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	a := b.get("/admin/login")
	csp := a.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if a.Header.Get("X-Frame-Options") != "DENY" || a.Header.Get("Cache-Control") != "no-store" || a.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers: %v", a.Header)
	}
	i := strings.Index(a.Body, `href="/admin/static/dashboard.css?v=`)
	if i < 0 {
		t.Fatalf("no stylesheet link:\n%s", a.Body)
	}
	css := b.get(e.d.cssPath)
	if css.Status != 200 || !strings.HasPrefix(css.Header.Get("Content-Type"), "text/css") || !strings.Contains(css.Body, ".field-error") {
		t.Fatalf("css: %d %q", css.Status, css.Header.Get("Content-Type"))
	}
	if !strings.Contains(css.Header.Get("Cache-Control"), "immutable") {
		t.Errorf("versioned css cache: %q", css.Header.Get("Cache-Control"))
	}
	if a := b.get("/admin/static/nope.css"); a.Status != 404 {
		t.Errorf("missing static: %d", a.Status)
	}
}

func TestLoginThrottle(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.get("/admin/login")
	for i := 0; i < loginMaxFailures; i++ {
		if a := b.post("/admin/login", url.Values{"api_key": {"hk_guess." + itoa(i)}}); a.Status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, a.Status)
		}
	}
	e.api.reset()
	a := b.post("/admin/login", url.Values{"api_key": {testKey}})
	if a.Status != http.StatusTooManyRequests || len(e.api.calls) != 0 || a.Header.Get("Retry-After") == "" {
		t.Fatalf("after %d failures: %d, calls %v", loginMaxFailures, a.Status, e.api.calls)
	}
	mustContain(t, fieldBlock(t, a.Body, "api_key"), "Too many rejected keys")
	// Another address is not affected.
	if wait := e.d.throttle.blocked("192.0.2.7", e.clock.now()); wait != 0 {
		t.Fatalf("another address blocked for %v", wait)
	}
	// Once the window has passed, the address may try again.
	e.clock.add(loginWindow)
	if a := b.post("/admin/login", url.Values{"api_key": {testKey}}); a.Status != http.StatusSeeOther {
		t.Fatalf("after the window: %d", a.Status)
	}
	// The table of addresses stays bounded.
	var l loginThrottle
	now := time.Now()
	for i := 0; i < loginTrackMax+5; i++ {
		l.fail("10.0.0."+itoa(i), now)
	}
	if len(l.seen) > loginTrackMax {
		t.Fatalf("throttle table grew to %d", len(l.seen))
	}
}

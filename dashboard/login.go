package dashboard

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
)

// maxKeyLen bounds what the login form accepts as an API key.
const maxKeyLen = 512

type loginView struct {
	CSRF  string
	Next  string
	Key   Field
	Error *APIError
}

// loginCSRF returns the pre-login CSRF token, setting a fresh pre-login
// cookie when there is none.
func (d *Dashboard) loginCSRF(c *fiber.Ctx) string {
	if s := d.readSession(c, loginCookie); s != nil {
		return s.CSRF
	}
	return d.newLoginCSRF(c)
}

// newLoginCSRF sets a fresh pre-login cookie and returns its token.
func (d *Dashboard) newLoginCSRF(c *fiber.Ctx) string {
	s := &session{CSRF: randomToken(), Expires: d.now().Add(d.ttl).Unix()}
	d.writeSession(c, loginCookie, s)
	return s.CSRF
}

func (d *Dashboard) loginPage(c *fiber.Ctx) error {
	next := d.safeNext(c.Query("next"))
	if s := d.readSession(c, sessionCookie); s != nil && s.Key != "" {
		return c.Redirect(next, fiber.StatusSeeOther)
	}
	v := loginView{CSRF: d.loginCSRF(c), Next: c.Query("next"), Key: keyField()}
	return d.write(c, fiber.StatusOK, pageData{Title: "Log in", Flash: flashText(c)}, loginForm(v))
}

func keyField() Field {
	return Field{Name: "api_key", Label: "App API key", Type: "password", Auto: "off", Required: true, Mono: true,
		Hint: "An API key of the app to manage (hk_…). It is checked against the API and kept only in this server's encrypted session cookie."}
}

// login checks the pasted key by listing templates with it, then starts a
// session: a new CSRF token, the key, an expiry, sealed into the cookie.
func (d *Dashboard) login(c *fiber.Ctx) error {
	next := c.FormValue("next")
	v := loginView{Next: next, Key: keyField()}
	ls := d.readSession(c, loginCookie)
	if ls == nil || !ls.checkCSRF(c.FormValue(csrfField)) {
		v.CSRF = d.newLoginCSRF(c)
		v.Key.Errors = []string{"The login form expired or did not come from this page. Paste the key again."}
		return d.write(c, fiber.StatusForbidden, pageData{Title: "Log in"}, loginForm(v))
	}
	v.CSRF = ls.CSRF
	key := strings.TrimSpace(c.FormValue("api_key"))
	switch {
	case key == "":
		v.Key.Errors = []string{"Paste an API key."}
	case len(key) > maxKeyLen:
		v.Key.Errors = []string{"This is too long to be an API key."}
	case strings.ContainsAny(key, " \t\r\n"):
		v.Key.Errors = []string{"An API key has no spaces or line breaks."}
	}
	if len(v.Key.Errors) > 0 {
		return d.write(c, fiber.StatusUnprocessableEntity, pageData{Title: "Log in"}, loginForm(v))
	}
	ip := strings.Clone(c.IP())
	if wait := d.throttle.blocked(ip, d.now()); wait > 0 {
		c.Set(fiber.HeaderRetryAfter, fmt.Sprint(int(wait.Seconds())+1))
		v.Key.Errors = []string{fmt.Sprintf("Too many rejected keys from your address; try again in %d minute(s).", int(wait.Minutes())+1)}
		return d.write(c, fiber.StatusTooManyRequests, pageData{Title: "Log in"}, loginForm(v))
	}
	cl := &client{d: d, key: key, ctx: c.UserContext()}
	if err := cl.get(apiPath(url.Values{"limit": {"1"}}, "templates"), nil); err != nil {
		if err.Status == http.StatusUnauthorized || err.Status == http.StatusForbidden {
			d.throttle.fail(ip, d.now())
			msg := "The API rejected this key"
			if err.Problem != nil && err.Problem.Detail != "" {
				msg += ": " + err.Problem.Detail
			}
			v.Key.Errors = []string{msg + "."}
			return d.write(c, fiber.StatusUnauthorized, pageData{Title: "Log in"}, loginForm(v))
		}
		v.Error = err
		return d.write(c, fiber.StatusBadGateway, pageData{Title: "Log in"}, loginForm(v))
	}
	d.clearCookie(c, loginCookie)
	d.writeSession(c, sessionCookie, &session{Key: key, CSRF: randomToken(), Expires: d.now().Add(d.ttl).Unix()})
	return c.Redirect(d.safeNext(next), fiber.StatusSeeOther)
}

func (d *Dashboard) logout(r *req) error {
	d.clearCookie(r.c, sessionCookie)
	return r.c.Redirect(d.loginURL("", "loggedout"), fiber.StatusSeeOther)
}

// Login throttling: after loginMaxFailures rejected keys from one address
// within loginWindow, further attempts from it are refused until the window
// has passed, so the login form cannot be used to hammer the API with
// guesses.
const (
	loginMaxFailures = 10
	loginWindow      = 5 * time.Minute
	// loginTrackMax bounds the addresses tracked; when full, entries whose
	// window is over are dropped, and if none is, the table starts afresh.
	loginTrackMax = 10000
)

type loginThrottle struct {
	mu   sync.Mutex
	seen map[string]*loginFailures
}

type loginFailures struct {
	n     int
	start time.Time
}

func (l *loginThrottle) blocked(ip string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.seen[ip]
	if f == nil || now.Sub(f.start) >= loginWindow {
		return 0
	}
	if f.n >= loginMaxFailures {
		return f.start.Add(loginWindow).Sub(now)
	}
	return 0
}

func (l *loginThrottle) fail(ip string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]*loginFailures{}
	}
	f := l.seen[ip]
	if f == nil || now.Sub(f.start) >= loginWindow {
		if f == nil && len(l.seen) >= loginTrackMax {
			for k, v := range l.seen {
				if now.Sub(v.start) >= loginWindow {
					delete(l.seen, k)
				}
			}
			if len(l.seen) >= loginTrackMax {
				clear(l.seen)
			}
		}
		f = &loginFailures{start: now}
		l.seen[ip] = f
	}
	f.n++
}

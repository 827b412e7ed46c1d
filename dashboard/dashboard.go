// Package dashboard is Herald's admin UI: server-rendered HTML (templ) over
// Herald's own REST API. It holds no data of its own: every page is built
// from API calls made with the operator's app API key, which stays on the
// server inside an encrypted session cookie.
//
//	d, err := dashboard.New(dashboard.Options{API: client, CookieKey: key})
//	d.Mount(app) // serves /admin, /admin/login, /admin/notifications, …
package dashboard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/url"
	"path"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/a-h/templ"
	"github.com/gofiber/fiber/v2"
)

// APIClient performs one call of Herald's REST API. path is the request
// path with its query string ("/v1/templates?limit=1"); apiKey goes into the
// Authorization header as a bearer token; body and contentType are empty for
// requests without a body. A non-nil error means no HTTP answer was had (the
// status of an answer, 4xx and 5xx included, is never an error).
type APIClient interface {
	Do(ctx context.Context, method, path, apiKey string, body []byte, contentType string) (status int, respBody []byte, err error)
}

// Options configure a Dashboard.
type Options struct {
	// API reaches Herald's REST API (required). The binary calls its own
	// fiber app in process.
	API APIClient
	// CookieKey seals the session cookies (AES-256-GCM under a key derived
	// from it with HKDF-SHA256). At least 16 bytes; keep it secret and the
	// same on every instance behind one load balancer, or sessions will not
	// survive a restart / a hop to another instance.
	CookieKey []byte
	// BasePath is where Mount serves the dashboard; default "/admin".
	BasePath string
	// Logf logs API transport failures and recovered panics; nil: silent.
	Logf func(format string, args ...any)
	// SessionTTL is how long a login lasts; default 12h.
	SessionTTL time.Duration
	// CallTimeout bounds each API call; default 30s.
	CallTimeout time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Dashboard serves the admin UI.
type Dashboard struct {
	api      APIClient
	base     string
	logf     func(string, ...any)
	ttl      time.Duration
	timeout  time.Duration
	now      func() time.Time
	sealer   *sealer
	cssPath  string
	panics   atomic.Int64
	staticFS fs.FS
	throttle loginThrottle
}

//go:embed static
var staticFiles embed.FS

// Cookie names: the session (API key + CSRF token) and the pre-login CSRF
// cookie, kept apart so that opening the login page never replaces a session.
const (
	sessionCookie = "herald_admin"
	loginCookie   = "herald_admin_login"
	csrfField     = "_csrf"
)

// New checks opts and returns a Dashboard.
func New(opts Options) (*Dashboard, error) {
	if opts.API == nil {
		return nil, errors.New("dashboard: Options.API is required")
	}
	s, err := newSealer(opts.CookieKey)
	if err != nil {
		return nil, err
	}
	base := strings.TrimRight(opts.BasePath, "/")
	if opts.BasePath == "" {
		base = "/admin"
	}
	if base == "" || !strings.HasPrefix(base, "/") || strings.ContainsAny(base, ":*+?#\\ ") || path.Clean(base) != base {
		return nil, fmt.Errorf("dashboard: BasePath %q must be a clean absolute path below the root, such as /admin", opts.BasePath)
	}
	d := &Dashboard{
		api: opts.API, base: base, logf: opts.Logf, ttl: opts.SessionTTL, timeout: opts.CallTimeout,
		now: opts.Now, sealer: s,
	}
	if d.logf == nil {
		d.logf = func(string, ...any) {}
	}
	if d.ttl <= 0 {
		d.ttl = 12 * time.Hour
	}
	if d.timeout <= 0 {
		d.timeout = 30 * time.Second
	}
	if d.now == nil {
		d.now = time.Now
	}
	d.staticFS, _ = fs.Sub(staticFiles, "static")
	css, err := fs.ReadFile(d.staticFS, "dashboard.css")
	if err != nil {
		return nil, fmt.Errorf("dashboard: embedded css: %w", err)
	}
	sum := sha256.Sum256(css)
	d.cssPath = d.base + "/static/dashboard.css?v=" + hex.EncodeToString(sum[:6])
	return d, nil
}

// BasePath returns the path the dashboard is served under.
func (d *Dashboard) BasePath() string { return d.base }

// Mount adds the dashboard's routes under BasePath. They carry no API-key
// middleware: the dashboard has its own login.
func (d *Dashboard) Mount(app fiber.Router) {
	g := app.Group(d.base)
	g.Get("/static/:name", d.static)
	g.Get("/login", d.guard(d.loginPage))
	g.Post("/login", d.guard(d.login))
	g.Post("/logout", d.page(d.logout))

	g.Get("/", d.page(d.overview))
	g.Get("/notifications", d.page(d.notifications))
	g.Get("/notifications/:id", d.page(d.notification))
	g.Post("/notifications/:id/resend", d.page(d.resend))

	g.Get("/templates", d.page(d.templates))
	g.Post("/templates", d.page(d.createTemplate))
	g.Get("/new-template", d.page(d.newTemplate))
	g.Get("/templates/:code", d.page(d.template))
	g.Post("/templates/:code", d.page(d.updateTemplate))
	g.Get("/templates/:code/edit", d.page(d.editTemplate))
	g.Get("/templates/:code/versions", d.page(d.templateVersions))
	g.Get("/templates/:code/versions/:n", d.page(d.templateVersion))
	g.Post("/templates/:code/preview", d.page(d.previewTemplate))
	g.Post("/templates/:code/delete", d.page(d.deleteTemplate))

	g.Get("/users", d.page(d.users))
	g.Get("/users/:id", d.page(d.user))

	g.Get("/send", d.page(d.sendForm))
	g.Post("/send", d.page(d.send))

	g.All("/*", d.page(d.notFound))
}

// req is what a page handler works with: the session, an API client bound
// to the session's key, and the page chrome.
type req struct {
	d    *Dashboard
	c    *fiber.Ctx
	sess *session
	api  *client
}

type handler func(r *req) error

// guard wraps every handler: security headers and panic recovery.
func (d *Dashboard) guard(next func(c *fiber.Ctx) error) fiber.Handler {
	return func(c *fiber.Ctx) (err error) {
		defer func() {
			if v := recover(); v != nil {
				d.panics.Add(1)
				d.logf("dashboard: panic serving %s %s: %v\n%s", c.Method(), c.Path(), v, debug.Stack())
				err = d.renderError(c, fiber.StatusInternalServerError, "Something went wrong",
					"The dashboard failed to build this page. The error was logged; try again or go back.")
			}
		}()
		h := &c.Response().Header
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		return next(c)
	}
}

// page wraps a handler that needs a logged-in operator: without a valid
// session GETs redirect to the login page (remembering where to come back)
// and POSTs too; a POST must carry the session's CSRF token.
func (d *Dashboard) page(h handler) fiber.Handler {
	return d.guard(func(c *fiber.Ctx) error {
		s := d.readSession(c, sessionCookie)
		if s == nil || s.Key == "" {
			next := ""
			if c.Method() == fiber.MethodGet {
				next = c.OriginalURL()
			}
			return c.Redirect(d.loginURL(next, ""), fiber.StatusSeeOther)
		}
		if c.Method() == fiber.MethodPost && !s.checkCSRF(c.FormValue(csrfField)) {
			return d.renderError(c, fiber.StatusForbidden, "Form expired",
				"This form did not carry a valid security token (it may come from an old page or another site). Reload the page and try again.")
		}
		r := &req{d: d, c: c, sess: s, api: &client{d: d, key: s.Key, ctx: c.UserContext()}}
		return h(r)
	})
}

// loginURL is the login page, with where to go after it and a notice.
func (d *Dashboard) loginURL(next, flash string) string {
	q := url.Values{}
	if next != "" && next != d.base+"/" && next != d.base {
		q.Set("next", next)
	}
	if flash != "" {
		q.Set("flash", flash)
	}
	u := d.base + "/login"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// safeNext accepts only a path inside the dashboard as a post-login target.
func (d *Dashboard) safeNext(next string) string {
	home := d.base + "/"
	if next == "" || strings.ContainsAny(next, "\\\r\n") || strings.HasPrefix(next, "//") {
		return home
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return home
	}
	p := path.Clean(u.Path)
	if p != d.base && !strings.HasPrefix(p, d.base+"/") || p == d.base+"/login" || strings.HasPrefix(p, d.base+"/static/") {
		return home
	}
	if strings.HasSuffix(u.Path, "/") && p != "/" {
		p += "/"
	}
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	return p
}

// link builds a dashboard URL from a path below the base and optional query.
func (d *Dashboard) link(p string, q url.Values) string {
	u := d.base + p
	if enc := q.Encode(); enc != "" {
		u += "?" + enc
	}
	return u
}

// render writes a full page. When an API call of this request answered 401
// (the key was revoked or expired), the session is dropped and the operator
// sent back to the login page instead.
func (r *req) render(status int, title, nav string, body templ.Component) error {
	if r.api.unauthorized.Load() {
		r.d.clearCookie(r.c, sessionCookie)
		return r.c.Redirect(r.d.loginURL("", "rejected"), fiber.StatusSeeOther)
	}
	p := pageData{Title: title, Nav: nav, CSRF: r.sess.CSRF, LoggedIn: true, Flash: flashText(r.c)}
	return r.d.write(r.c, status, p, body)
}

// redirect answers 303 to a dashboard path (after a POST).
func (r *req) redirect(p string, q url.Values) error {
	if r.api.unauthorized.Load() {
		r.d.clearCookie(r.c, sessionCookie)
		return r.c.Redirect(r.d.loginURL("", "rejected"), fiber.StatusSeeOther)
	}
	return r.c.Redirect(r.d.link(p, q), fiber.StatusSeeOther)
}

func (d *Dashboard) write(c *fiber.Ctx, status int, p pageData, body templ.Component) error {
	p.Base = d.base
	p.CSS = d.cssPath
	ctx := context.WithValue(context.WithValue(c.UserContext(), baseKey{}, d.base), csrfKey{}, p.CSRF)
	var buf bytes.Buffer
	if err := layout(p, body).Render(ctx, &buf); err != nil {
		d.logf("dashboard: render %s: %v", c.Path(), err)
		buf.Reset()
		status = fiber.StatusInternalServerError
		p.Flash = ""
		if err := layout(p, messagePage("Something went wrong", "The page could not be rendered; the error was logged.")).Render(ctx, &buf); err != nil {
			return err
		}
	}
	c.Status(status)
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	return c.Send(buf.Bytes())
}

// renderError writes an error page, logged in or not.
func (d *Dashboard) renderError(c *fiber.Ctx, status int, title, text string) error {
	p := pageData{Title: title}
	if s := d.readSession(c, sessionCookie); s != nil && s.Key != "" {
		p.LoggedIn, p.CSRF = true, s.CSRF
	}
	return d.write(c, status, p, messagePage(title, text))
}

func (d *Dashboard) notFound(r *req) error {
	return r.render(fiber.StatusNotFound, "Not found", "", messagePage("Not found", "There is no dashboard page at this address."))
}

// static serves the embedded stylesheet.
func (d *Dashboard) static(c *fiber.Ctx) error {
	name := c.Params("name")
	b, err := fs.ReadFile(d.staticFS, name)
	if err != nil || strings.Contains(name, "/") {
		return c.Status(fiber.StatusNotFound).SendString("not found")
	}
	c.Set(fiber.HeaderContentType, mime.TypeByExtension(path.Ext(name)))
	c.Set("X-Content-Type-Options", "nosniff")
	if c.Query("v") != "" {
		c.Set(fiber.HeaderCacheControl, "public, max-age=31536000, immutable")
	} else {
		c.Set(fiber.HeaderCacheControl, "public, max-age=300")
	}
	return c.Send(b)
}

type (
	baseKey struct{}
	csrfKey struct{}
)

func csrfToken(ctx context.Context) string {
	s, _ := ctx.Value(csrfKey{}).(string)
	return s
}

// u builds a dashboard link inside a templ component (the base path rides
// on the render context).
func u(ctx context.Context, p string) string {
	b, _ := ctx.Value(baseKey{}).(string)
	return b + p
}

// uq is u with a query string.
func uq(ctx context.Context, p string, q url.Values) string {
	if enc := q.Encode(); enc != "" {
		return u(ctx, p) + "?" + enc
	}
	return u(ctx, p)
}

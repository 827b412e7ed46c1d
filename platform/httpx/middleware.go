package httpx

import (
	"io"
	"time"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/ids"
)

const requestIDKey = "herald.request_id"

// HeaderRequestID carries the request id in and out.
const HeaderRequestID = "X-Request-Id"

// RequestIDMiddleware reuses a sane incoming X-Request-Id or makes one, and echoes it.
func RequestIDMiddleware() fiber.Handler {
	return func(c *fiber.Ctx) error {
		id := c.Get(HeaderRequestID)
		if id == "" || len(id) > 128 {
			id = ids.New("req")
		}
		c.Locals(requestIDKey, id)
		c.Set(HeaderRequestID, id)
		return c.Next()
	}
}

// RequestID returns the current request's id.
func RequestID(c *fiber.Ctx) string {
	if v, ok := c.Locals(requestIDKey).(string); ok {
		return v
	}
	return ""
}

// StreamLimit caps streamed request bodies (bulk imports) at the transport.
const StreamLimit = 1 << 30

const streamKey = "herald.stream_ok"

// NewApp builds a fiber app with Herald's conventions: problem+json errors,
// a request body limit (bodyLimit bytes, default 1 MiB, on every route except
// streaming imports, whose paths end in /import), request ids, and idle
// keep-alive connections closed after DefaultIdleTimeout. Routes are added by
// each service's Mount.
func NewApp(bodyLimit int, logf func(string, ...any)) *fiber.App {
	return NewAppWith(AppOptions{BodyLimit: bodyLimit, IdleTimeout: DefaultIdleTimeout, Logf: logf})
}

// DefaultIdleTimeout is how long an idle keep-alive connection stays open.
const DefaultIdleTimeout = 2 * time.Minute

// AppOptions tune NewAppWith.
type AppOptions struct {
	BodyLimit int // bytes; 0 means 1 MiB
	// IdleTimeout closes a keep-alive connection that sends no request for
	// this long; 0 keeps it open until the client closes it.
	IdleTimeout time.Duration
	Logf        func(string, ...any)
}

// NewAppWith is NewApp with every option.
func NewAppWith(o AppOptions) *fiber.App {
	if o.BodyLimit <= 0 {
		o.BodyLimit = 1 << 20
	}
	app := fiber.New(fiber.Config{
		AppName:               "herald",
		BodyLimit:             StreamLimit,
		ErrorHandler:          ErrorHandler(o.Logf),
		DisableStartupMessage: true,
		ReadBufferSize:        16 << 10,
		StreamRequestBody:     true,
		IdleTimeout:           o.IdleTimeout,
	})
	app.Use(RequestIDMiddleware())
	app.Use(maxBody(o.BodyLimit))
	return app
}

const limitKey = "herald.body_limit"

// maxBody enforces the body limit: declared lengths are checked up front;
// chunked bodies are read through the limit by Body (and so by Bind).
// Streaming import routes (paths ending in /import) are exempt.
func maxBody(limit int) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if streamRoute(c) {
			return c.Next()
		}
		if cl := c.Request().Header.ContentLength(); cl > limit {
			// The unread body would otherwise be parsed as the next request.
			c.Context().SetConnectionClose()
			return CodeTooLarge.New("the request body is %d bytes; the limit is %d", cl, limit)
		}
		c.Locals(limitKey, limit)
		return c.Next()
	}
}

// Body returns the request body, enforcing the app's body limit on chunked bodies.
func Body(c *fiber.Ctx) ([]byte, error) {
	limit, ok := c.Locals(limitKey).(int)
	if !ok {
		return c.Body(), nil
	}
	return ReadLimited(c, limit)
}

func streamRoute(c *fiber.Ctx) bool {
	// Routes that stream are registered under paths ending in /import.
	p := c.Path()
	return len(p) >= 7 && p[len(p)-7:] == "/import"
}

// ReadLimited reads a (possibly chunked) streamed body up to limit bytes,
// answering 413 beyond it. Handlers of small bodies need not call it: the
// transport has already buffered bodies that declared their length.
func ReadLimited(c *fiber.Ctx, limit int) ([]byte, error) {
	if c.Request().Header.ContentLength() >= 0 {
		return c.Body(), nil
	}
	r := c.Context().RequestBodyStream()
	if r == nil {
		return c.Body(), nil
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, CodeMalformed.New("read body: %v", err)
	}
	if len(b) > limit {
		c.Context().SetConnectionClose()
		return nil, CodeTooLarge.New("the request body exceeds %d bytes", limit)
	}
	return b, nil
}

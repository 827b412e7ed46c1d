package httpx

import (
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

// NewApp builds a fiber app with Herald's conventions: problem+json errors,
// a body limit, request ids. Routes are added by each service's Mount.
func NewApp(bodyLimit int, logf func(string, ...any)) *fiber.App {
	if bodyLimit <= 0 {
		bodyLimit = 1 << 20
	}
	app := fiber.New(fiber.Config{
		AppName:               "herald",
		BodyLimit:             bodyLimit,
		ErrorHandler:          ErrorHandler(logf),
		DisableStartupMessage: true,
		ReadBufferSize:        16 << 10,
		StreamRequestBody:     false,
	})
	app.Use(RequestIDMiddleware())
	return app
}

package dashboard

import (
	"context"
	"net"
	"sync"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// InProcess returns an APIClient that serves each call with app's own
// handler, in process and without a network hop: the way the herald binary
// points the dashboard at the API it serves itself. The app's routes must
// all be registered before the first call.
func InProcess(app *fiber.App) APIClient { return &inProcess{app: app} }

type inProcess struct {
	app  *fiber.App
	once sync.Once
	h    fasthttp.RequestHandler
}

var loopback = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}

func (p *inProcess) Do(ctx context.Context, method, path, apiKey string, body []byte, contentType string) (int, []byte, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	p.once.Do(func() { p.h = p.app.Handler() })
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(path)
	req.Header.SetHost("localhost")
	req.Header.Set(fiber.HeaderAccept, "application/json")
	req.Header.Set(fiber.HeaderUserAgent, "herald-dashboard")
	if apiKey != "" {
		req.Header.Set(fiber.HeaderAuthorization, "Bearer "+apiKey)
	}
	if body != nil {
		req.SetBody(body)
		req.Header.SetContentType(contentType)
	}
	var fctx fasthttp.RequestCtx
	fctx.Init(&req, loopback, nil)
	p.h(&fctx)
	return fctx.Response.StatusCode(), append([]byte(nil), fctx.Response.Body()...), nil
}

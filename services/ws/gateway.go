// Package ws is the WebSocket gateway of the in-app inbox: browsers connect
// to GET /v1/ws with a short-lived token issued to the app's backend by
// POST /v1/users/{id}/tokens, receive every new inbox item and state change
// within milliseconds on every open tab, and resume after a disconnect with
// last_id (the items they missed are replayed, then live ones follow, with
// no gap and no duplicate). Fan-out goes through a Broadcaster, in-process by
// default, so a cluster can plug in a broadcast topic.
package ws

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"sync"
	"time"

	fws "github.com/fasthttp/websocket"
	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/auth"
	"herald.dev/platform/contracts"
	"herald.dev/platform/httpx"
	"herald.dev/services/inbox"
)

//go:embed static
var static embed.FS

// Replayer loads a user's items after an id, oldest first (the inbox store).
type Replayer interface {
	After(ctx context.Context, appID, userID, afterID string, limit int) ([]*inbox.Item, error)
}

// Options configure the gateway.
type Options struct {
	// Broadcaster fans frames out (default: NewLocal()).
	Broadcaster Broadcaster
	// Secret signs tokens; TokenTTL is their lifetime (default 15 min).
	Secret   []byte
	TokenTTL time.Duration
	// PublicURL is how browsers reach Herald (http(s)://host[/prefix]); when
	// empty, ws_url is derived from the token request's Host.
	PublicURL string
	// Directory, when set, makes token requests for unknown users a 404.
	Directory contracts.Directory
	// Replay serves last_id resumes.
	Replay Replayer
	// PingInterval (default 25s), PongWait (default 60s) and WriteWait
	// (default 10s) drive keepalive; SendBuffer (default 256 frames) bounds
	// what a slow connection may lag behind before it is disconnected.
	PingInterval time.Duration
	PongWait     time.Duration
	WriteWait    time.Duration
	SendBuffer   int
	Logf         func(string, ...any)
}

// Gateway serves live connections and receives inbox pushes.
type Gateway struct {
	opts   Options
	b      Broadcaster
	tokens Tokens

	mu      sync.Mutex
	clients map[*client]struct{}
	closed  bool
	wg      sync.WaitGroup
}

var _ inbox.Pusher = (*Gateway)(nil)

// New returns a gateway.
func New(opts Options) *Gateway {
	if opts.Broadcaster == nil {
		opts.Broadcaster = NewLocal()
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 25 * time.Second
	}
	if opts.PongWait <= 0 {
		opts.PongWait = 60 * time.Second
	}
	if opts.PongWait <= opts.PingInterval {
		opts.PongWait = opts.PingInterval * 2
	}
	if opts.WriteWait <= 0 {
		opts.WriteWait = 10 * time.Second
	}
	if opts.SendBuffer <= 0 {
		opts.SendBuffer = 256
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	return &Gateway{opts: opts, b: opts.Broadcaster, tokens: NewTokens(opts.Secret, opts.TokenTTL), clients: map[*client]struct{}{}}
}

// SetReplay sets the replay source (before serving).
func (g *Gateway) SetReplay(r Replayer) { g.opts.Replay = r }

// Tokens returns the token signer.
func (g *Gateway) Tokens() Tokens { return g.tokens }

// Broadcaster returns the broadcaster in use.
func (g *Gateway) Broadcaster() Broadcaster { return g.b }

type frameJSON struct {
	Type string         `json:"type"`
	Item inbox.ItemView `json:"item"`
}

// EncodeFrame builds the frame the client receives for an event.
func EncodeFrame(typ string, it *inbox.Item) Frame {
	b, _ := json.Marshal(frameJSON{Type: typ, Item: inbox.View(it)})
	return Frame{Type: typ, ID: it.ID, Data: b}
}

// Push implements inbox.Pusher: it encodes the event once and publishes it
// to the user's connections.
func (g *Gateway) Push(ev inbox.Event) {
	key := UserKey(ev.Item.AppID, ev.Item.UserID)
	if l, ok := g.b.(Listening); ok && !l.Listening(key) {
		return
	}
	if err := g.b.Publish(key, EncodeFrame(ev.Type, ev.Item)); err != nil {
		g.opts.Logf("ws: publish %s of %s: %v", ev.Type, ev.Item.ID, err)
	}
}

// Mount adds the API-key routes (POST /users/:id/tokens) to r.
func (g *Gateway) Mount(r fiber.Router) {
	r.Post("/users/:id/tokens", g.issue)
}

// MountPublic adds the routes without API-key auth: the WebSocket endpoint,
// the JavaScript client and the demo page.
func (g *Gateway) MountPublic(app fiber.Router) {
	app.Get("/v1/ws/client.js", staticFile("static/client.js", "application/javascript; charset=utf-8"))
	app.Get("/inbox-demo", staticFile("static/demo.html", fiber.MIMETextHTMLCharsetUTF8))
	app.Get("/v1/ws", g.authorize, websocket.New(g.serve, websocket.Config{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   1024,
		WriteBufferSize:  4096,
		RecoverHandler: func(c *websocket.Conn) {
			if r := recover(); r != nil {
				g.opts.Logf("ws: connection panic: %v", r)
			}
		},
	}))
}

func staticFile(name, contentType string) fiber.Handler {
	body, err := static.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, contentType)
		c.Set(fiber.HeaderCacheControl, "public, max-age=300")
		return c.Send(body)
	}
}

// TokenResponse is the answer of POST /v1/users/{id}/tokens.
type TokenResponse struct {
	Token     string `json:"token"`
	ExpiresAt string `json:"expires_at"`
	WSURL     string `json:"ws_url"`
}

func (g *Gateway) issue(c *fiber.Ctx) error {
	user, err := inbox.UserParam(c)
	if err != nil {
		return err
	}
	app := auth.AppID(c)
	if g.opts.Directory != nil {
		ps, err := g.opts.Directory.Profiles(c.UserContext(), app, []string{user})
		if err != nil {
			return err
		}
		if ps[user] == nil {
			return httpx.NotFound("user", user)
		}
	}
	tok, exp := g.tokens.Issue(app, user, time.Now())
	c.Status(fiber.StatusCreated)
	return c.JSON(TokenResponse{Token: tok, ExpiresAt: exp.Format(time.RFC3339), WSURL: g.wsURL(c) + "?token=" + url.QueryEscape(tok)})
}

// wsURL is the WebSocket endpoint as browsers reach it.
func (g *Gateway) wsURL(c *fiber.Ctx) string {
	base := strings.TrimRight(g.opts.PublicURL, "/")
	if base == "" {
		base = c.Protocol() + "://" + c.Hostname()
	}
	switch {
	case strings.HasPrefix(base, "https://"):
		base = "wss://" + strings.TrimPrefix(base, "https://")
	case strings.HasPrefix(base, "http://"):
		base = "ws://" + strings.TrimPrefix(base, "http://")
	}
	return base + "/v1/ws"
}

const (
	localApp    = "herald.ws.app"
	localUser   = "herald.ws.user"
	localLastID = "herald.ws.last_id"
)

// authorize checks the token before the upgrade, so a bad token is a plain
// 401 problem+json rather than a WebSocket close.
func (g *Gateway) authorize(c *fiber.Ctx) error {
	app, user, err := g.tokens.Verify(c.Query("token"), time.Now())
	if err != nil {
		return httpx.CodeUnauthorized.New("the token is missing, invalid or expired: ask the app's backend for a new one (POST /v1/users/{id}/tokens)")
	}
	// A copy: query values point into the request buffer, and the
	// connection reads last_id after the upgrade.
	lastID := strings.Clone(c.Query("last_id"))
	if len(lastID) > 64 {
		return httpx.Invalid("last_id", "is not an inbox item id")
	}
	if !websocket.IsWebSocketUpgrade(c) {
		c.Set(fiber.HeaderUpgrade, "websocket")
		return &httpx.Problem{Type: "about:blank", Title: "Upgrade Required", Status: fiber.StatusUpgradeRequired,
			Code: "upgrade_required", Detail: "connect with a WebSocket client"}
	}
	c.Locals(localApp, app)
	c.Locals(localUser, user)
	c.Locals(localLastID, lastID)
	return c.Next()
}

// Connections counts open connections.
func (g *Gateway) Connections() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.clients)
}

// Close disconnects every client (close code 1001) and waits briefly for
// their handlers to finish. New connections are refused afterwards.
func (g *Gateway) Close() {
	g.mu.Lock()
	g.closed = true
	for cl := range g.clients {
		cl.kill(fws.CloseGoingAway, "server shutting down")
	}
	g.mu.Unlock()
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		g.opts.Logf("ws: %d connections did not close in time", g.Connections())
	}
}

func (g *Gateway) register(cl *client) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.clients[cl] = struct{}{}
	g.wg.Add(1)
	return true
}

func (g *Gateway) unregister(cl *client) {
	g.mu.Lock()
	delete(g.clients, cl)
	g.mu.Unlock()
	g.wg.Done()
}

// client is one live connection.
type client struct {
	g    *Gateway
	conn *fws.Conn
	live chan Frame
	quit chan struct{}
	// readDone is closed when readLoop returns: the handler must not return
	// before (the server recycles the connection's buffers afterwards).
	readDone chan struct{}
	once     sync.Once
	// code and reason are the close frame sent when the server ends the
	// connection (0 when the peer went away).
	code   int
	reason string
}

// offer queues a frame without blocking; a full buffer disconnects the
// client, which resumes with last_id.
func (cl *client) offer(f Frame) {
	select {
	case cl.live <- f:
	default:
		cl.kill(fws.CloseTryAgainLater, "too slow: reconnect with last_id")
	}
}

func (cl *client) kill(code int, reason string) {
	cl.once.Do(func() {
		cl.code, cl.reason = code, reason
		close(cl.quit)
	})
}

const replayPage = 200

// serve runs one connection: subscribe, replay what was missed, then relay
// live frames, pinging to keep the connection alive.
func (g *Gateway) serve(c *websocket.Conn) {
	app, _ := c.Locals(localApp).(string)
	user, _ := c.Locals(localUser).(string)
	lastID, _ := c.Locals(localLastID).(string)
	cl := &client{g: g, conn: c.Conn, live: make(chan Frame, g.opts.SendBuffer), quit: make(chan struct{}), readDone: make(chan struct{})}
	if !g.register(cl) {
		g.closeWith(cl, fws.CloseGoingAway, "server shutting down")
		return
	}
	defer g.unregister(cl)
	// Subscribe before replaying: whatever commits from now on is in the
	// live buffer, whatever committed before is in the replay.
	cancel := g.b.Subscribe(UserKey(app, user), cl.offer)
	defer cancel()
	go cl.readLoop()

	replayed := lastID
	if lastID != "" && g.opts.Replay != nil {
		var err error
		if replayed, err = cl.replay(app, user, lastID); err != nil {
			if !errors.Is(err, errQuit) {
				g.opts.Logf("ws: replay for %s/%s: %v", app, user, err)
				cl.kill(fws.CloseInternalServerErr, "replay failed: reconnect")
			}
		}
	}

	ping := time.NewTicker(g.opts.PingInterval)
	defer ping.Stop()
	for {
		select {
		case f := <-cl.live:
			if f.Type == "item" && replayed != "" && f.ID <= replayed {
				continue // already sent by the replay
			}
			if err := cl.write(f.Data); err != nil {
				cl.kill(0, "")
			}
		case <-ping.C:
			if err := cl.conn.WriteControl(fws.PingMessage, nil, time.Now().Add(g.opts.WriteWait)); err != nil {
				cl.kill(0, "")
			}
		case <-cl.quit:
			g.closeWith(cl, cl.code, cl.reason)
			<-cl.readDone
			return
		}
	}
}

var errQuit = errors.New("connection ended")

// replay sends the user's items after lastID and returns the last id sent.
func (cl *client) replay(app, user, lastID string) (string, error) {
	cursor := lastID
	for {
		select {
		case <-cl.quit:
			return cursor, errQuit
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		items, err := cl.g.opts.Replay.After(ctx, app, user, cursor, replayPage)
		cancel()
		if err != nil {
			return cursor, err
		}
		for _, it := range items {
			if err := cl.write(EncodeFrame("item", it).Data); err != nil {
				cl.kill(0, "")
				return cursor, errQuit
			}
			cursor = it.ID
		}
		if len(items) < replayPage {
			return cursor, nil
		}
	}
}

func (cl *client) write(b []byte) error {
	if err := cl.conn.SetWriteDeadline(time.Now().Add(cl.g.opts.WriteWait)); err != nil {
		return err
	}
	return cl.conn.WriteMessage(fws.TextMessage, b)
}

// readLoop consumes client messages (only control frames matter), keeps the
// read deadline moving on pongs and notices the peer leaving.
func (cl *client) readLoop() {
	defer close(cl.readDone)
	wait := cl.g.opts.PongWait
	cl.conn.SetReadLimit(4096)
	_ = cl.conn.SetReadDeadline(time.Now().Add(wait))
	cl.conn.SetPongHandler(func(string) error { return cl.conn.SetReadDeadline(time.Now().Add(wait)) })
	for {
		if _, _, err := cl.conn.ReadMessage(); err != nil {
			cl.kill(0, "")
			return
		}
		_ = cl.conn.SetReadDeadline(time.Now().Add(wait))
	}
}

// closeWith sends a close frame (when code != 0) and closes the connection.
func (g *Gateway) closeWith(cl *client, code int, reason string) {
	if code != 0 {
		_ = cl.conn.WriteControl(fws.CloseMessage, fws.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	}
	// Closing a hijacked fasthttp connection is left to the server once the
	// handler returns (Close is a no-op), so an expired deadline is what
	// unblocks the reader.
	_ = cl.conn.NetConn().SetDeadline(time.Now())
	_ = cl.conn.Close()
}

package ws_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	fws "github.com/fasthttp/websocket"

	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
	"herald.dev/services/inbox"
	"herald.dev/services/ws"
)

func TestTokens(t *testing.T) {
	tk := ws.NewTokens([]byte("secret"), time.Minute)
	now := time.Now()
	for _, user := range []string{"u1", "user.with.dots", "用户", "a b/c?d"} {
		tok, exp := tk.Issue("app_1", user, now)
		if exp.Sub(now) > time.Minute || exp.Sub(now) < 58*time.Second {
			t.Fatalf("expiry %v", exp)
		}
		app, u, err := tk.Verify(tok, now)
		if err != nil || app != "app_1" || u != user {
			t.Fatalf("verify %q: %s %s %v", user, app, u, err)
		}
		if _, _, err := tk.Verify(tok, now.Add(2*time.Minute)); !errors.Is(err, ws.ErrBadToken) {
			t.Fatalf("expired token accepted: %v", err)
		}
		if _, _, err := ws.NewTokens([]byte("other"), time.Minute).Verify(tok, now); !errors.Is(err, ws.ErrBadToken) {
			t.Fatalf("token of another secret accepted")
		}
		parts := strings.Split(tok, ".")
		parts[0] = "YXBwXzI" // app_2: the signature no longer matches
		if _, _, err := tk.Verify(strings.Join(parts, "."), now); !errors.Is(err, ws.ErrBadToken) {
			t.Fatalf("tampered token accepted")
		}
	}
	for _, bad := range []string{"", "a.b.c", "a.b.c.d.e", "!!.b.1.c", strings.Repeat("a", 2000)} {
		if _, _, err := tk.Verify(bad, now); !errors.Is(err, ws.ErrBadToken) {
			t.Fatalf("%q accepted", bad)
		}
	}
}

func TestLocalBroadcaster(t *testing.T) {
	l := ws.NewLocal()
	var mu sync.Mutex
	got := map[string][]string{}
	sub := func(name string) func(ws.Frame) {
		return func(f ws.Frame) {
			mu.Lock()
			got[name] = append(got[name], f.ID)
			mu.Unlock()
		}
	}
	c1 := l.Subscribe("a/u1", sub("tab1"))
	c2 := l.Subscribe("a/u1", sub("tab2"))
	l.Subscribe("a/u2", sub("other"))
	if !l.Listening("a/u1") || l.Listening("a/u3") || l.Subscribers("a/u1") != 2 {
		t.Fatal("subscriptions not counted")
	}
	_ = l.Publish("a/u1", ws.Frame{ID: "1"})
	c1()
	c1() // idempotent
	_ = l.Publish("a/u1", ws.Frame{ID: "2"})
	c2()
	_ = l.Publish("a/u1", ws.Frame{ID: "3"})
	if l.Listening("a/u1") {
		t.Fatal("cancelled subscriptions still listening")
	}
	if fmt.Sprint(got) != "map[tab1:[1] tab2:[1 2]]" {
		t.Fatalf("deliveries %v", got)
	}
}

// fakeReplay serves items kept in memory.
type fakeReplay struct {
	mu    sync.Mutex
	items []*inbox.Item
}

func (r *fakeReplay) add(it *inbox.Item) {
	r.mu.Lock()
	r.items = append(r.items, it)
	r.mu.Unlock()
}

func (r *fakeReplay) After(_ context.Context, app, user, after string, limit int) ([]*inbox.Item, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*inbox.Item
	for _, it := range r.items {
		if it.AppID == app && it.UserID == user && it.ID > after && len(out) < limit {
			out = append(out, it)
		}
	}
	return out, nil
}

type server struct {
	g      *ws.Gateway
	local  *ws.Local
	replay *fakeReplay
	base   string
}

func newServer(t *testing.T, opts ws.Options) *server {
	t.Helper()
	s := &server{local: ws.NewLocal(), replay: &fakeReplay{}}
	opts.Broadcaster, opts.Secret, opts.Replay = s.local, []byte("secret"), s.replay
	opts.Logf = t.Logf
	s.g = ws.New(opts)
	app := httpx.NewApp(0, t.Logf)
	s.g.MountPublic(app)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go app.Listener(ln)
	t.Cleanup(func() { s.g.Close(); _ = app.ShutdownWithTimeout(2 * time.Second) })
	s.base = "ws://" + ln.Addr().String() + "/v1/ws?token="
	return s
}

func (s *server) dial(t *testing.T, user, lastID string) *fws.Conn {
	t.Helper()
	tok, _ := s.g.Tokens().Issue("app", user, time.Now())
	u := s.base + url.QueryEscape(tok)
	if lastID != "" {
		u += "&last_id=" + lastID
	}
	c, _, err := fws.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (s *server) waitSubscribers(t *testing.T, user string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.local.Subscribers(ws.UserKey("app", user)) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers, want %d", s.local.Subscribers(ws.UserKey("app", user)), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var seq int

func newItem(user, title string) *inbox.Item {
	seq++
	return &inbox.Item{ID: fmt.Sprintf("inb_%06d", seq), AppID: "app", UserID: user, Kind: domain.KindNotice,
		Title: title, State: inbox.StateUnread, CreatedAt: time.Now()}
}

func TestSlowConsumerIsDisconnectedAndResumes(t *testing.T) {
	s := newServer(t, ws.Options{SendBuffer: 4, WriteWait: 300 * time.Millisecond})
	c := s.dial(t, "u1", "")
	s.waitSubscribers(t, "u1", 1)
	// The client reads nothing: once the socket buffers fill, the writer
	// blocks, the send buffer overflows and the server drops the client.
	big := strings.Repeat("x", 64<<10)
	var pushed []*inbox.Item
	for i := 0; i < 5000 && s.local.Subscribers(ws.UserKey("app", "u1")) > 0; i++ {
		it := newItem("u1", big)
		s.replay.add(it)
		pushed = append(pushed, it)
		s.g.Push(inbox.Event{Type: inbox.EventItem, Item: it})
	}
	s.waitSubscribers(t, "u1", 0)
	if n := s.g.Connections(); n != 0 {
		t.Fatalf("%d connections left", n)
	}
	// Draining what arrived ends in an error: the connection is gone.
	var lastID string
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			break
		}
		var f struct{ Item inbox.ItemView }
		if json.Unmarshal(b, &f) == nil {
			lastID = f.Item.ID
		}
	}
	if lastID == "" || lastID == pushed[len(pushed)-1].ID {
		t.Fatalf("expected a partial stream before the disconnect, last id %q of %d", lastID, len(pushed))
	}
	// Reconnecting with last_id returns exactly the rest.
	c2 := s.dial(t, "u1", lastID)
	var rest []string
	for _, it := range pushed {
		if it.ID > lastID {
			rest = append(rest, it.ID)
		}
	}
	_ = c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i, want := range rest {
		_, b, err := c2.ReadMessage()
		if err != nil {
			t.Fatalf("resume frame %d of %d: %v", i, len(rest), err)
		}
		var f struct{ Item inbox.ItemView }
		if err := json.Unmarshal(b, &f); err != nil || f.Item.ID != want {
			t.Fatalf("resume frame %d: %s, want %s", i, f.Item.ID, want)
		}
	}
}

func TestDeadPeerIsDropped(t *testing.T) {
	s := newServer(t, ws.Options{PingInterval: 50 * time.Millisecond, PongWait: 200 * time.Millisecond})
	s.dial(t, "u1", "") // never reads, so never answers pings
	s.waitSubscribers(t, "u1", 1)
	s.waitSubscribers(t, "u1", 0)
}

func TestPingsKeepAnActiveClient(t *testing.T) {
	s := newServer(t, ws.Options{PingInterval: 30 * time.Millisecond, PongWait: 100 * time.Millisecond})
	c := s.dial(t, "u1", "")
	pings := make(chan struct{}, 100)
	c.SetPingHandler(func(data string) error {
		select {
		case pings <- struct{}{}:
		default:
		}
		return c.WriteControl(fws.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	go func() {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	for i := 0; i < 6; i++ { // several pong waits long: still connected
		select {
		case <-pings:
		case <-time.After(10 * time.Second):
			t.Fatal("no ping")
		}
	}
	if s.local.Subscribers(ws.UserKey("app", "u1")) != 1 {
		t.Fatal("an answering client was dropped")
	}
}

func TestCloseSendsGoingAway(t *testing.T) {
	s := newServer(t, ws.Options{})
	c := s.dial(t, "u1", "")
	s.waitSubscribers(t, "u1", 1)
	s.g.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := c.ReadMessage()
	if !fws.IsCloseError(err, fws.CloseGoingAway) {
		t.Fatalf("after Close: %v, want close 1001", err)
	}
	if s.g.Connections() != 0 {
		t.Fatal("connections left after Close")
	}
	// New connections are refused with 1001 too.
	c2 := s.dial(t, "u1", "")
	_ = c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := c2.ReadMessage(); !fws.IsCloseError(err, fws.CloseGoingAway) {
		t.Fatalf("connection after Close: %v", err)
	}
}

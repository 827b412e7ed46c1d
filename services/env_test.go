package services_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/auth"
	"herald.dev/platform/config"
	"herald.dev/platform/httpx"
	"herald.dev/platform/messages"
	"herald.dev/platform/sqldb"
	"herald.dev/services"
)

const testBodyLimit = 64 << 10

// env is a running API (real auth with two apps, real stores, fake lanes,
// renderer, tracker and directory) on a real listener.
type env struct {
	t          *testing.T
	db         *sqldb.DB
	store      *messages.Store
	q          *fakeQueue
	tr         *fakeTracker
	svc        *services.Service
	base       string
	appA, appB string
	keyA, keyB string
	client     *http.Client
}

func newEnv(t *testing.T, db *sqldb.DB) *env {
	t.Helper()
	ctx := context.Background()
	as := auth.NewStore(db, 0)
	a, keyA, err := as.CreateApp(ctx, "app A")
	if err != nil {
		t.Fatal(err)
	}
	b, keyB, err := as.CreateApp(ctx, "app B")
	if err != nil {
		t.Fatal(err)
	}
	store := messages.New(db, messages.Options{})
	q := &fakeQueue{}
	tr := &fakeTracker{}
	renderer := &fakeRenderer{templates: map[string]fakeTemplate{
		a.ID + "/welcome": {version: 3, category: "account", vars: []string{"name"}},
		a.ID + "/plain":   {version: 1},
		b.ID + "/welcome": {version: 1, vars: []string{"name"}},
	}}
	dir := &fakeDirectory{users: map[string]bool{a.ID + "/u1": true, a.ID + "/u2": true, b.ID + "/u1": true}}
	cfg := config.Defaults()
	svc, err := services.New(services.Deps{
		DB: db, Store: store, Queue: q, Renderer: renderer, Directory: dir, Tracker: tr, Config: cfg,
		TokenSecret: []byte("test-secret-test-secret"), Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	app := httpx.NewApp(testBodyLimit, t.Logf)
	svc.MountPublic(app)
	svc.Mount(app.Group("/v1", auth.Middleware(as)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go app.Listener(ln)
	e := &env{t: t, db: db, store: store, q: q, tr: tr, svc: svc, base: "http://" + ln.Addr().String(),
		appA: a.ID, appB: b.ID, keyA: keyA, keyB: keyB, client: &http.Client{Timeout: 20 * time.Second}}
	t.Cleanup(func() {
		_ = app.ShutdownWithTimeout(5 * time.Second)
		svc.Close()
		store.Close()
	})
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r response) problem(t *testing.T) httpx.Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json (status %d: %s)", ct, r.status, r.body)
	}
	var p httpx.Problem
	r.json(t, &p)
	return p
}

// do sends a request; body is a string (sent as is) or a value (JSON-encoded).
func (e *env) do(method, path, key string, body any, headers ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case oversized:
		return e.doOversized(method, path, key, b.body)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// oversized, as the body given to do, is sent over a raw connection, its
// answer read while the body is still being written. A server that answers
// before reading the whole body (the body limit answers on the declared
// length) closes with unread bytes and so resets the connection: the Go
// client, still writing, reports the reset rather than the answer, which
// has already arrived and stays readable.
type oversized struct{ body any }

func (e *env) doOversized(method, path, key string, v any) response {
	e.t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		e.t.Fatal(err)
	}
	head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", method, path, len(body))
	if key != "" {
		head += "Authorization: Bearer " + key + "\r\n"
	}
	written := make(chan struct{})
	go func() {
		defer close(written)
		_, _ = io.WriteString(conn, head+"\r\n") // a reset is expected; the answer tells
		_, _ = conn.Write(body)
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	conn.Close()
	<-written
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// send posts a notification as app A and expects 202.
func (e *env) send(body any, headers ...string) (id, status string) {
	e.t.Helper()
	r := e.do("POST", "/v1/notifications", e.keyA, body, headers...)
	if r.status != fiber.StatusAccepted {
		e.t.Fatalf("send: status %d: %s", r.status, r.body)
	}
	var out struct{ ID, Status string }
	r.json(e.t, &out)
	return out.ID, out.Status
}

func (e *env) countNotifications() int {
	e.t.Helper()
	var n int
	if err := e.db.W.QueryRow(`SELECT COUNT(*) FROM notifications`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

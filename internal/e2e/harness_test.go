// Package e2e runs Herald end to end: a real server (in process, or as a
// child process for crash tests) against a real SMTP server, a webhook
// receiver that checks signatures, WebSocket clients, on SQLite and MariaDB.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"herald.dev/adapters/webhook"
	"herald.dev/internal/server"
	"herald.dev/platform/config"
)

// ---- SMTP ----

type mailMsg struct {
	From string
	To   []string
	Data []byte
}

type smtpSink struct {
	mu   sync.Mutex
	msgs []mailMsg
	ch   chan mailMsg
}

func (s *smtpSink) NewSession(*smtp.Conn) (smtp.Session, error) { return &smtpSession{sink: s}, nil }

type smtpSession struct {
	sink *smtpSink
	m    mailMsg
}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error { s.m.From = from; return nil }
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.m.To = append(s.m.To, to)
	return nil
}
func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.m.Data = b
	s.sink.mu.Lock()
	s.sink.msgs = append(s.sink.msgs, s.m)
	s.sink.mu.Unlock()
	select {
	case s.sink.ch <- s.m:
	default:
	}
	s.m = mailMsg{}
	return nil
}
func (s *smtpSession) Reset()        { s.m = mailMsg{} }
func (s *smtpSession) Logout() error { return nil }

// startSMTP runs a real SMTP server on loopback.
func startSMTP(t *testing.T) (string, *smtpSink) {
	t.Helper()
	sink := &smtpSink{ch: make(chan mailMsg, 1024)}
	srv := smtp.NewServer(sink)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), sink
}

// ---- webhook receiver ----

type hook struct {
	DeliveryID     string
	NotificationID string
	UserID         string
	Title, Body    string
	Attempt        string
}

type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	secret  string
	hooks   []hook
	byNotif map[string]map[string]int // notification -> delivery id -> count
	badSig  int
	// respond decides the answer for a request; nil means 200.
	respond func(h hook) (int, http.Header)
}

func startReceiver(t *testing.T) *receiver {
	r := &receiver{byNotif: map[string]map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var p struct {
			ID             string `json:"id"`
			NotificationID string `json:"notification_id"`
			UserID         string `json:"user_id"`
			Title          string `json:"title"`
			Body           string `json:"body"`
		}
		_ = json.Unmarshal(body, &p)
		h := hook{DeliveryID: req.Header.Get(webhook.HeaderDeliveryID), NotificationID: p.NotificationID, UserID: p.UserID,
			Title: p.Title, Body: p.Body, Attempt: req.Header.Get(webhook.HeaderAttempt)}
		r.mu.Lock()
		secret, respond := r.secret, r.respond
		r.mu.Unlock()
		if secret != "" {
			if err := webhook.Verify(secret, req.Header.Get(webhook.HeaderTimestamp), body, req.Header.Get(webhook.HeaderSignature), 5*time.Minute); err != nil {
				r.mu.Lock()
				r.badSig++
				r.mu.Unlock()
				w.WriteHeader(401)
				return
			}
		}
		status := 200
		if respond != nil {
			var hdr http.Header
			status, hdr = respond(h)
			for k, v := range hdr {
				w.Header()[k] = v
			}
		}
		if status == 200 {
			r.mu.Lock()
			r.hooks = append(r.hooks, h)
			if r.byNotif[h.NotificationID] == nil {
				r.byNotif[h.NotificationID] = map[string]int{}
			}
			r.byNotif[h.NotificationID][h.DeliveryID]++
			r.mu.Unlock()
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) setSecret(s string) { r.mu.Lock(); r.secret = s; r.mu.Unlock() }

func (r *receiver) count() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.byNotif) }

// ---- Herald in process ----

type herald struct {
	*server.Server
	base   string
	key    string
	secret string
	cancel context.CancelFunc
	done   chan error
}

func testConfig(t *testing.T, dbURL string) config.Config {
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.Database.URL = dbURL
	cfg.Webhook.AllowPrivate = true
	cfg.Webhook.Timeout = 2 * time.Second
	cfg.Outbound.SweepInterval = 200 * time.Millisecond
	cfg.Outbound.BackoffBase = 50 * time.Millisecond
	cfg.Outbound.BackoffMax = time.Second
	cfg.SMTP.TLS = "none"
	return cfg
}

func startHerald(t *testing.T, cfg config.Config) *herald {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.Build(ctx, cfg, server.Options{Version: "test", Log: testWriter{t}})
	if err != nil {
		cancel()
		t.Fatalf("build: %v", err)
	}
	h := &herald{Server: s, base: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		h.done <- s.Serve(ctx, server.Options{Listener: ln, Ready: func(*server.Server) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-h.done:
		t.Fatalf("serve: %v", err)
	}
	app, key, err := s.Auth.CreateApp(context.Background(), "e2e")
	if err != nil {
		t.Fatal(err)
	}
	h.key, h.secret = key, app.Settings.WebhookSecret
	t.Cleanup(h.stop)
	return h
}

func (h *herald) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	<-h.done
	h.cancel = nil
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// call sends a JSON request with the app's key and decodes the answer.
func call(t *testing.T, base, key, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	if m == nil {
		m = map[string]any{"_raw": string(b)}
	}
	return resp.StatusCode, m
}

func must(t *testing.T, status int, m map[string]any, want ...int) {
	t.Helper()
	for _, w := range want {
		if status == w {
			return
		}
	}
	t.Fatalf("status %d, want %v: %v", status, want, m)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
}

// ---- Herald as a child process ----

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// heraldBinary builds the herald binary once per test run.
func heraldBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herald-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "herald")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/herald")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type proc struct {
	cmd  *exec.Cmd
	base string
	log  *bytes.Buffer
}

func startProc(t *testing.T, bin string, env []string) *proc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "serve", "--addr", addr)
	cmd.Env = append(os.Environ(), env...)
	var logBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, base: "http://" + addr, log: &logBuf}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("herald did not become ready: %v\n%s", err, logBuf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

func (p *proc) stop() error {
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(60 * time.Second):
		p.kill()
		return errors.New("herald did not stop within 60s of SIGINT")
	}
}

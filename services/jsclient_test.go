package services_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"herald.dev/platform/domain"
	"herald.dev/platform/sqldb/sqldbtest"
)

// jsHarness loads client.js into a bare context (no DOM) and logs callbacks.
const jsHarness = `
const fs = require("fs"), vm = require("vm");
const [src, url, token] = process.argv.slice(2);
const ctx = { WebSocket, setTimeout, clearTimeout, Promise, encodeURIComponent, JSON, Math, console, URL };
ctx.window = ctx;
vm.createContext(ctx);
vm.runInContext(fs.readFileSync(src, "utf8"), ctx);
ctx.HeraldInbox.connect({
  url, token: () => Promise.resolve(token), minDelay: 50, maxDelay: 200,
  onItem: it => console.log("item " + it.title),
  onState: it => console.log("state " + it.title + " " + it.state),
  onStatus: s => console.log("status " + s),
});
`

// proxy forwards TCP connections and can cut them all (a network drop).
type proxy struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	paused bool // refuse connections (closed at once)
}

func (p *proxy) pause(v bool) {
	p.mu.Lock()
	p.paused = v
	p.mu.Unlock()
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			paused := p.paused
			p.mu.Unlock()
			if paused {
				c.Close()
				continue
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestJavaScriptClient runs /v1/ws/client.js under Node against a real
// listener: items and state changes arrive, and after a network drop the
// client reconnects and resumes with exactly the items it missed.
func TestJavaScriptClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node is required under CI=true (apt-get install nodejs)")
		}
		t.Skip("node not installed: the JavaScript client test needs it")
	}
	e := newEnv(t, sqldbtest.SQLite(t))
	resp, err := e.client.Get(e.base + "/v1/ws/client.js")
	if err != nil {
		t.Fatal(err)
	}
	src, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	dir := t.TempDir()
	clientPath, harnessPath := filepath.Join(dir, "client.js"), filepath.Join(dir, "harness.js")
	if err := os.WriteFile(clientPath, src, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(harnessPath, []byte(jsHarness), 0o600); err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, strings.TrimPrefix(e.base, "http://"))
	tok := e.token(e.keyA, "u1")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--experimental-websocket", "--no-warnings", harnessPath, clientPath,
		"ws://"+p.ln.Addr().String()+"/v1/ws", tok.Token)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(want string) {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("node exited while waiting for %q", want)
				}
				t.Logf("node: %s", l)
				if l == want {
					return
				}
				if strings.HasPrefix(l, "item ") || strings.HasPrefix(l, "state ") {
					t.Fatalf("got %q while waiting for %q", l, want)
				}
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %q", want)
			}
		}
	}

	expect("status open")
	waitSubscribers(t, e, e.appA, "u1", 1)
	e.deliver(e.appA, "u1", "js1", domain.KindNotice, "")
	expect("item Title js1")
	box := e.inbox(e.keyA, "u1", "")
	if r := e.do("POST", "/v1/users/u1/inbox/"+box.Items[0].ID+"/read", e.keyA, nil); r.status != 200 {
		t.Fatalf("read: %d", r.status)
	}
	expect("state Title js1 read")

	// Network drop: items sent meanwhile arrive after the reconnect, once.
	p.pause(true)
	p.cut()
	expect("status closed")
	waitSubscribers(t, e, e.appA, "u1", 0)
	e.deliver(e.appA, "u1", "js2", domain.KindNotice, "")
	e.deliver(e.appA, "u1", "js3", domain.KindNotice, "")
	expect("status closed") // a refused reconnect attempt
	p.pause(false)
	expect("status open")
	expect("item Title js2")
	expect("item Title js3")
	waitSubscribers(t, e, e.appA, "u1", 1)
	e.deliver(e.appA, "u1", "js4", domain.KindNotice, "")
	expect("item Title js4") // no repeat of js1..js3 in between (expect fails on any other item)
}

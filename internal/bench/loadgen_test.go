package bench

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// serve starts an HTTP server on 127.0.0.1 that answers each POST after
// handler has run, one request at a time (a server of fixed capacity).
func serve(t *testing.T, handler func(n int64) int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var n atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		code := handler(n.Add(1))
		mu.Unlock()
		w.WriteHeader(code)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func body(buf []byte, seq int64, _ time.Time) []byte { return append(buf, `{}`...) }

// TestOpenLoopCountsQueueing: a server that takes 2 ms per request, sent
// 1,000/s over one connection, falls behind; latency runs from each
// request's scheduled time, so it grows with the backlog instead of
// showing the 2 ms service time.
func TestOpenLoopCountsQueueing(t *testing.T) {
	addr := serve(t, func(int64) int { time.Sleep(2 * time.Millisecond); return 202 })
	res := OpenLoop(context.Background(), NewClient(addr, "", 1), "/", body, 1000, 200*time.Millisecond, 1)
	if res.Sent != 200 || res.OK != 200 || res.Errors != 0 {
		t.Fatalf("sent %d ok %d errors %d, want 200 accepted", res.Sent, res.OK, res.Errors)
	}
	if p99 := res.Latency.Quantile(0.99); p99 < 50*time.Millisecond {
		t.Fatalf("p99 %v: the backlog of a server at half the offered rate is not counted", p99)
	}
	if res.Target != 1000 {
		t.Fatalf("target %v", res.Target)
	}
}

// TestOpenLoopKeepsRate: a fast server gets the offered rate, and latency
// stays near its service time.
func TestOpenLoopKeepsRate(t *testing.T) {
	addr := serve(t, func(int64) int { return 202 })
	res := OpenLoop(context.Background(), NewClient(addr, "", 8), "/", body, 500, 400*time.Millisecond, 8)
	if res.OK != 200 || res.Errors != 0 {
		t.Fatalf("ok %d errors %d, want 200", res.OK, res.Errors)
	}
	if p50 := res.Latency.Quantile(0.5); p50 > 20*time.Millisecond {
		t.Fatalf("p50 %v against a server that answers at once", p50)
	}
}

// TestClosedLoopCountsErrors: only 202 counts as accepted; the first
// error is kept.
func TestClosedLoopCountsErrors(t *testing.T) {
	addr := serve(t, func(n int64) int {
		if n%4 == 0 {
			return 500
		}
		return 202
	})
	res := ClosedLoop(context.Background(), NewClient(addr, "", 4), "/", body, 4, 200*time.Millisecond)
	if res.Sent == 0 || res.Sent != res.OK+res.Errors || res.Errors == 0 || res.OK < 2*res.Errors {
		t.Fatalf("sent %d ok %d errors %d, want one in four refused", res.Sent, res.OK, res.Errors)
	}
	if res.FirstErr != "HTTP 500" {
		t.Fatalf("first error %q", res.FirstErr)
	}
	if want := float64(res.OK) / res.Elapsed.Seconds(); res.Rate != want || res.Latency.Count() != res.Sent {
		t.Fatalf("rate %v (want %v), latencies %d for %d sent", res.Rate, want, res.Latency.Count(), res.Sent)
	}
}

// TestBaselineDecodesTheSendBody: the bare baseline accepts the bench's
// send body under the closed loop and refuses a body that is not JSON.
func TestBaselineDecodesTheSendBody(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ServeBaseline(ln)
	t.Cleanup(func() { ln.Close() })
	c := NewClient(ln.Addr().String(), "", 4)
	res := ClosedLoop(context.Background(), c, "/v1/notifications", sendBody(1000, "medium"), 4, 100*time.Millisecond)
	if res.OK == 0 || res.Errors != 0 {
		t.Fatalf("baseline: ok %d errors %d (%s)", res.OK, res.Errors, res.FirstErr)
	}
	if code, _, err := c.Do("POST", "/v1/notifications", []byte(`{"content":`), ""); err != nil || code != 400 {
		t.Fatalf("a truncated body: %d %v, want 400", code, err)
	}
}

// TestLoopsCloseTheirConnections: a phase's keep-alive connections end
// with it, so the next phase's server memory does not hold their buffers.
func TestLoopsCloseTheirConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var open atomic.Int64
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(202) }),
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		},
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()
	for name, run := range map[string]func() Result{
		"closed": func() Result {
			return ClosedLoop(context.Background(), NewClient(addr, "", 8), "/", body, 8, 100*time.Millisecond)
		},
		"open": func() Result {
			return OpenLoop(context.Background(), NewClient(addr, "", 8), "/", body, 2000, 100*time.Millisecond, 8)
		},
	} {
		if res := run(); res.OK == 0 {
			t.Fatalf("%s loop: no request answered: %+v", name, res)
		}
		deadline := time.Now().Add(2 * time.Second)
		for open.Load() > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := open.Load(); n != 0 {
			t.Errorf("%s loop: %d connections still open after it returned", name, n)
		}
	}
}

package services_test

import (
	"context"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"herald.dev/platform/auth"
	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/httpx"
	"herald.dev/platform/messages"
	"herald.dev/platform/sqldb/sqldbtest"
	"herald.dev/services"
)

// benchAPI is the real accept stack on embedded SQLite: Herald's fiber app
// (request ids, body limit, problem errors), API-key auth, validation, the
// template check (a cached map read), group-committed Accept, publish.
func benchAPI(b *testing.B) (handler fasthttp.RequestHandler, key string, q *countQueue, db func() int) {
	b.Helper()
	ctx := context.Background()
	sdb := sqldbtest.SQLite(b)
	as := auth.NewStore(sdb, 0)
	app, key, err := as.CreateApp(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	cfg := config.Defaults()
	store := messages.New(sdb, messages.Options{CommitWindow: cfg.Database.CommitWindow, CommitBatch: cfg.Database.CommitBatch})
	q = &countQueue{}
	svc, err := services.New(services.Deps{
		DB: sdb, Store: store, Queue: q, Tracker: contracts.NopTracker{}, Config: cfg, TokenSecret: []byte("bench"),
		Renderer: &fakeRenderer{templates: map[string]fakeTemplate{app.ID + "/welcome": {version: 1, vars: []string{"name"}}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	fapp := httpx.NewApp(cfg.HTTP.BodyLimit, b.Logf)
	svc.MountPublic(fapp)
	svc.Mount(fapp.Group("/v1", auth.Middleware(as)))
	b.Cleanup(func() { svc.Close(); store.Close() })
	count := func() int {
		var n int
		if err := sdb.W.QueryRow(`SELECT COUNT(*) FROM notifications`).Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n
	}
	return fapp.Handler(), key, q, count
}

var benchBody = []byte(`{"template":"welcome","data":{"name":"Ada","order":"A-1001"},"recipients":[{"user_id":"u1"}],"channels":["inapp","email"],"priority":"high","category":"orders"}`)

// BenchmarkAccept drives POST /v1/notifications through fiber's handler with
// a fasthttp RequestCtx per worker (no sockets), 256 requests in flight on
// 2 cores, so group commit can share each fsync. It reports accepted/s.
func BenchmarkAccept(b *testing.B) {
	h, key, q, count := benchAPI(b)
	auth := []byte("Bearer " + key)
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	var fails atomic.Int64
	b.SetParallelism(512)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var req fasthttp.Request
		var ctx fasthttp.RequestCtx
		for pb.Next() {
			req.Reset()
			req.Header.SetMethod("POST")
			req.SetRequestURI("/v1/notifications")
			req.Header.SetContentType("application/json")
			req.Header.SetBytesV("Authorization", auth)
			req.SetBody(benchBody)
			ctx.Init(&req, addr, nil)
			h(&ctx)
			if ctx.Response.StatusCode() != 202 {
				if fails.Add(1) == 1 {
					b.Errorf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "accepted/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/req")
	if n := count(); n < b.N {
		b.Fatalf("%d rows for %d accepted requests", n, b.N)
	}
	q.mu.Lock()
	published := q.n
	q.mu.Unlock()
	if published < b.N {
		b.Fatalf("%d published for %d accepted", published, b.N)
	}
}

// BenchmarkAcceptHTTP is the same over real HTTP/1.1 framing on fasthttp's
// in-memory listener (request parsing and response writing included).
func BenchmarkAcceptHTTP(b *testing.B) {
	h, key, _, _ := benchAPI(b)
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: h, Concurrency: 1 << 16}
	go srv.Serve(ln)
	b.Cleanup(func() { _ = srv.Shutdown(); ln.Close() })
	client := &fasthttp.Client{
		Dial:            func(string) (net.Conn, error) { return ln.Dial() },
		MaxConnsPerHost: 4096,
	}
	var fails atomic.Int64
	b.SetParallelism(512)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		for pb.Next() {
			req.Reset()
			req.Header.SetMethod("POST")
			req.SetRequestURI("http://herald/v1/notifications")
			req.Header.SetContentType("application/json")
			req.Header.Set("Authorization", "Bearer "+key)
			req.SetBody(benchBody)
			if err := client.Do(req, resp); err != nil || resp.StatusCode() != 202 {
				if fails.Add(1) == 1 {
					b.Errorf("status %d err %v: %s", resp.StatusCode(), err, resp.Body())
				}
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "accepted/s")
}

// cpuTime is the CPU time this process used (user + system): on a shared
// machine it tells the cost per request when wall-clock throughput cannot.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

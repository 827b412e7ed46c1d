package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Client sends JSON requests to one server over a bounded connection pool.
type Client struct {
	hc   *fasthttp.HostClient
	base string
	key  string
}

// NewClient returns a client for addr ("127.0.0.1:8080") with up to conns connections.
func NewClient(addr, key string, conns int) *Client {
	return &Client{
		hc: &fasthttp.HostClient{
			Addr: addr, MaxConns: conns, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
			MaxIdleConnDuration: time.Minute, MaxConnWaitTimeout: 30 * time.Second,
		},
		base: "http://" + addr,
		key:  key,
	}
}

// CloseIdle closes the client's idle connections. Each load phase closes
// its own when it ends: the server holds a 16 KiB read buffer per open
// connection, and a phase's hundreds of idle keep-alive connections would
// otherwise count in the next phase's memory.
func (c *Client) CloseIdle() { c.hc.CloseIdleConnections() }

// Do sends one request and returns the status and body.
func (c *Client) Do(method, path string, body []byte, contentType string) (int, []byte, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(c.base + path)
	req.Header.SetMethod(method)
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if body != nil {
		if contentType == "" {
			contentType = "application/json"
		}
		req.Header.SetContentType(contentType)
		req.SetBodyRaw(body)
	}
	if err := c.hc.Do(req, resp); err != nil {
		return 0, nil, err
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...), nil
}

// post sends a POST and reports only the status (no body copy: hot path).
func (c *Client) post(path string, body []byte) (int, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(c.base + path)
	req.Header.SetMethod("POST")
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	if err := c.hc.Do(req, resp); err != nil {
		return 0, err
	}
	return resp.StatusCode(), nil
}

// BodyFunc builds the body of request seq scheduled at t (the builder may
// embed t so the server side can measure end-to-end latency).
type BodyFunc func(buf []byte, seq int64, scheduled time.Time) []byte

// Result is what a load run measured.
type Result struct {
	Sent     uint64        `json:"sent"`
	OK       uint64        `json:"ok"`
	Errors   uint64        `json:"errors"`
	Elapsed  time.Duration `json:"-"`
	Rate     float64       `json:"accepted_per_s"`
	Latency  *Histogram    `json:"api_latency"`
	FirstErr string        `json:"first_error,omitempty"`
	Target   float64       `json:"target_per_s,omitempty"`
}

type recorder struct {
	res      *Result
	errOnce  sync.Once
	sent, ok atomic.Uint64
	errs     atomic.Uint64
}

func (r *recorder) record(status int, err error, lat time.Duration) {
	r.sent.Add(1)
	r.res.Latency.Record(lat)
	if err == nil && status == 202 {
		r.ok.Add(1)
		return
	}
	r.errs.Add(1)
	r.errOnce.Do(func() {
		if err != nil {
			r.res.FirstErr = err.Error()
		} else {
			r.res.FirstErr = "HTTP " + strconv.Itoa(status)
		}
	})
}

func (r *recorder) finish(start time.Time) Result {
	r.res.Elapsed = time.Since(start)
	r.res.Sent, r.res.OK, r.res.Errors = r.sent.Load(), r.ok.Load(), r.errs.Load()
	r.res.Rate = float64(r.res.OK) / r.res.Elapsed.Seconds()
	return *r.res
}

// ClosedLoop sends back to back from concurrency workers for d.
func ClosedLoop(ctx context.Context, c *Client, path string, body BodyFunc, concurrency int, d time.Duration) Result {
	defer c.CloseIdle()
	rec := &recorder{res: &Result{Latency: &Histogram{}}}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var seq atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 1024)
			for ctx.Err() == nil {
				t := time.Now()
				buf = body(buf[:0], seq.Add(1), t)
				status, err := c.post(path, buf)
				rec.record(status, err, time.Since(t))
			}
		}()
	}
	wg.Wait()
	return rec.finish(start)
}

// OpenLoop sends at a fixed rate for d. Each request has a scheduled time
// (start + i/rate); its latency runs from that time, so time spent waiting
// for a free connection or a slow server counts. At most maxInFlight
// requests are outstanding; beyond that requests queue (and their latency grows).
func OpenLoop(ctx context.Context, c *Client, path string, body BodyFunc, rate float64, d time.Duration, maxInFlight int) Result {
	defer c.CloseIdle()
	rec := &recorder{res: &Result{Latency: &Histogram{}, Target: rate}}
	total := int64(rate * d.Seconds())
	jobs := make(chan time.Time, min(total, 4_000_000))
	var wg sync.WaitGroup
	var seq atomic.Int64
	for w := 0; w < maxInFlight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 1024)
			for t := range jobs {
				buf = body(buf[:0], seq.Add(1), t)
				status, err := c.post(path, buf)
				rec.record(status, err, time.Since(t))
			}
		}()
	}
	start := time.Now()
	interval := float64(time.Second) / rate
	for i := int64(0); i < total && ctx.Err() == nil; {
		now := time.Now()
		due := int64(float64(now.Sub(start))/interval) + 1
		for ; i < due && i < total; i++ {
			jobs <- start.Add(time.Duration(float64(i) * interval))
		}
		time.Sleep(200 * time.Microsecond)
	}
	close(jobs)
	wg.Wait()
	return rec.finish(start)
}

// String renders a result on one line.
func (r Result) String() string {
	s := r.Latency.Summarize()
	out := fmt.Sprintf("accepted %d (%.0f/s) errors %d  api latency p50 %.2f ms p99 %.2f ms p99.9 %.2f ms max %.2f ms",
		r.OK, r.Rate, r.Errors, s.P50, s.P99, s.P999, s.Max)
	if r.FirstErr != "" {
		out += "  first error: " + r.FirstErr
	}
	return out
}

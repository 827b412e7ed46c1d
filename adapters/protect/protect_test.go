package protect

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald.dev/platform/contracts"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func ok(calls *atomic.Int32) func(context.Context) (contracts.Result, error) {
	return func(context.Context) (contracts.Result, error) {
		calls.Add(1)
		return contracts.Result{ProviderID: "m1"}, nil
	}
}

func fail(calls *atomic.Int32, err error) func(context.Context) (contracts.Result, error) {
	return func(context.Context) (contracts.Result, error) {
		calls.Add(1)
		return contracts.Result{}, err
	}
}

func retryAfter(t *testing.T, err error) time.Duration {
	t.Helper()
	var se *contracts.SendError
	if !errors.As(err, &se) || !se.Retryable {
		t.Fatalf("err = %v (%T), want a retryable SendError", err, err)
	}
	return se.RetryAfter
}

func TestRateLimitDefersInsteadOfDropping(t *testing.T) {
	c := newClock()
	g := New("aliyun", Options{Rate: 2, Burst: 2, MaxWait: -1, Now: c.Now})
	var calls atomic.Int32
	for i := range 2 {
		if _, err := g.Do(context.Background(), ok(&calls)); err != nil {
			t.Fatalf("send %d within burst: %v", i, err)
		}
	}
	_, err := g.Do(context.Background(), ok(&calls))
	if !errors.Is(err, ErrRateLimited) {
		t.Fatalf("third send: err = %v, want ErrRateLimited", err)
	}
	if after := retryAfter(t, err); after != 500*time.Millisecond {
		t.Fatalf("RetryAfter = %v, want 500ms (one token at 2/s)", after)
	}
	if calls.Load() != 2 {
		t.Fatalf("vendor called %d times, want 2", calls.Load())
	}
	c.Add(500 * time.Millisecond)
	if _, err := g.Do(context.Background(), ok(&calls)); err != nil {
		t.Fatalf("after the refill: %v", err)
	}
	// Rate-limit deferrals do not count against the breaker.
	if g.State() != "closed" {
		t.Fatalf("state = %s, want closed", g.State())
	}
}

func TestRateLimitWaitsWithinMaxWait(t *testing.T) {
	g := New("fast", Options{Rate: 1000, Burst: 1, MaxWait: time.Second})
	var calls atomic.Int32
	for i := range 5 {
		if _, err := g.Do(context.Background(), ok(&calls)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if calls.Load() != 5 {
		t.Fatalf("calls = %d, want 5", calls.Load())
	}
}

func TestRateLimitWaitHonoursCancel(t *testing.T) {
	g := New("slow", Options{Rate: 0.001, Burst: 1, MaxWait: time.Hour})
	var calls atomic.Int32
	if _, err := g.Do(context.Background(), ok(&calls)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := g.Do(ctx, ok(&calls))
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Do ignored the cancelled context while waiting for the limiter")
	}
	if calls.Load() != 1 {
		t.Fatalf("calls = %d, want 1", calls.Load())
	}
}

func TestVendorThrottlePausesProvider(t *testing.T) {
	c := newClock()
	g := New("tencent", Options{Now: c.Now})
	var calls atomic.Int32
	_, err := g.Do(context.Background(), fail(&calls, Throttled("LimitExceeded", errors.New("too fast"), 30*time.Second)))
	if after := retryAfter(t, err); after != 30*time.Second {
		t.Fatalf("RetryAfter = %v, want 30s", after)
	}
	// While paused the vendor is not called and the remaining pause is reported.
	c.Add(10 * time.Second)
	_, err = g.Do(context.Background(), ok(&calls))
	if !errors.Is(err, ErrThrottled) {
		t.Fatalf("err = %v, want ErrThrottled", err)
	}
	if after := retryAfter(t, err); after != 20*time.Second {
		t.Fatalf("RetryAfter = %v, want the remaining 20s", after)
	}
	if calls.Load() != 1 {
		t.Fatalf("vendor called %d times during the pause, want 1", calls.Load())
	}
	c.Add(20 * time.Second)
	if _, err := g.Do(context.Background(), ok(&calls)); err != nil {
		t.Fatalf("after the pause: %v", err)
	}
	if g.State() != "closed" {
		t.Fatalf("throttling opened the circuit: %s", g.State())
	}
}

func TestBreakerOpensOnConsecutiveFailures(t *testing.T) {
	g := New("aliyun", Options{FailureThreshold: 3, OpenTimeout: time.Hour})
	var calls atomic.Int32
	transient := contracts.Retryable("vendor 503", errors.New("503"), 0)
	for range 3 {
		if _, err := g.Do(context.Background(), fail(&calls, transient)); !errors.Is(err, transient) {
			t.Fatalf("err = %v, want the vendor's error", err)
		}
	}
	if g.State() != "open" {
		t.Fatalf("state = %s after 3 failures, want open", g.State())
	}
	_, err := g.Do(context.Background(), ok(&calls))
	if !errors.Is(err, ErrOpen) {
		t.Fatalf("err = %v, want ErrOpen", err)
	}
	if after := retryAfter(t, err); after < 59*time.Minute {
		t.Fatalf("RetryAfter = %v, want about the open timeout", after)
	}
	if calls.Load() != 3 {
		t.Fatalf("vendor called %d times, want 3 (none while open)", calls.Load())
	}
	if !ShouldFailover(err) {
		t.Fatal("an open circuit should let a router fail over")
	}
}

func TestBreakerCounting(t *testing.T) {
	cases := []struct {
		name     string
		err      error
		wantOpen bool
	}{
		{"transient", contracts.Retryable("503", nil, 0), true},
		{"plain error", errors.New("connection reset"), true},
		{"provider fault", ProviderFault("bad credentials", errors.New("InvalidAccessKeyId")), true},
		{"bad recipient", contracts.Permanent("bad phone", nil), false},
		{"throttled", Throttled("slow down", nil, time.Millisecond), false},
		{"recipient limited", RecipientLimited("1 per minute per number", nil, time.Minute), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			g := New("p", Options{FailureThreshold: 2, OpenTimeout: time.Hour, Now: c.Now})
			var calls atomic.Int32
			for range 3 {
				g.Do(context.Background(), fail(&calls, tc.err))
				c.Add(time.Hour) // past any throttle pause
			}
			if got := g.State() == "open"; got != tc.wantOpen {
				t.Fatalf("open = %v, want %v", got, tc.wantOpen)
			}
		})
	}
}

func TestCancelledContextDoesNotCount(t *testing.T) {
	g := New("p", Options{FailureThreshold: 1, OpenTimeout: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	_, err := g.Do(ctx, func(ctx context.Context) (contracts.Result, error) {
		calls.Add(1)
		cancel()
		return contracts.Result{}, fmt.Errorf("post: %w", ctx.Err())
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if g.State() != "closed" {
		t.Fatalf("a cancellation opened the circuit")
	}
	if _, err := g.Do(ctx, ok(&calls)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Do on a cancelled context: %v", err)
	}
	if calls.Load() != 1 {
		t.Fatalf("calls = %d, want 1", calls.Load())
	}
}

func TestShouldFailover(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{contracts.Retryable("503", nil, 0), true},
		{ProviderFault("balance", nil), true},
		{contracts.Permanent("bad number", nil), false},
		{fmt.Errorf("send: %w", context.Canceled), false},
		{errors.New("unclassified"), true},
		{RecipientLimited("per-number limit", nil, time.Minute), false},
	}
	for _, tc := range cases {
		if got := ShouldFailover(tc.err); got != tc.want {
			t.Errorf("ShouldFailover(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func BenchmarkGuardDo(b *testing.B) {
	g := New("bench", Options{Rate: 1e9, Burst: 1 << 20})
	fn := func(context.Context) (contracts.Result, error) { return contracts.Result{}, nil }
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			g.Do(ctx, fn)
		}
	})
}

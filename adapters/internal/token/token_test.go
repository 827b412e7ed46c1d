package token

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// vendor hands out tok-1, tok-2, ... and can be held.
type vendor struct {
	n    atomic.Int32
	gate chan struct{} // when non-nil, each fetch waits for a value
	err  error
	ttl  time.Duration
}

func (v *vendor) fetch(ctx context.Context) (string, time.Duration, error) {
	if v.gate != nil {
		select {
		case <-v.gate:
		case <-ctx.Done():
			return "", 0, ctx.Err()
		}
	}
	n := v.n.Add(1)
	if v.err != nil {
		return "", 0, v.err
	}
	return fmt.Sprintf("tok-%d", n), v.ttl, nil
}

func TestConcurrentGetsShareOneFetch(t *testing.T) {
	v := &vendor{gate: make(chan struct{}), ttl: 2 * time.Hour}
	c := New(v.fetch, Options{})
	const workers = 1000
	var wg sync.WaitGroup
	got := make([]string, workers)
	errs := make([]error, workers)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = c.Get(context.Background())
		}()
	}
	close(v.gate) // let the (single) fetch finish once everyone may be waiting
	wg.Wait()
	for i := range workers {
		if errs[i] != nil || got[i] != "tok-1" {
			t.Fatalf("worker %d: %q, %v", i, got[i], errs[i])
		}
	}
	if n := v.n.Load(); n != 1 {
		t.Fatalf("%d token fetches for %d concurrent callers, want 1", n, workers)
	}
	if c.Fetches() != 1 {
		t.Fatalf("Fetches() = %d", c.Fetches())
	}
}

func TestRefreshAheadKeepsServingValidToken(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	v := &vendor{ttl: 2 * time.Hour}
	c := New(v.fetch, Options{Margin: 5 * time.Minute, Now: clk.Now})
	if tok, _ := c.Get(context.Background()); tok != "tok-1" {
		t.Fatalf("first token %q", tok)
	}
	clk.Add(time.Hour)
	if tok, _ := c.Get(context.Background()); tok != "tok-1" || v.n.Load() != 1 {
		t.Fatalf("an hour in: %q after %d fetches, want the cached tok-1", tok, v.n.Load())
	}
	// Inside the margin: the caller gets the still-valid token at once and a
	// background refresh replaces it.
	v.gate = make(chan struct{})
	clk.Add(56 * time.Minute)
	if tok, _ := c.Get(context.Background()); tok != "tok-1" {
		t.Fatalf("inside the margin got %q, want the still-valid tok-1", tok)
	}
	if tok, _ := c.Get(context.Background()); tok != "tok-1" {
		t.Fatalf("second call during the refresh got %q", tok)
	}
	close(v.gate)
	waitFor(t, func() bool { tok, _ := c.Get(context.Background()); return tok == "tok-2" })
	if n := v.n.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

func TestExpiredTokenIsFetchedAgain(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	v := &vendor{ttl: 7200 * time.Second}
	c := New(v.fetch, Options{Now: clk.Now})
	c.Get(context.Background())
	clk.Add(7200 * time.Second)
	if tok, err := c.Get(context.Background()); err != nil || tok != "tok-2" {
		t.Fatalf("after expiry: %q, %v; want tok-2", tok, err)
	}
}

func TestShortLivedTokenMarginIsCapped(t *testing.T) {
	// QQ hands out a new token only in the last 60 s of the old one's life;
	// a 5-minute margin must not make every call refetch.
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	v := &vendor{ttl: 50 * time.Second}
	c := New(v.fetch, Options{Margin: 5 * time.Minute, Now: clk.Now})
	c.Get(context.Background())
	clk.Add(10 * time.Second)
	c.Get(context.Background())
	if n := v.n.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1 (margin capped at half the lifetime)", n)
	}
}

func TestInvalidateDropsOnlyTheStaleToken(t *testing.T) {
	v := &vendor{ttl: time.Hour}
	c := New(v.fetch, Options{})
	stale, _ := c.Get(context.Background())
	// Many workers report the same rejected token: one refresh.
	for range 50 {
		c.Invalidate(stale)
	}
	fresh, _ := c.Get(context.Background())
	for range 50 {
		c.Invalidate(stale) // late reports of the old token
		if tok, _ := c.Get(context.Background()); tok != fresh {
			t.Fatalf("got %q, want %q", tok, fresh)
		}
	}
	if fresh != "tok-2" || v.n.Load() != 2 {
		t.Fatalf("fresh = %q after %d fetches; want tok-2 after 2", fresh, v.n.Load())
	}
}

func TestCancelledWaiterDoesNotAbortFetch(t *testing.T) {
	v := &vendor{gate: make(chan struct{}), ttl: time.Hour}
	c := New(v.fetch, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx)
		done <- err
	}()
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.flight != nil })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	close(v.gate)
	if tok, err := c.Get(context.Background()); err != nil || tok != "tok-1" {
		t.Fatalf("after the cancelled waiter: %q, %v; want the shared fetch's tok-1", tok, err)
	}
	if v.n.Load() != 1 {
		t.Fatalf("%d fetches, want 1", v.n.Load())
	}
}

func TestFetchErrorReachesWaitersAndIsRetried(t *testing.T) {
	v := &vendor{ttl: time.Hour, err: errors.New("40013 invalid appid")}
	c := New(v.fetch, Options{})
	if _, err := c.Get(context.Background()); err == nil || err.Error() != "40013 invalid appid" {
		t.Fatalf("err = %v", err)
	}
	v.err = nil
	if tok, err := c.Get(context.Background()); err != nil || tok != "tok-2" {
		t.Fatalf("retry after the failure: %q, %v", tok, err)
	}
}

func TestEmptyTokenIsAnError(t *testing.T) {
	c := New(func(context.Context) (string, time.Duration, error) { return "", time.Hour, nil }, Options{})
	if _, err := c.Get(context.Background()); err == nil {
		t.Fatal("an empty token was accepted")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

func BenchmarkGetCached(b *testing.B) {
	c := New(func(context.Context) (string, time.Duration, error) { return "t", time.Hour, nil }, Options{})
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Get(ctx)
		}
	})
}

func TestUseRetriesOnceAfterRejection(t *testing.T) {
	v := &vendor{ttl: time.Hour}
	c := New(v.fetch, Options{})
	var calls []string
	res, err := Use(context.Background(), c, func(_ context.Context, tok string) (string, error) {
		calls = append(calls, tok)
		if tok == "tok-1" {
			return "", fmt.Errorf("42001 access_token expired: %w", ErrRejected)
		}
		return "sent with " + tok, nil
	})
	if err != nil || res != "sent with tok-2" || fmt.Sprint(calls) != "[tok-1 tok-2]" {
		t.Fatalf("res %q err %v calls %v", res, err, calls)
	}
	// A token rejected twice is reported, not retried forever.
	n := 0
	_, err = Use(context.Background(), c, func(context.Context, string) (string, error) {
		n++
		return "", fmt.Errorf("40001: %w", ErrRejected)
	})
	if !errors.Is(err, ErrRejected) || n != 2 {
		t.Fatalf("err %v after %d calls, want ErrRejected after 2", err, n)
	}
}

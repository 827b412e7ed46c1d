// Package token caches a vendor access token (WeChat, WeCom, DingTalk, QQ)
// for every worker of a provider.
//
//   - One fetch at a time: concurrent callers that find no valid token wait
//     for a single in-flight fetch (singleflight), so a thousand concurrent
//     sends cause one token request.
//   - Refresh ahead: once a token is within Margin of its expiry, the first
//     caller starts a background refresh and every caller keeps using the
//     still-valid token until the new one arrives.
//   - Invalidation: when the vendor rejects a token as expired or invalid
//     (WeChat 40001/40014/42001, ...), the sender calls Invalidate with the
//     token it used; only that token is dropped, so many workers reporting
//     the same stale token cause one refresh.
//
// A fetch runs detached from the caller's context (with its own timeout),
// so one cancelled caller does not fail the others waiting on it.
package token

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// FetchFunc obtains a new token and how long it lives.
type FetchFunc func(ctx context.Context) (token string, ttl time.Duration, err error)

// Options tune a Cache.
type Options struct {
	// Margin is how long before expiry a token is refreshed (default 5m,
	// capped at half the token's lifetime).
	Margin time.Duration
	// FetchTimeout bounds one fetch (default 15s).
	FetchTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// refreshRetry spaces refresh-ahead attempts after a failed one.
const refreshRetry = 10 * time.Second

// Cache holds one provider's token.
type Cache struct {
	fetch FetchFunc
	opt   Options

	mu        sync.Mutex
	token     string
	expiresAt time.Time // when the vendor stops accepting it
	refreshAt time.Time // when to start refreshing
	flight    *call
	fetches   atomic.Int64
}

type call struct {
	done  chan struct{}
	token string
	err   error
}

// New returns a cache around fetch.
func New(fetch FetchFunc, o Options) *Cache {
	if o.Margin <= 0 {
		o.Margin = 5 * time.Minute
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = 15 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Cache{fetch: fetch, opt: o}
}

// Get returns a valid token, fetching one if needed.
func (c *Cache) Get(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	now := c.opt.Now()
	c.mu.Lock()
	if c.token != "" && now.Before(c.expiresAt) {
		tok := c.token
		if !now.Before(c.refreshAt) && c.flight == nil {
			c.startLocked() // refresh ahead; keep serving the current token
		}
		c.mu.Unlock()
		return tok, nil
	}
	cl := c.flight
	if cl == nil {
		cl = c.startLocked()
	}
	c.mu.Unlock()
	select {
	case <-cl.done:
		return cl.token, cl.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// startLocked launches the single in-flight fetch; c.mu is held.
func (c *Cache) startLocked() *call {
	cl := &call{done: make(chan struct{})}
	c.flight = cl
	go c.run(cl)
	return cl
}

func (c *Cache) run(cl *call) {
	c.fetches.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), c.opt.FetchTimeout)
	tok, ttl, err := c.fetch(ctx)
	cancel()
	if err == nil && (tok == "" || ttl <= 0) {
		err = fmt.Errorf("token endpoint returned an empty token or lifetime (%q, %v)", tok, ttl)
	}
	now := c.opt.Now()
	c.mu.Lock()
	if err == nil {
		margin := min(c.opt.Margin, ttl/2)
		c.token = tok
		c.expiresAt = now.Add(ttl)
		c.refreshAt = c.expiresAt.Add(-margin)
	} else if c.token != "" {
		// A refresh-ahead failed while the current token is still valid:
		// try again a little later rather than on every call.
		c.refreshAt = now.Add(refreshRetry)
		if c.refreshAt.After(c.expiresAt) {
			c.refreshAt = c.expiresAt
		}
	}
	c.flight = nil
	c.mu.Unlock()
	cl.token, cl.err = tok, err
	close(cl.done)
}

// Invalidate drops the cached token if it is still stale (the token a
// vendor just rejected); a newer token is kept.
func (c *Cache) Invalidate(stale string) {
	c.mu.Lock()
	if c.token == stale {
		c.token = ""
		c.expiresAt = time.Time{}
	}
	c.mu.Unlock()
}

// Fetches returns how many fetches the cache has started.
func (c *Cache) Fetches() int64 { return c.fetches.Load() }

// ErrRejected is what a call reports (wrapped) when the vendor rejected the
// token it was given as expired or invalid.
var ErrRejected = errors.New("access token rejected")

// Use runs call with a cached token. When call reports the token rejected
// (an error wrapping ErrRejected), the token is invalidated and call runs
// once more with a fresh one; a second rejection is returned as is.
func Use[T any](ctx context.Context, c *Cache, call func(ctx context.Context, token string) (T, error)) (T, error) {
	var zero T
	tok, err := c.Get(ctx)
	if err != nil {
		return zero, err
	}
	v, err := call(ctx, tok)
	if err == nil || !errors.Is(err, ErrRejected) {
		return v, err
	}
	c.Invalidate(tok)
	if tok, err = c.Get(ctx); err != nil {
		return zero, err
	}
	return call(ctx, tok)
}

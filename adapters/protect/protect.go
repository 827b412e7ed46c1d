// Package protect shields vendor providers (and Herald) from each other: a
// Guard per provider combines a token-bucket rate limiter
// (golang.org/x/time/rate) sized to the vendor's published quota, a pause
// honouring the vendor's own throttling answers (HTTP 429 Retry-After and
// throttling error codes) and a circuit breaker (sony/gobreaker/v2) that
// stops calling a provider that keeps failing.
//
// A Guard never drops a message: whenever it refuses to call the vendor it
// returns a retryable contracts.SendError carrying RetryAfter, so the
// outbound handler defers the delivery (or a router tries another provider).
//
// Vendor clients classify their failures with the helpers here:
// contracts.Permanent for the recipient's fault (a bad phone number, an
// unknown openid), ProviderFault for the provider's fault (bad credentials,
// an unapproved template, an empty balance: another provider may succeed),
// Throttled for vendor throttling, and contracts.Retryable for transient
// errors (5xx, network).
package protect

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"herald.dev/platform/contracts"
)

var (
	// ErrOpen means the provider's circuit is open: it failed repeatedly and
	// is not called until the open period ends.
	ErrOpen = errors.New("circuit open")
	// ErrRateLimited means the provider's rate limit would make the send
	// wait longer than MaxWait; the send is deferred.
	ErrRateLimited = errors.New("rate limit reached")
	// ErrThrottled marks vendor throttling (429, throttling error codes).
	ErrThrottled = errors.New("throttled by vendor")
	// ErrProviderFault marks failures caused by the provider account or its
	// configuration rather than the recipient; a router may try another
	// provider, and the breaker counts them.
	ErrProviderFault = errors.New("provider fault")
	// ErrRecipientLimited marks a vendor's per-recipient frequency limit
	// (e.g. one SMS per number per minute): retried later, never failed
	// over (that would defeat the limit) and no reflection on the
	// provider's health.
	ErrRecipientLimited = errors.New("recipient frequency limit")
)

// markedError carries a sentinel next to the underlying error.
type markedError struct {
	mark error
	err  error
}

func (e *markedError) Error() string {
	if e.err == nil {
		return e.mark.Error()
	}
	return e.err.Error()
}

func (e *markedError) Unwrap() []error {
	if e.err == nil {
		return []error{e.mark}
	}
	return []error{e.mark, e.err}
}

// ProviderFault returns a permanent failure that is the provider's fault
// (credentials, account, unapproved template or signature, balance).
func ProviderFault(reason string, err error) error {
	return contracts.Permanent(reason, &markedError{mark: ErrProviderFault, err: err})
}

// Throttled returns a retryable failure asking to wait after (at least one
// second) before the provider is called again.
func Throttled(reason string, err error, after time.Duration) error {
	if after < time.Second {
		after = time.Second
	}
	return contracts.Retryable(reason, &markedError{mark: ErrThrottled, err: err}, after)
}

// RecipientLimited returns a retryable failure for a per-recipient limit,
// to be retried after (at least one second).
func RecipientLimited(reason string, err error, after time.Duration) error {
	if after < time.Second {
		after = time.Second
	}
	return contracts.Retryable(reason, &markedError{mark: ErrRecipientLimited, err: err}, after)
}

// IsProviderFault reports whether err is the provider's fault.
func IsProviderFault(err error) bool { return errors.Is(err, ErrProviderFault) }

// ShouldFailover reports whether another provider may succeed where this
// one failed: retryable failures (including throttling, an open circuit and
// rate limiting) and provider faults. A permanent recipient error (a bad
// address) fails everywhere, and a cancelled context stops the send.
func ShouldFailover(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, ErrRecipientLimited) {
		return false
	}
	if IsProviderFault(err) {
		return true
	}
	retry, _ := contracts.Classify(err)
	return retry
}

// Options configure a Guard. Zero values take the defaults noted.
type Options struct {
	// Rate is the sustained number of sends per second; 0 means unlimited.
	Rate float64
	// Burst is how many sends may go at once (default: max(1, Rate)).
	Burst int
	// MaxWait is the longest a send waits for the rate limiter before it is
	// deferred with ErrRateLimited (default 1s; negative means never wait).
	MaxWait time.Duration
	// FailureThreshold is how many consecutive failures open the circuit
	// (default 5).
	FailureThreshold int
	// OpenTimeout is how long the circuit stays open before one probe is
	// let through (default 30s).
	OpenTimeout time.Duration
	// Now is the clock for the limiter and the vendor pause (tests fix it);
	// the breaker keeps its own wall clock.
	Now func() time.Time
}

// Defaults for Options.
const (
	DefaultMaxWait          = time.Second
	DefaultFailureThreshold = 5
	DefaultOpenTimeout      = 30 * time.Second
)

func (o Options) withDefaults() Options {
	if o.Burst <= 0 {
		o.Burst = max(1, int(o.Rate))
	}
	if o.MaxWait == 0 {
		o.MaxWait = DefaultMaxWait
	}
	if o.FailureThreshold <= 0 {
		o.FailureThreshold = DefaultFailureThreshold
	}
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = DefaultOpenTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Guard protects one provider. It is safe for concurrent use.
type Guard struct {
	name string
	opt  Options
	lim  *rate.Limiter // nil when unlimited
	cb   *gobreaker.CircuitBreaker[contracts.Result]

	mu          sync.Mutex
	pausedUntil time.Time
	openedAt    time.Time
}

// verdict is how one call counts for the breaker.
type verdict int

const (
	countSuccess  verdict = iota // sent, or the recipient's fault
	countFailure                 // transient failure or provider fault
	countExcluded                // cancelled, throttled or rate limited: says nothing about health
)

// outcome carries the original error through the breaker with its verdict.
type outcome struct {
	err error
	v   verdict
}

func (o *outcome) Error() string { return o.err.Error() }

// New returns a Guard for the named provider.
func New(name string, o Options) *Guard {
	o = o.withDefaults()
	g := &Guard{name: name, opt: o}
	if o.Rate > 0 {
		g.lim = rate.NewLimiter(rate.Limit(o.Rate), o.Burst)
	}
	threshold := uint32(o.FailureThreshold)
	g.cb = gobreaker.NewCircuitBreaker[contracts.Result](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Timeout:     o.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= threshold },
		IsSuccessful: func(err error) bool {
			var oc *outcome
			return err == nil || (errors.As(err, &oc) && oc.v == countSuccess)
		},
		IsExcluded: func(err error) bool {
			var oc *outcome
			return errors.As(err, &oc) && oc.v == countExcluded
		},
		OnStateChange: func(_ string, _, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				g.mu.Lock()
				g.openedAt = time.Now()
				g.mu.Unlock()
			}
		},
	})
	return g
}

// Name returns the provider name the guard was made for.
func (g *Guard) Name() string { return g.name }

// State returns the circuit state: "closed", "half-open" or "open".
func (g *Guard) State() string { return g.cb.State().String() }

// Do runs fn unless the provider is paused by vendor throttling, its circuit
// is open or its rate limit would make the caller wait longer than MaxWait;
// in those cases it returns a retryable error with RetryAfter and fn is not
// called. A vendor throttling answer from fn pauses the provider for its
// RetryAfter.
func (g *Guard) Do(ctx context.Context, fn func(context.Context) (contracts.Result, error)) (contracts.Result, error) {
	if err := ctx.Err(); err != nil {
		return contracts.Result{}, fmt.Errorf("%s: %w", g.name, err)
	}
	now := g.opt.Now()
	if wait := g.paused(now); wait > 0 {
		return contracts.Result{}, contracts.Retryable(g.name+" is throttled by the vendor", ErrThrottled, wait)
	}
	res, err := g.cb.Execute(func() (contracts.Result, error) {
		if err := g.waitRate(ctx, now); err != nil {
			return contracts.Result{}, &outcome{err: err, v: countExcluded}
		}
		res, err := fn(ctx)
		if err == nil {
			return res, nil
		}
		return res, &outcome{err: err, v: g.judge(ctx, err)}
	})
	var oc *outcome
	if errors.As(err, &oc) {
		err = oc.err
	}
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return contracts.Result{}, contracts.Retryable(g.name+" circuit is open", fmt.Errorf("%w: %w", ErrOpen, err), g.openRemaining())
	}
	if err != nil && errors.Is(err, ErrThrottled) {
		if _, after := contracts.Classify(err); after > 0 {
			g.pause(g.opt.Now(), after)
		}
	}
	return res, err
}

func (g *Guard) judge(ctx context.Context, err error) verdict {
	switch {
	case ctx.Err() != nil:
		return countExcluded
	case errors.Is(err, ErrThrottled), errors.Is(err, ErrRateLimited), errors.Is(err, ErrRecipientLimited):
		return countExcluded
	case IsProviderFault(err):
		return countFailure
	}
	if retry, _ := contracts.Classify(err); retry {
		return countFailure
	}
	return countSuccess
}

// waitRate takes one token, waiting up to MaxWait for it.
func (g *Guard) waitRate(ctx context.Context, now time.Time) error {
	if g.lim == nil {
		return nil
	}
	r := g.lim.ReserveN(now, 1)
	if !r.OK() {
		return contracts.Retryable(g.name+" rate limit", ErrRateLimited, time.Second)
	}
	delay := r.DelayFrom(now)
	if delay <= 0 {
		return nil
	}
	if g.opt.MaxWait < 0 || delay > g.opt.MaxWait {
		r.CancelAt(now)
		return contracts.Retryable(fmt.Sprintf("%s rate limit (%.4g/s)", g.name, g.opt.Rate), ErrRateLimited, delay)
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.Cancel()
		return fmt.Errorf("%s: waiting for the rate limit: %w", g.name, ctx.Err())
	}
}

func (g *Guard) paused(now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Before(g.pausedUntil) {
		return g.pausedUntil.Sub(now)
	}
	return 0
}

func (g *Guard) pause(now time.Time, d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if until := now.Add(d); until.After(g.pausedUntil) {
		g.pausedUntil = until
	}
}

func (g *Guard) openRemaining() time.Duration {
	g.mu.Lock()
	opened := g.openedAt
	g.mu.Unlock()
	left := g.opt.OpenTimeout - time.Since(opened)
	if opened.IsZero() || left < time.Second {
		return time.Second
	}
	return left
}

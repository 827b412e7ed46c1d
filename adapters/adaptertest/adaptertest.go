// Package adaptertest is the conformance suite every channel adapter passes.
//
// An adapter's test builds a Harness whose Setup returns the adapter pointed
// at a local receiver (an SMTP server, an HTTP server, a fake inbox, ...) and
// exposes what that receiver saw; Run then checks the behaviour the outbound
// handler relies on: one observation per successful send carrying the
// delivery id, prompt failure on a cancelled context, retryable transient
// failures, permanent bad addresses, correct behaviour under concurrency and
// a Channel() that matches the registered name.
package adaptertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"herald.dev/adapters/registry"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

// Harness describes one adapter under test.
type Harness struct {
	// Channel is the name the adapter registers under.
	Channel domain.Channel
	// Setup builds a fresh adapter pointed at a fresh receiver; it is called
	// once per case and should register its own cleanup with t.Cleanup.
	Setup func(t *testing.T) *Env
}

// Env is one adapter wired to one receiver.
type Env struct {
	Sender contracts.Sender
	// Address points a delivery at the receiver (sets Address, UserID or
	// Profile as the channel needs). Required.
	Address func(d *contracts.Delivery)
	// Seen returns the delivery ids the receiver has observed, one entry per
	// observation (a duplicate delivery appears twice). Required.
	Seen func() []string
	// FailNext makes the receiver fail its next request with a transient
	// error (SMTP 451, HTTP 503, a failing store). Nil when the channel has
	// no receiver that can fail (console, bench).
	FailNext func()
	// BadAddress makes d undeliverable for good (a malformed address, a
	// missing user id). Nil when the channel accepts any address.
	BadAddress func(d *contracts.Delivery)
	// Stall makes the receiver's next request block until release is called;
	// entered is closed once that request has reached the receiver. Nil when
	// the channel does no I/O.
	Stall func() (entered <-chan struct{}, release func())
}

// Concurrency is how many goroutines the concurrent case uses.
const Concurrency = 50

// hangLimit bounds how long the suite waits for a send that should already
// have returned; hitting it means the adapter ignores its context.
const hangLimit = 15 * time.Second

// Delivery returns a complete delivery for ch with the given id, before the
// harness points it at its receiver.
func Delivery(ch domain.Channel, id string) *contracts.Delivery {
	return &contracts.Delivery{
		ID:             id,
		AppID:          "app_conformance",
		NotificationID: "ntf_" + id,
		UserID:         "user_conformance",
		Channel:        ch,
		Priority:       domain.PriorityHigh,
		Kind:           domain.KindNotice,
		Category:       "conformance",
		Content: domain.Content{
			Subject: "Conformance 一致性测试 " + id,
			Text:    "Plain text body for " + id + ".\nSecond line: 你好，世界。",
			HTML:    "<p>HTML body for <b>" + id + "</b></p><p>你好，世界。</p>",
			Title:   "Conformance " + id,
			Body:    "In-app body for " + id,
		},
		Data:      map[string]any{"order": "A-1", "n": 3},
		Attempt:   1,
		CreatedAt: time.Now().UTC().Truncate(time.Millisecond),
	}
}

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.Channel == "" || h.Setup == nil {
		t.Fatal("adaptertest: Harness needs Channel and Setup")
	}
	setup := func(t *testing.T) *Env {
		t.Helper()
		env := h.Setup(t)
		if env == nil || env.Sender == nil || env.Address == nil || env.Seen == nil {
			t.Fatal("adaptertest: Setup must return Sender, Address and Seen")
		}
		return env
	}
	newDelivery := func(env *Env, id string) *contracts.Delivery {
		d := Delivery(h.Channel, id)
		env.Address(d)
		return d
	}

	t.Run("channel matches registered name", func(t *testing.T) {
		env := setup(t)
		if got := env.Sender.Channel(); got != h.Channel {
			t.Fatalf("Channel() = %q, want %q", got, h.Channel)
		}
		if _, ok := registry.Lookup(h.Channel); !ok {
			t.Fatalf("channel %q is not registered (registered: %v)", h.Channel, registry.Names())
		}
	})

	t.Run("send is observed once with the delivery id", func(t *testing.T) {
		env := setup(t)
		d := newDelivery(env, "dlv_conf_once")
		if _, err := env.Sender.Send(context.Background(), d); err != nil {
			t.Fatalf("Send: %v", err)
		}
		if got := count(env.Seen(), d.ID); got != 1 {
			t.Fatalf("receiver saw %s %d times (seen %v), want once", d.ID, got, env.Seen())
		}
	})

	t.Run("redelivery carries the same id", func(t *testing.T) {
		env := setup(t)
		d := newDelivery(env, "dlv_conf_again")
		for attempt := 1; attempt <= 2; attempt++ {
			d.Attempt = attempt
			if _, err := env.Sender.Send(context.Background(), d); err != nil {
				t.Fatalf("Send attempt %d: %v", attempt, err)
			}
		}
		seen := env.Seen()
		if len(seen) == 0 {
			t.Fatal("receiver saw nothing")
		}
		for _, id := range seen {
			if id != d.ID {
				t.Fatalf("receiver saw id %q, want only %q", id, d.ID)
			}
		}
	})

	t.Run("cancelled context fails without sending", func(t *testing.T) {
		env := setup(t)
		d := newDelivery(env, "dlv_conf_cancelled")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res, err := sendBounded(t, env.Sender, ctx, d)
		if err == nil {
			t.Fatalf("Send with a cancelled context succeeded: %+v", res)
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want one wrapping context.Canceled", err)
		}
		if got := count(env.Seen(), d.ID); got != 0 {
			t.Fatalf("receiver saw a send whose context was cancelled before it started")
		}
	})

	t.Run("cancel during send returns promptly", func(t *testing.T) {
		env := setup(t)
		if env.Stall == nil {
			t.Logf("not applicable: %s does no I/O that can stall", h.Channel)
			return
		}
		entered, release := env.Stall()
		defer release()
		d := newDelivery(env, "dlv_conf_stalled")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		type out struct {
			res contracts.Result
			err error
		}
		done := make(chan out, 1)
		go func() {
			res, err := env.Sender.Send(ctx, d)
			done <- out{res, err}
		}()
		select {
		case <-entered:
		case o := <-done:
			t.Fatalf("Send returned before reaching the stalled receiver: %+v, %v", o.res, o.err)
		case <-time.After(hangLimit):
			t.Fatal("the send never reached the receiver")
		}
		cancel()
		select {
		case o := <-done:
			if o.err == nil {
				t.Fatalf("Send cancelled mid-flight reported success: %+v", o.res)
			}
			if !errors.Is(o.err, context.Canceled) {
				t.Fatalf("err = %v, want one wrapping context.Canceled", o.err)
			}
		case <-time.After(hangLimit):
			t.Fatal("Send ignored the cancelled context")
		}
	})

	t.Run("transient receiver failure is retryable", func(t *testing.T) {
		env := setup(t)
		if env.FailNext == nil {
			t.Logf("not applicable: %s has no receiver that can fail", h.Channel)
			return
		}
		env.FailNext()
		d := newDelivery(env, "dlv_conf_transient")
		_, err := env.Sender.Send(context.Background(), d)
		if err == nil {
			t.Fatal("Send succeeded although the receiver failed")
		}
		var se *contracts.SendError
		if !errors.As(err, &se) || !se.Retryable {
			t.Fatalf("err = %v (%T), want a retryable *contracts.SendError", err, err)
		}
		if retry, _ := contracts.Classify(err); !retry {
			t.Fatalf("Classify(%v) = not retryable", err)
		}
		d.Attempt++
		if _, err := env.Sender.Send(context.Background(), d); err != nil {
			t.Fatalf("retry after the transient failure: %v", err)
		}
		if got := count(env.Seen(), d.ID); got != 1 {
			t.Fatalf("receiver saw %s %d times after fail+retry, want once", d.ID, got)
		}
	})

	t.Run("bad address is permanent", func(t *testing.T) {
		env := setup(t)
		if env.BadAddress == nil {
			t.Logf("not applicable: %s accepts any address", h.Channel)
			return
		}
		d := newDelivery(env, "dlv_conf_bad")
		env.BadAddress(d)
		_, err := env.Sender.Send(context.Background(), d)
		if err == nil {
			t.Fatal("Send to a bad address succeeded")
		}
		var se *contracts.SendError
		if !errors.As(err, &se) || se.Retryable {
			t.Fatalf("err = %v (%T), want a permanent *contracts.SendError", err, err)
		}
		if retry, _ := contracts.Classify(err); retry {
			t.Fatalf("Classify(%v) = retryable", err)
		}
		if got := count(env.Seen(), d.ID); got != 0 {
			t.Fatalf("receiver saw the badly addressed delivery %d times", got)
		}
	})

	t.Run("concurrent sends are each observed once", func(t *testing.T) {
		env := setup(t)
		ids := make([]string, Concurrency)
		errs := make([]error, Concurrency)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range Concurrency {
			ids[i] = fmt.Sprintf("dlv_conf_conc_%02d", i)
			d := newDelivery(env, ids[i])
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[i] = env.Sender.Send(context.Background(), d)
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("send %s: %v", ids[i], err)
			}
		}
		seen := env.Seen()
		for _, id := range ids {
			if got := count(seen, id); got != 1 {
				t.Errorf("receiver saw %s %d times, want once", id, got)
			}
		}
		if len(seen) != Concurrency {
			t.Errorf("receiver saw %d sends, want %d", len(seen), Concurrency)
		}
	})
}

func sendBounded(t *testing.T, s contracts.Sender, ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	t.Helper()
	type out struct {
		res contracts.Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := s.Send(ctx, d)
		done <- out{res, err}
	}()
	select {
	case o := <-done:
		return o.res, o.err
	case <-time.After(hangLimit):
		t.Fatal("Send with a cancelled context did not return")
		return contracts.Result{}, nil
	}
}

func count(seen []string, id string) int {
	n := 0
	for _, s := range seen {
		if s == id {
			n++
		}
	}
	return n
}

// Log is a goroutine-safe list of observed ids harnesses can use for Seen.
type Log struct {
	mu  sync.Mutex
	ids []string
}

// Add records one observation.
func (l *Log) Add(id string) {
	l.mu.Lock()
	l.ids = append(l.ids, id)
	l.mu.Unlock()
}

// IDs returns a copy of the observations so far.
func (l *Log) IDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ids)
}

// Gate implements Stall for receivers: the receiver calls Wait on every
// request; after Arm, the next request closes entered and blocks until
// release (or until the request's own context ends).
type Gate struct {
	mu      sync.Mutex
	entered chan struct{}
	release chan struct{}
}

// Arm makes the next Wait block; it returns the values Env.Stall returns.
func (g *Gate) Arm() (entered <-chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.entered = make(chan struct{})
	rel := make(chan struct{})
	g.release = rel
	var once sync.Once
	return g.entered, func() { once.Do(func() { close(rel) }) }
}

// Wait blocks if the gate is armed (once), until release or ctx is done.
func (g *Gate) Wait(ctx context.Context) {
	g.mu.Lock()
	entered, rel := g.entered, g.release
	g.entered, g.release = nil, nil
	g.mu.Unlock()
	if entered == nil {
		return
	}
	close(entered)
	select {
	case <-rel:
	case <-ctx.Done():
	}
}

// Failer implements FailNext for receivers: Take reports (once) whether the
// current request should fail.
type Failer struct {
	mu sync.Mutex
	n  int
}

// Arm makes the next Take return true.
func (f *Failer) Arm() { f.mu.Lock(); f.n++; f.mu.Unlock() }

// Take reports whether this request should fail, consuming one arming.
func (f *Failer) Take() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n > 0 {
		f.n--
		return true
	}
	return false
}

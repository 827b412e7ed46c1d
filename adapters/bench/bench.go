// Package bench is the load-test channel: it does no I/O and records every
// hand-off in a Recorder, so a load generator can measure end-to-end latency
// (accept -> adapter) per notification at well over 100k sends/s.
package bench

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"herald.dev/adapters/registry"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

func init() {
	registry.Register(domain.ChannelBench, func(deps registry.Deps) (contracts.Sender, error) {
		a := &Adapter{obs: deps.Observer, now: deps.Clock()}
		if a.obs == nil {
			a.obs = NewRecorder()
		}
		return a, nil
	})
}

var (
	_ contracts.Sender         = (*Adapter)(nil)
	_ registry.HandOffObserver = (*Recorder)(nil)
)

// Adapter hands every delivery to its observer and succeeds.
type Adapter struct {
	obs registry.HandOffObserver
	now func() time.Time
}

// New returns a bench adapter recording into rec (a new Recorder when nil).
func New(rec *Recorder) *Adapter {
	if rec == nil {
		rec = NewRecorder()
	}
	return &Adapter{obs: rec, now: time.Now}
}

// Channel implements contracts.Sender.
func (a *Adapter) Channel() domain.Channel { return domain.ChannelBench }

// Recorder returns the adapter's recorder, or nil when it was built with
// another observer.
func (a *Adapter) Recorder() *Recorder {
	r, _ := a.obs.(*Recorder)
	return r
}

// Send records the hand-off. It fails only when ctx is already done.
func (a *Adapter) Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	if err := ctx.Err(); err != nil {
		return contracts.Result{}, fmt.Errorf("bench send %s: %w", d.ID, err)
	}
	a.obs.Record(d, a.now())
	return contracts.Result{}, nil
}

const shardCount = 64

type shard struct {
	mu    sync.Mutex
	first map[string]int64 // notification id -> first hand-off, Unix nanoseconds
	_     [48]byte         // keep shards on separate cache lines
}

// Recorder counts hand-offs and remembers, per notification id, the time of
// its first hand-off. It is safe for concurrent use; the id map is split into
// shards so recording does not serialise senders.
type Recorder struct {
	// OnSend, when set (before the first send), is called after each
	// hand-off is recorded, on the sender's goroutine.
	OnSend func(d *contracts.Delivery, at time.Time)

	seed          maphash.Seed
	shards        [shardCount]shard
	sends         atomic.Uint64
	notifications atomic.Uint64
	byPriority    [3]atomic.Uint64

	waiters atomic.Int32
	wmu     sync.Mutex
	wlist   []waiter
}

type waiter struct {
	n  uint64
	ch chan struct{}
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	r := &Recorder{seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].first = make(map[string]int64)
	}
	return r
}

// Record notes one hand-off at the given time.
func (r *Recorder) Record(d *contracts.Delivery, at time.Time) {
	r.sends.Add(1)
	r.byPriority[d.Priority.Rank()].Add(1)
	if d.NotificationID != "" {
		s := &r.shards[maphash.String(r.seed, d.NotificationID)%shardCount]
		s.mu.Lock()
		_, seen := s.first[d.NotificationID]
		if !seen {
			s.first[d.NotificationID] = at.UnixNano()
		}
		s.mu.Unlock()
		if !seen {
			n := r.notifications.Add(1)
			if r.waiters.Load() > 0 {
				r.wake(n)
			}
		}
	}
	if r.OnSend != nil {
		r.OnSend(d, at)
	}
}

// First returns the time of the first hand-off of a notification.
func (r *Recorder) First(notificationID string) (time.Time, bool) {
	s := &r.shards[maphash.String(r.seed, notificationID)%shardCount]
	s.mu.Lock()
	ns, ok := s.first[notificationID]
	s.mu.Unlock()
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

// FirstSeen returns a snapshot: notification id -> time of first hand-off.
func (r *Recorder) FirstSeen() map[string]time.Time {
	out := make(map[string]time.Time, r.notifications.Load())
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		for id, ns := range s.first {
			out[id] = time.Unix(0, ns)
		}
		s.mu.Unlock()
	}
	return out
}

// Stats are the recorder's counters.
type Stats struct {
	// Sends counts every hand-off, retries and fan-out included.
	Sends uint64 `json:"sends"`
	// Notifications counts distinct notification ids seen.
	Notifications uint64 `json:"notifications"`
	// High, Medium and Low split Sends by priority.
	High   uint64 `json:"high"`
	Medium uint64 `json:"medium"`
	Low    uint64 `json:"low"`
}

// Stats reads the counters.
func (r *Recorder) Stats() Stats {
	return Stats{
		Sends:         r.sends.Load(),
		Notifications: r.notifications.Load(),
		High:          r.byPriority[0].Load(),
		Medium:        r.byPriority[1].Load(),
		Low:           r.byPriority[2].Load(),
	}
}

// Reset forgets everything recorded so far (not OnSend). Hand-offs recorded
// concurrently with Reset may or may not survive it.
func (r *Recorder) Reset() {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		s.first = make(map[string]int64)
		s.mu.Unlock()
	}
	r.sends.Store(0)
	r.notifications.Store(0)
	for i := range r.byPriority {
		r.byPriority[i].Store(0)
	}
}

// Wait blocks until at least n distinct notifications have been handed off,
// or ctx is done.
func (r *Recorder) Wait(ctx context.Context, n uint64) error {
	if r.notifications.Load() >= n {
		return nil
	}
	ch := make(chan struct{})
	r.wmu.Lock()
	r.wlist = append(r.wlist, waiter{n: n, ch: ch})
	r.waiters.Add(1)
	r.wmu.Unlock()
	// A hand-off between the first check and registering may have been missed.
	r.wake(r.notifications.Load())
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		r.wmu.Lock()
		found := false
		for i, w := range r.wlist {
			if w.ch == ch {
				r.wlist = append(r.wlist[:i], r.wlist[i+1:]...)
				r.waiters.Add(-1)
				found = true
				break
			}
		}
		r.wmu.Unlock()
		if !found { // woken while ctx ended: the count was reached
			return nil
		}
		return fmt.Errorf("wait for %d notifications (have %d): %w", n, r.notifications.Load(), ctx.Err())
	}
}

func (r *Recorder) wake(have uint64) {
	r.wmu.Lock()
	kept := r.wlist[:0]
	for _, w := range r.wlist {
		if have >= w.n {
			close(w.ch)
			r.waiters.Add(-1)
			continue
		}
		kept = append(kept, w)
	}
	r.wlist = kept
	r.wmu.Unlock()
}

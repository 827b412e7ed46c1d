package outbound

import (
	"context"
	"errors"
	"sync"
	"time"

	"herald.dev/platform/domain"
	"herald.dev/platform/queue"
)

// saturatedNackDelay is how long a message received for a saturated
// medium/low tier stays off its lane when higher-priority work is waiting.
const saturatedNackDelay = 200 * time.Millisecond

// tier admits received messages of one priority to fan-out slots. Each
// priority has its own slots, so high never waits for a slot taken by a low
// fan-out. A few messages may wait for a slot (held); beyond that the
// receiver waits for room, but a medium or low message is handed back to its
// lane as soon as a higher lane has work, so the receiver is never stuck
// behind a saturated lower tier.
type tier struct {
	prio    domain.Priority
	slots   int
	mu      sync.Mutex
	running int
	held    []queue.Lease
	stopped bool
	room    chan struct{}
}

func newTier(p domain.Priority, slots int) *tier {
	return &tier{prio: p, slots: slots, room: make(chan struct{}, 1)}
}

// admit starts l in a free slot (start) or holds it for the next free slot
// (held); neither means the tier is saturated.
func (t *tier) admit(l queue.Lease) (start, held bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false, false
	}
	if t.running < t.slots {
		t.running++
		return true, false
	}
	if len(t.held) < t.slots {
		t.held = append(t.held, l)
		return false, true
	}
	return false, false
}

// next hands a finishing slot the next held message, or frees the slot.
func (t *tier) next() queue.Lease {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped && len(t.held) > 0 {
		l := t.held[0]
		copy(t.held, t.held[1:])
		t.held[len(t.held)-1] = nil
		t.held = t.held[:len(t.held)-1]
		return l
	}
	t.running--
	select {
	case t.room <- struct{}{}:
	default:
	}
	return nil
}

// stop refuses new work and returns the held (never started) messages.
func (t *tier) stop() []queue.Lease {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	out := t.held
	t.held = nil
	return out
}

func (t *tier) counts() (running, waiting int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.running, len(t.held)
}

// receive is the single consumer of the lanes. The queue serves lanes in
// strict priority order (with its ageing rule); receive keeps that order by
// never blocking on a lower tier while higher work may be waiting.
func (h *Handler) receive() {
	defer h.bgWG.Done()
	ctx := h.recvCtx
	stats, _ := h.q.(queue.Stats)
	for {
		l, err := h.q.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, queue.ErrClosed) {
				h.logf("outbound: queue closed; no longer receiving")
				return
			}
			h.logf("outbound: receive: %v", err)
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		r := rank(l.Message().Priority)
		t := h.tiers[r]
		for {
			start, held := t.admit(l)
			if start {
				h.fanWG.Add(1)
				go h.runFanouts(t, l)
				break
			}
			if held {
				break
			}
			if ctx.Err() != nil {
				h.settleLease(l, false, 0)
				return
			}
			if h.waitRoom(ctx, r, stats) {
				continue
			}
			// Higher lanes have work (or cannot be observed): give this
			// message back to its lane and serve them first.
			h.settleLease(l, false, saturatedNackDelay)
			break
		}
	}
}

// waitRoom waits for a slot of tier r to free. For medium and low it gives
// up (false) as soon as a higher lane has messages waiting; without queue
// statistics it gives up after a millisecond. High waits until room or ctx.
func (h *Handler) waitRoom(ctx context.Context, r int, stats queue.Stats) bool {
	t := h.tiers[r]
	if r == 0 {
		select {
		case <-t.room:
			return true
		case <-ctx.Done():
			return false
		}
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-t.room:
			return true
		case <-ctx.Done():
			return false
		case <-tick.C:
			if stats == nil {
				return false
			}
			for hr := 0; hr < r; hr++ {
				if stats.Depth(domain.Priorities[hr]) > 0 {
					return false
				}
			}
		}
	}
}

// runFanouts runs l, then any messages held for this tier, in one slot.
func (h *Handler) runFanouts(t *tier, l queue.Lease) {
	defer h.fanWG.Done()
	for l != nil {
		h.fanout(h.fanCtx, l)
		l = t.next()
	}
}

// settleLease acks or nacks a lane message, logging failures (the outbox
// has the notification either way).
func (h *Handler) settleLease(l queue.Lease, ack bool, delay time.Duration) {
	if h.dead.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	if ack {
		err = l.Ack(ctx)
	} else {
		err = l.Nack(ctx, delay)
	}
	if err != nil && !errors.Is(err, queue.ErrClosed) {
		h.logf("outbound: settle lane message %s: %v", l.Message().ID, err)
	}
}

func rank(p domain.Priority) int {
	if !p.Valid() {
		return domain.PriorityMedium.Rank()
	}
	return p.Rank()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

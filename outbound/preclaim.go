package outbound

import (
	"context"

	"herald.dev/platform/domain"
	"herald.dev/platform/messages"
	"herald.dev/platform/queue"
)

// Claim at accept.
//
// A notification accepted by a process whose handler consumes the lanes it
// is published to (the embedded queue) is claimed as it is written: the API
// calls Hold before the row is inserted, so the row is born processing,
// with this process's lease and its dispatch time, and the handler
// registers it as its own. The fan-out then starts without a claim, which
// saves a read and an update of the row and a round of the group commit per
// notification.
//
// While the lane message waits for a fan-out slot the state is "held": the
// heartbeat renews its lease with every other owned notification and the
// reconciler leaves it alone, as it does a running fan-out. If the process
// dies, the lease passes and reconciliation republishes the notification as
// a resumed fan-out (the dispatch time is set, so recorded rows are
// skipped). A clean shutdown releases held leases at once.

// Hold claims n, about to be accepted with status accepted, for this
// process: it sets n's status to processing, its next_at to the lease and
// its dispatch time, and registers it. It reports false (and leaves n alone)
// when the handler does not run or is stopping, or when Tuning.PreclaimCap
// notifications wait for their fan-out already; the API then accepts n as
// usual. Every Hold that returns true must be followed by the lane publish
// or by Unhold.
func (h *Handler) Hold(n *messages.Notification) bool {
	h.regMu.Lock()
	defer h.regMu.Unlock()
	if !h.preclaiming || h.dead.Load() || n.Status != domain.MessageAccepted || h.reg[n.ID] != nil ||
		h.preclaimed >= h.tun.PreclaimCap {
		return false
	}
	h.preclaimed++
	now := h.now()
	n.Status = domain.MessageProcessing
	n.NextAt = now.Add(h.cfg.StaleAfter)
	n.DispatchedAt = now
	c := *n // the API goes on reading n
	st := h.newState(&c, true)
	st.preclaimed = true
	if n.Priority == domain.PriorityHigh {
		// Until its fan-out starts, the recorder lets the accept commit in
		// ahead of its next low-priority chunk, as it does a claim.
		st.urgent = true
		h.urgentIn.Add(1)
	}
	h.reg[n.ID] = st
	return true
}

// Unhold gives back a held notification whose fan-out will not start from
// its lane message. committed says whether its row was written: if so, its
// lease is released after the sweep interval and reconciliation publishes
// it again (a lost or refused publish); if not (the accept failed, or
// answered with an earlier request's row), the state is dropped.
func (h *Handler) Unhold(id string, committed bool) {
	st := h.takePreclaimed(id)
	if st == nil {
		return
	}
	if committed {
		h.endFanout(st, false)
		return
	}
	h.drop(st)
}

// drop forgets a state that has no work and no row of this process's to
// settle.
func (h *Handler) drop(st *msgState) {
	st.mu.Lock()
	st.settled = true
	st.mu.Unlock()
	h.unregister(st)
}

// takePreclaimed returns the held state of id, no longer held, or nil.
func (h *Handler) takePreclaimed(id string) *msgState {
	h.regMu.Lock()
	defer h.regMu.Unlock()
	if st := h.reg[id]; st != nil && h.unpreclaimLocked(st) {
		return st
	}
	return nil
}

// unpreclaimLocked turns a held state into an ordinary owned one (its
// fan-out starts or it is given back); false if st is not held. h.regMu is
// held.
func (h *Handler) unpreclaimLocked(st *msgState) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.preclaimed || st.settled {
		return false
	}
	st.preclaimed = false
	h.preclaimed--
	if st.urgent {
		st.urgent = false
		h.urgentOut.Add(1)
	}
	return true
}

// fanoutPreclaimed runs the fan-out of a notification claimed at accept.
func (h *Handler) fanoutPreclaimed(ctx context.Context, l queue.Lease, st *msgState) {
	if expired(st.n, h.now()) {
		if h.expire(ctx, st.n, domain.MessageProcessing) {
			h.drop(st)
		} else {
			h.endFanout(st, false) // the lease is released; reconciliation expires it
		}
		h.settleLease(l, true, 0)
		return
	}
	if h.dead.Load() {
		return
	}
	ok := h.expand(ctx, st, false)
	h.settleLease(l, true, 0)
	h.endFanout(st, ok)
}

// stopPreclaiming ends Hold and releases the held notifications whose lane
// messages will not be consumed, so a restart dispatches them at once.
func (h *Handler) stopPreclaiming() {
	h.regMu.Lock()
	h.preclaiming = false
	var held []*msgState
	for _, st := range h.reg {
		if h.unpreclaimLocked(st) {
			held = append(held, st)
		}
	}
	h.regMu.Unlock()
	for _, st := range held {
		h.endFanout(st, false)
	}
}

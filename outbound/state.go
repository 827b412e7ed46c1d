package outbound

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/messages"
)

// msgState is what the handler holds in memory about one notification while
// any of its deliveries is in memory: the content cache for its fan-out and
// the counts that tell when the message is done.
type msgState struct {
	n     *messages.Notification
	chain []domain.Channel // fallback chain

	mu       sync.Mutex
	channels []domain.Channel // primary channels (resolved lazily)
	primary  map[domain.Channel]bool
	cache    map[contentKey]*rendered
	// owned: this process claimed the message (accepted/queued → processing)
	// and runs or ran its fan-out; otherwise the state only carries
	// deliveries the retry sweeper picked up.
	owned   bool
	fanning bool
	// preclaimed: claimed at accept (Hold); its fan-out has not started yet.
	preclaimed bool
	urgent     bool // preclaimed high priority: counted in Handler.urgentIn until its fan-out starts
	fanoutDone bool // the fan-out finished; total is its delivery count
	total      int  // written with the completion (or before a database completion check)
	// outstanding counts deliveries held in memory: in a pool, being sent,
	// waiting for their outcome's flush, or on a retry timer.
	outstanding int
	// durableOpen: some delivery was left to the retry sweeper as an open
	// row, so completion must be decided from the database.
	durableOpen bool
	// incomplete: work was abandoned (shutdown, failed flush, fan-out
	// error); the lease is released so reconciliation resumes the message.
	incomplete bool
	releaseAt  time.Time
	settled    bool
}

type contentKey struct {
	ch     domain.Channel
	locale string
}

// rendered is the content of one (channel, locale), or why there is none.
type rendered struct {
	content domain.Content
	status  domain.DeliveryStatus // "" = ok, skipped or failed
	reason  string
}

func (h *Handler) newState(n *messages.Notification, owned bool) *msgState {
	st := &msgState{n: n, owned: owned, fanning: owned, cache: map[contentKey]*rendered{}}
	switch {
	case len(n.Payload.Fallback) > 0:
		st.chain = n.Payload.Fallback
	case len(h.fallback[n.Category]) > 0:
		st.chain = h.fallback[n.Category]
	default:
		st.chain = h.fallback["*"]
	}
	return st
}

// attach returns the live state of n, creating it. With owned it marks the
// state as claimed by a running fan-out.
func (h *Handler) attach(n *messages.Notification, owned bool) *msgState {
	h.regMu.Lock()
	defer h.regMu.Unlock()
	if st := h.reg[n.ID]; st != nil {
		st.mu.Lock()
		if !st.settled {
			if owned {
				st.owned, st.fanning = true, true
			}
			st.mu.Unlock()
			return st
		}
		st.mu.Unlock()
	}
	st := h.newState(n, owned)
	h.reg[n.ID] = st
	return st
}

// ownedActive reports whether this process runs or ran the fan-out of a
// notification that still has work in memory.
func (h *Handler) ownedActive(id string) bool {
	h.regMu.Lock()
	defer h.regMu.Unlock()
	st := h.reg[id]
	if st == nil {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.owned && !st.settled
}

func (h *Handler) ownedIDs() []string {
	h.regMu.Lock()
	defer h.regMu.Unlock()
	var ids []string
	for id, st := range h.reg {
		st.mu.Lock()
		if st.owned && !st.settled {
			ids = append(ids, id)
		}
		st.mu.Unlock()
	}
	return ids
}

// resolve works out the primary channels: the request's, else the
// template's, else the inline content's, else the defaults.
func (st *msgState) resolve(ctx context.Context, h *Handler) error {
	st.mu.Lock()
	done := st.channels != nil
	st.mu.Unlock()
	if done {
		return nil
	}
	chans, err := h.channelsFor(ctx, st.n)
	if err != nil {
		return err
	}
	st.mu.Lock()
	if st.channels == nil {
		st.channels = chans
		st.primary = map[domain.Channel]bool{}
		for _, c := range chans {
			st.primary[c] = true
		}
	}
	st.mu.Unlock()
	return nil
}

func (st *msgState) high() bool { return st.n.Priority == domain.PriorityHigh }

func (st *msgState) low() bool { return st.n.Priority == domain.PriorityLow }

func (st *msgState) isPrimary(ch domain.Channel) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.primary[ch]
}

func (h *Handler) channelsFor(ctx context.Context, n *messages.Notification) ([]domain.Channel, error) {
	if len(n.Payload.Channels) > 0 {
		return uniqChannels(n.Payload.Channels), nil
	}
	if n.TemplateCode != "" {
		info, err := h.rend.Check(ctx, n.AppID, n.TemplateCode, n.Payload.Data)
		var mv *contracts.MissingVariableError
		switch {
		case err == nil:
			if len(info.Channels) > 0 {
				return uniqChannels(info.Channels), nil
			}
		case errors.Is(err, contracts.ErrTemplateNotFound), errors.As(err, &mv):
			// Rendering reports it on every delivery.
		default:
			return nil, fmt.Errorf("check template %s: %w", n.TemplateCode, err)
		}
	}
	var inline []domain.Channel
	for k := range n.Payload.Content {
		if k != "*" {
			inline = append(inline, domain.Channel(k))
		}
	}
	if len(inline) > 0 {
		sort.Slice(inline, func(i, j int) bool { return inline[i] < inline[j] })
		return inline, nil
	}
	return h.defaults, nil
}

func uniqChannels(in []domain.Channel) []domain.Channel {
	out := make([]domain.Channel, 0, len(in))
	seen := map[domain.Channel]bool{}
	for _, c := range in {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// content renders (once per message) the content of a channel and locale.
func (st *msgState) content(ctx context.Context, h *Handler, ch domain.Channel, locale string) *rendered {
	key := contentKey{ch, locale}
	st.mu.Lock()
	r := st.cache[key]
	st.mu.Unlock()
	if r != nil {
		return r
	}
	r = h.render(ctx, st.n, ch, locale)
	if ctx.Err() != nil && r.status != "" {
		return r // an aborted render is not the template's fault: don't cache it
	}
	st.mu.Lock()
	if old := st.cache[key]; old != nil {
		r = old
	} else {
		st.cache[key] = r
	}
	st.mu.Unlock()
	return r
}

func (h *Handler) render(ctx context.Context, n *messages.Notification, ch domain.Channel, locale string) *rendered {
	if c, ok := n.Payload.Content[string(ch)]; ok {
		return &rendered{content: c}
	}
	if n.TemplateCode != "" {
		c, err := h.rend.Render(ctx, n.AppID, n.TemplateCode, n.TemplateVersion, locale, ch, n.Payload.Data)
		if err == nil {
			return &rendered{content: c}
		}
		if errors.Is(err, contracts.ErrTemplateNotFound) {
			return &rendered{status: domain.DeliverySkipped, reason: fmt.Sprintf("template %s has no %s variant", n.TemplateCode, ch)}
		}
		return &rendered{status: domain.DeliveryFailed, reason: fmt.Sprintf("render template %s for %s: %v", n.TemplateCode, ch, err)}
	}
	if c, ok := n.Payload.Content["*"]; ok {
		return &rendered{content: c}
	}
	return &rendered{status: domain.DeliverySkipped, reason: fmt.Sprintf("no content for %s", ch)}
}

// ---- accounting ----

func (st *msgState) add(k int) {
	st.mu.Lock()
	st.outstanding += k
	st.mu.Unlock()
}

// jobDone: the job's final outcome is durable.
func (h *Handler) jobDone(j *job) {
	st := j.st
	st.mu.Lock()
	st.outstanding--
	st.mu.Unlock()
	h.settle(st)
}

// toSweeper: the job's open row is left to the retry sweeper.
func (h *Handler) toSweeper(j *job) {
	h.unhold(j)
	st := j.st
	st.mu.Lock()
	st.outstanding--
	st.durableOpen = true
	st.mu.Unlock()
	h.settle(st)
}

// abandon drops a job without an outcome (shutdown past grace, failed
// flush). A claimed open row gets its lease released at shutdown; a job
// without a row is recovered by reconciliation.
func (h *Handler) abandon(j *job) {
	st := j.st
	if j.durable {
		h.heldMu.Lock()
		if _, ok := h.held[j.d.ID]; ok {
			delete(h.held, j.d.ID)
			h.released = append(h.released, j.d.ID)
		}
		h.heldMu.Unlock()
	}
	st.mu.Lock()
	st.outstanding--
	if j.durable {
		st.durableOpen = true
	} else {
		st.incomplete = true
	}
	st.mu.Unlock()
	h.settle(st)
}

// endFanout marks the fan-out finished (ok) or abandoned.
func (h *Handler) endFanout(st *msgState, ok bool) {
	st.mu.Lock()
	st.fanning = false
	if ok {
		st.fanoutDone = true
	} else {
		st.incomplete = true
	}
	st.mu.Unlock()
	h.settle(st)
}

type action uint8

const (
	actDone    action = iota // mark done: everything this process fanned out is final
	actRelease               // release the lease so reconciliation resumes the message
	actCheck                 // decide completion from the database
)

// settle runs when a state may have no more work in memory.
func (h *Handler) settle(st *msgState) {
	st.mu.Lock()
	if st.settled || st.fanning || st.outstanding > 0 {
		st.mu.Unlock()
		return
	}
	st.settled = true
	var act action
	switch {
	case st.owned && st.fanoutDone && !st.durableOpen && !st.incomplete:
		act = actDone
	case st.owned && (st.incomplete || !st.fanoutDone):
		act = actRelease
		st.releaseAt = h.now()
		if h.fanCtx.Err() == nil {
			st.releaseAt = st.releaseAt.Add(h.cfg.SweepInterval) // an error, not a shutdown: back off
		}
	default:
		act = actCheck
	}
	st.mu.Unlock()
	h.unregister(st)
	h.comp.submit(compItem{act: act, st: st})
}

// unregister removes a settled st from the registry (unless a newer state
// of the same notification took its place).
func (h *Handler) unregister(st *msgState) {
	h.regMu.Lock()
	if h.reg[st.n.ID] == st {
		delete(h.reg, st.n.ID)
	}
	h.regMu.Unlock()
}

// ---- completer ----

type compItem struct {
	act action
	st  *msgState
}

// completer applies message-level outcomes in batches: done transitions,
// lease releases and database completion checks.
type completer struct {
	h      *Handler
	mu     sync.RWMutex
	closed bool
	killed bool
	ch     chan compItem
	done   chan struct{}
}

func newCompleter(h *Handler) *completer {
	return &completer{h: h, ch: make(chan compItem, 4096), done: make(chan struct{})}
}

func (c *completer) start() { go c.loop() }

func (c *completer) submit(it compItem) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed || c.killed {
		return // after shutdown; the reconciler decides it later
	}
	c.ch <- it
}

func (c *completer) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.ch)
	}
	c.mu.Unlock()
	<-c.done
}

func (c *completer) kill() {
	c.mu.Lock()
	c.killed = true
	c.mu.Unlock()
}

func (c *completer) loop() {
	defer close(c.done)
	batch := make([]compItem, 0, 256)
	for it := range c.ch {
		batch = append(batch[:0], it)
		timer := time.NewTimer(2 * time.Millisecond)
	gather:
		for len(batch) < cap(batch) {
			select {
			case it, ok := <-c.ch:
				if !ok {
					break gather
				}
				batch = append(batch, it)
			case <-timer.C:
				break gather
			}
		}
		timer.Stop()
		c.apply(batch)
	}
}

func (c *completer) apply(batch []compItem) {
	h := c.h
	c.mu.RLock()
	killed := c.killed
	c.mu.RUnlock()
	if killed || h.dead.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var done []messages.Completion
	var doneStates []*msgState
	for _, it := range batch {
		switch it.act {
		case actDone:
			done = append(done, messages.Completion{ID: it.st.n.ID, Total: it.st.total})
			doneStates = append(doneStates, it.st)
		case actRelease:
			// A finished fan-out whose sends were cut off: with its total
			// recorded, reconciliation need not count it again.
			if err := h.recordTotal(ctx, it.st); err != nil {
				h.logf("outbound: record fan-out of %s: %v", it.st.n.ID, err)
			}
			if err := h.store.Snooze(ctx, []string{it.st.n.ID}, it.st.releaseAt); err != nil {
				h.logf("outbound: release lease of %s: %v", it.st.n.ID, err)
			}
		case actCheck:
			// Open rows were left to the retry sweeper: the total must be
			// durable before anyone decides completion from it.
			if err := h.recordTotal(ctx, it.st); err != nil {
				h.logf("outbound: record fan-out of %s: %v (reconciliation resumes it)", it.st.n.ID, err)
				continue
			}
			if err := h.durableCheck(ctx, it.st.n.ID); err != nil {
				h.logf("outbound: completion check of %s: %v", it.st.n.ID, err)
			}
		}
	}
	if len(done) > 0 {
		if _, err := h.store.Complete(ctx, done); err != nil {
			h.logf("outbound: mark %d notifications done: %v (reconciliation will retry)", len(done), err)
			return
		}
		now := h.now()
		evs := make([]contracts.Event, 0, len(doneStates))
		for _, st := range doneStates {
			evs = append(evs, h.msgEvent(st.n, contracts.EventDone, now, ""))
		}
		h.track.Track(evs...)
	}
}

// recordTotal writes the delivery count of a fan-out this process ran to
// its end (the completion writes it otherwise).
func (h *Handler) recordTotal(ctx context.Context, st *msgState) error {
	if !st.owned || !st.fanoutDone || st.total == 0 {
		return nil
	}
	return h.store.SetDeliveriesTotal(ctx, st.n.ID, st.total)
}

// durableCheck marks a processing notification done when its fan-out is
// recorded as finished, every primary delivery has a row, and no row is open.
func (h *Handler) durableCheck(ctx context.Context, id string) error {
	open, err := h.store.OpenDeliveries(ctx, id)
	if err != nil || open > 0 {
		return err
	}
	n, err := h.store.Load(ctx, id)
	if errors.Is(err, messages.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if n.Status != domain.MessageProcessing || n.DeliveriesTotal == 0 {
		return nil
	}
	prim, err := h.sql.primaryCount(ctx, id)
	if err != nil || prim < n.DeliveriesTotal {
		return err
	}
	return h.markDone(ctx, n)
}

func (h *Handler) markDone(ctx context.Context, n *messages.Notification) error {
	c, err := h.store.Transition(ctx, []string{n.ID}, domain.MessageDone, time.Time{}, "", domain.MessageProcessing)
	if err != nil {
		return err
	}
	if c > 0 {
		h.track.Track(h.msgEvent(n, contracts.EventDone, h.now(), ""))
	}
	return nil
}

// ---- events ----

func (h *Handler) msgEvent(n *messages.Notification, typ string, at time.Time, errMsg string) contracts.Event {
	return contracts.Event{AppID: n.AppID, NotificationID: n.ID, Category: n.Category, Priority: n.Priority,
		Type: typ, Error: errMsg, At: at, LatencyMS: latency(n, at)}
}

func (h *Handler) event(n *messages.Notification, d *messages.Delivery, typ string, at time.Time) contracts.Event {
	return contracts.Event{AppID: n.AppID, NotificationID: n.ID, DeliveryID: d.ID, UserID: d.UserID, Channel: d.Channel,
		Category: n.Category, Priority: n.Priority, Type: typ, Error: d.Error, At: at, LatencyMS: latency(n, at)}
}

func latency(n *messages.Notification, at time.Time) int64 {
	if n.CreatedAt.IsZero() {
		return 0
	}
	return max(at.Sub(n.CreatedAt).Milliseconds(), 0)
}

package outbound

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/messages"
)

// job is one delivery on its way to a sender.
type job struct {
	st      *msgState
	d       *messages.Delivery
	prof    *contracts.Profile
	content domain.Content
	// durable: an open (pending/queued) row exists for this delivery; when
	// it is held in memory, this process claimed it (next_at is its lease).
	durable bool
	enq     time.Time
}

func (h *Handler) worker(p *pool) {
	defer h.workerWG.Done()
	for {
		j := p.pop()
		if j == nil {
			return
		}
		p.inflight.Add(1)
		h.execute(p, j)
		p.inflight.Add(-1)
	}
}

func expired(n *messages.Notification, now time.Time) bool {
	return !n.ExpiresAt.IsZero() && !now.Before(n.ExpiresAt)
}

// execute sends one delivery and records its outcome.
func (h *Handler) execute(p *pool, j *job) {
	if h.dead.Load() {
		return
	}
	n, d := j.st.n, j.d
	now := h.now()
	if expired(n, now) {
		d.Status, d.Error, d.NextAt = domain.DeliveryExpired, "notification expired before delivery", time.Time{}
		p.expired.Add(1)
		h.recordFinal(j, contracts.EventExpired, now, children{})
		return
	}
	cd := messages.ToContract(n, d)
	cd.Content, cd.Profile = j.content, j.prof
	ctx, cancel := context.WithTimeout(h.sendCtx, h.tun.SendTimeout)
	res, err := p.sender.Send(ctx, cd)
	cancel()
	if h.dead.Load() {
		return
	}
	if err != nil && h.sendCtx.Err() != nil {
		// Cut off by shutdown: the outcome is unknown, so nothing is
		// recorded and recovery sends it again under the same id.
		h.abandon(j)
		return
	}
	now = h.now()
	d.Attempts++
	if err == nil {
		d.Status, d.Error, d.NextAt, d.SentAt, d.ProviderID = domain.DeliverySent, "", time.Time{}, ms(now), res.ProviderID
		typ := contracts.EventSent
		if res.Delivered {
			d.Status, typ = domain.DeliveryDelivered, contracts.EventDelivered
			p.delivered.Add(1)
		}
		p.sent.Add(1)
		h.recordFinal(j, typ, now, children{})
		return
	}
	h.failed(p, j, err, now)
}

// failed handles a send error: retry with backoff, or fail for good (and
// follow the fallback chain).
func (h *Handler) failed(p *pool, j *job, err error, now time.Time) {
	n, d := j.st.n, j.d
	retry, after := contracts.Classify(err)
	d.Error = err.Error()
	if retry && d.Attempts < h.cfg.MaxAttempts {
		next := ms(now.Add(h.backoff(d.Attempts, after)))
		if !n.ExpiresAt.IsZero() && !next.Before(n.ExpiresAt) {
			d.Status, d.NextAt = domain.DeliveryExpired, time.Time{}
			d.Error = "notification expires before the next attempt; last error: " + d.Error
			p.expired.Add(1)
			h.recordFinal(j, contracts.EventExpired, now, children{})
			return
		}
		d.Status, d.NextAt = domain.DeliveryQueued, next
		p.retried.Add(1)
		h.recordOpen(j, contracts.EventRetrying, now)
		return
	}
	if retry {
		d.Error = fmt.Sprintf("gave up after %d attempts: %s", d.Attempts, d.Error)
	}
	d.Status, d.NextAt = domain.DeliveryFailed, time.Time{}
	p.failed.Add(1)
	h.recordFinal(j, contracts.EventFailed, now, h.fallbacks(j.st, d, j.prof, now))
}

// backoff is exponential with full jitter: a random delay in
// [0, min(BackoffMax, BackoffBase·2^(attempt-1))], raised to a vendor's
// Retry-After when that is larger.
func (h *Handler) backoff(attempt int, retryAfter time.Duration) time.Duration {
	ceil := h.cfg.BackoffBase
	for i := 1; i < attempt && ceil < h.cfg.BackoffMax; i++ {
		ceil *= 2
	}
	ceil = min(ceil, h.cfg.BackoffMax)
	d := time.Duration(rand.Int64N(int64(ceil) + 1))
	d = max(d, time.Millisecond)
	if retryAfter > d {
		d = retryAfter
	}
	return d
}

// children are the linked deliveries a final failure creates.
type children struct {
	rows   []*messages.Delivery
	events []contracts.Event
	jobs   []*job // open rows to dispatch once recorded
}

// recordFinal records a final outcome (and any fallback deliveries it
// created); once durable the job is done and the fallbacks are dispatched.
func (h *Handler) recordFinal(j *job, typ string, now time.Time, kids children) {
	rows := append([]*messages.Delivery{j.d}, kids.rows...)
	events := append([]contracts.Event{h.event(j.st.n, j.d, typ, now)}, kids.events...)
	j.st.add(len(kids.jobs))
	h.rec.submit(recEntry{rows: rows, events: events, high: j.st.high(), low: j.st.low(), atomic: true, after: func(ok bool) {
		if !ok {
			for _, c := range kids.jobs {
				h.abandon(c)
			}
			h.abandon(j)
			return
		}
		h.unhold(j)
		for _, c := range kids.jobs {
			h.scheduleRetry(c)
		}
		h.jobDone(j)
	}})
}

// recordOpen records a non-final state (a retry, or a deferral) with its
// next_at; once durable the delivery is re-dispatched by a timer or the
// retry sweeper.
func (h *Handler) recordOpen(j *job, typ string, now time.Time) {
	h.rec.submit(recEntry{rows: []*messages.Delivery{j.d}, events: []contracts.Event{h.event(j.st.n, j.d, typ, now)},
		high: j.st.high(), low: j.st.low(), after: func(ok bool) {
			if !ok {
				h.abandon(j)
				return
			}
			h.unhold(j)
			h.scheduleRetry(j)
		}})
}

// fallbacks creates the linked delivery on the next channel of the
// notification's fallback chain after a final failure of d. Candidates
// that cannot be used (no address, opted out, no content) are recorded as
// skipped and the chain moves on; the first usable one is dispatched.
func (h *Handler) fallbacks(st *msgState, d *messages.Delivery, prof *contracts.Profile, now time.Time) children {
	var kids children
	if len(st.chain) == 0 || prof == nil {
		return kids
	}
	start := 0
	for i, c := range st.chain {
		if c == d.Channel {
			start = i + 1
			break
		}
	}
	n := st.n
	for _, ch := range st.chain[start:] {
		if ch == d.Channel || st.isPrimary(ch) {
			continue // already attempted as a primary delivery
		}
		c := &messages.Delivery{ID: messages.DeliveryID(n.ID, d.Recipient, ch), AppID: n.AppID, NotificationID: n.ID,
			Recipient: d.Recipient, UserID: d.UserID, Channel: ch, ParentID: d.ID, CreatedAt: ms(now)}
		pl := h.plan(h.baseCtx, st, prof, ch, now)
		c.Address = pl.address
		kids.rows = append(kids.rows, c)
		switch pl.kind {
		case planSkip, planFail:
			c.Status, c.Error = pl.status(), pl.reason
			kids.events = append(kids.events, h.event(n, c, string(pl.status()), now))
			continue
		case planDefer:
			c.Status, c.NextAt = domain.DeliveryPending, pl.at
			kids.events = append(kids.events, h.event(n, c, contracts.EventScheduled, now))
		default:
			c.Status, c.NextAt = domain.DeliveryQueued, ms(now)
			kids.events = append(kids.events, h.event(n, c, contracts.EventQueued, now))
		}
		kids.jobs = append(kids.jobs, &job{st: st, d: c, prof: prof, content: pl.content})
		return kids
	}
	return kids
}

// ---- routing ----

type planKind uint8

const (
	planSend planKind = iota
	planDefer
	planSkip
	planFail
)

type planned struct {
	kind    planKind
	reason  string
	at      time.Time
	address string
	content domain.Content
}

func (p planned) status() domain.DeliveryStatus {
	if p.kind == planFail {
		return domain.DeliveryFailed
	}
	return domain.DeliverySkipped
}

// plan decides what happens to one (recipient, channel): preferences,
// address, configured channel, content, quiet hours.
func (h *Handler) plan(ctx context.Context, st *msgState, prof *contracts.Profile, ch domain.Channel, now time.Time) planned {
	n := st.n
	if ok, why := prof.Allows(n.Category, ch); !ok {
		return planned{kind: planSkip, reason: why}
	}
	addr := prof.Address(ch)
	if addr == "" && ch != domain.ChannelWebhook { // an empty webhook address means the app's URL
		return planned{kind: planSkip, reason: fmt.Sprintf("no %s address", ch)}
	}
	if h.pools[ch] == nil {
		return planned{kind: planFail, reason: fmt.Sprintf("channel %s is not configured", ch), address: addr}
	}
	locale := n.Payload.Locale
	if locale == "" {
		locale = prof.Locale
	}
	r := st.content(ctx, h, ch, locale)
	switch r.status {
	case domain.DeliverySkipped:
		return planned{kind: planSkip, reason: r.reason, address: addr}
	case domain.DeliveryFailed:
		return planned{kind: planFail, reason: r.reason, address: addr}
	}
	if n.Priority != domain.PriorityHigh {
		if q := prof.QuietUntil(now); !q.IsZero() {
			return planned{kind: planDefer, at: ms(q), address: addr, content: r.content}
		}
	}
	return planned{kind: planSend, address: addr, content: r.content}
}

// ---- retries, timers and claims ----

// scheduleRetry takes a job whose open row is durable: a timer dispatches
// it at next_at when that is near, otherwise the retry sweeper will.
func (h *Handler) scheduleRetry(j *job) {
	j.durable = true
	delay := j.d.NextAt.Sub(h.now())
	h.timerMu.Lock()
	if h.timersOff || len(h.timers) >= h.tun.MaxTimers || delay > h.tun.RetryTimerMax {
		h.timerMu.Unlock()
		h.toSweeper(j)
		return
	}
	h.timers[j] = time.AfterFunc(max(delay, 0), func() { h.fireTimer(j) })
	h.timerIDs[j.d.ID]++
	h.timerMu.Unlock()
}

func (h *Handler) fireTimer(j *job) {
	h.timerMu.Lock()
	if _, ok := h.timers[j]; !ok {
		h.timerMu.Unlock()
		return // stopped: whoever stopped it owns the job
	}
	delete(h.timers, j)
	h.forgetTimerID(j.d.ID)
	h.timerMu.Unlock()
	h.dispatchClaimed(h.fanCtx, []*job{j})
}

func (h *Handler) forgetTimerID(id string) {
	if h.timerIDs[id] <= 1 {
		delete(h.timerIDs, id)
	} else {
		h.timerIDs[id]--
	}
}

// stopTimers hands every armed retry to the sweeper (shutdown).
func (h *Handler) stopTimers() {
	h.timerMu.Lock()
	h.timersOff = true
	var jobs []*job
	for j, t := range h.timers {
		t.Stop()
		jobs = append(jobs, j)
		delete(h.timers, j)
		h.forgetTimerID(j.d.ID)
	}
	h.timerMu.Unlock()
	for _, j := range jobs {
		h.toSweeper(j)
	}
}

// dispatchClaimed claims the open rows of jobs (compare-and-set on next_at,
// so only one process or timer dispatches a due row) and hands the claimed
// ones to their pools.
func (h *Handler) dispatchClaimed(ctx context.Context, jobs []*job) {
	if h.dead.Load() {
		return
	}
	rows := make([]*messages.Delivery, len(jobs))
	for i, j := range jobs {
		rows[i] = j.d
	}
	lease := ms(h.now().Add(h.cfg.StaleAfter))
	won, err := h.sql.claim(ctx, rows, lease)
	if err != nil {
		if ctx.Err() == nil {
			h.logf("outbound: claim %d due deliveries: %v", len(rows), err)
		}
		for _, j := range jobs {
			h.toSweeper(j)
		}
		return
	}
	for _, j := range jobs {
		if !won[j.d.ID] {
			h.toSweeper(j) // someone else has it
			continue
		}
		j.d.NextAt = lease
		h.hold(j)
		if err := h.pools[j.d.Channel].push(j, true); err != nil {
			h.abandon(j)
		}
	}
}

func (h *Handler) hold(j *job) {
	h.heldMu.Lock()
	h.held[j.d.ID] = j
	h.heldMu.Unlock()
}

func (h *Handler) unhold(j *job) {
	if !j.durable {
		return
	}
	h.heldMu.Lock()
	if h.held[j.d.ID] == j {
		delete(h.held, j.d.ID)
	}
	h.heldMu.Unlock()
}

// inMemory reports whether this process holds delivery id (claimed or on a timer).
func (h *Handler) inMemory(id string) bool {
	h.heldMu.Lock()
	_, held := h.held[id]
	h.heldMu.Unlock()
	if held {
		return true
	}
	h.timerMu.Lock()
	defer h.timerMu.Unlock()
	return h.timerIDs[id] > 0
}

package outbound

import (
	"context"
	"errors"
	"sort"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/messages"
	"herald.dev/platform/queue"
)

// sweepLoop runs one sweeper at start (crash recovery) and then every
// SweepInterval; each run handles at most SweepBatches batches.
func (h *Handler) sweepLoop(name string, fn func(context.Context) (int, error), kick <-chan struct{}) {
	defer h.bgWG.Done()
	ctx := h.sweepCtx
	run := func() {
		for i := 0; i < h.tun.SweepBatches && ctx.Err() == nil && !h.dead.Load(); i++ {
			n, err := fn(ctx)
			if err != nil {
				if ctx.Err() == nil {
					h.logf("outbound: %s sweep: %v", name, err)
				}
				return
			}
			if n < h.tun.SweepLimit {
				return
			}
		}
	}
	run()
	t := time.NewTicker(h.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			run()
		case <-kick:
			run()
		}
	}
}

// kickRetry runs the retry sweep now, without the grace delay: open rows
// were just made due (a resend) and no timer covers them.
func (h *Handler) kickRetry() {
	h.retryNow.Store(true)
	select {
	case h.retryKick <- struct{}{}:
	default:
	}
}

// outboxSweep publishes accepted, queued and scheduled notifications whose
// next_at passed (never published, lost from a lane, or a scheduled time
// that came), with a fresh lease so the next sweep leaves them alone.
func (h *Handler) outboxSweep(ctx context.Context) (int, error) {
	now := h.now()
	ns, err := h.store.Due(ctx, now, h.tun.SweepLimit, domain.MessageAccepted, domain.MessageQueued, domain.MessageScheduled)
	if err != nil {
		return 0, err
	}
	from := []domain.MessageStatus{domain.MessageAccepted, domain.MessageQueued, domain.MessageScheduled}
	var pub []*messages.Notification
	for _, n := range ns {
		switch {
		case expired(n, now):
			h.expire(ctx, n)
		case n.SendAt.After(now):
			if _, err := h.store.Transition(ctx, []string{n.ID}, domain.MessageScheduled, n.SendAt, "", from...); err != nil {
				return 0, err
			}
		default:
			pub = append(pub, n)
		}
	}
	if len(pub) == 0 {
		return len(ns), nil
	}
	sort.SliceStable(pub, func(i, j int) bool { return pub[i].Priority.Rank() < pub[j].Priority.Rank() })
	if err := h.store.Snooze(ctx, idsOf(pub), now.Add(h.cfg.StaleAfter)); err != nil {
		return 0, err
	}
	for i, n := range pub {
		err := h.q.Publish(ctx, queue.Message{ID: n.ID, AppID: n.AppID, Priority: n.Priority})
		if err == nil {
			continue
		}
		// A full lane (or a queue error): retry these on the next sweep.
		if serr := h.store.Snooze(ctx, idsOf(pub[i:]), now.Add(h.cfg.SweepInterval)); serr != nil {
			h.logf("outbound: outbox snooze: %v", serr)
		}
		if errors.Is(err, queue.ErrFull) {
			return 0, nil
		}
		return 0, err
	}
	return len(ns), nil
}

// reconcileSweep takes over processing notifications whose lease passed:
// their owner died or gave them up. A finished fan-out whose rows are all
// final is done; one with open rows waits for the retry sweeper; anything
// else is republished so its fan-out resumes (skipping recorded rows).
func (h *Handler) reconcileSweep(ctx context.Context) (int, error) {
	now := h.now()
	ns, err := h.store.Due(ctx, now, h.tun.SweepLimit, domain.MessageProcessing)
	if err != nil {
		return 0, err
	}
	for _, n := range ns {
		if h.dead.Load() {
			return 0, nil
		}
		if h.ownedActive(n.ID) {
			if err := h.store.Snooze(ctx, []string{n.ID}, now.Add(h.cfg.StaleAfter)); err != nil {
				return 0, err
			}
			continue
		}
		open, err := h.store.OpenDeliveries(ctx, n.ID)
		if err != nil {
			return 0, err
		}
		prim, err := h.sql.primaryCount(ctx, n.ID)
		if err != nil {
			return 0, err
		}
		if n.DeliveriesTotal > 0 && prim >= n.DeliveriesTotal {
			if open == 0 {
				if err := h.markDone(ctx, n); err != nil {
					return 0, err
				}
			} else if err := h.store.Snooze(ctx, []string{n.ID}, now.Add(h.cfg.StaleAfter)); err != nil {
				return 0, err
			}
			continue
		}
		c, err := h.store.Transition(ctx, []string{n.ID}, domain.MessageQueued, now.Add(h.cfg.StaleAfter), "", domain.MessageProcessing)
		if err != nil {
			return 0, err
		}
		if c == 0 {
			continue
		}
		h.logf("outbound: resuming %s (lease passed with %d of %d deliveries recorded)", n.ID, prim, n.DeliveriesTotal)
		if err := h.q.Publish(ctx, queue.Message{ID: n.ID, AppID: n.AppID, Priority: n.Priority}); err != nil {
			// The outbox sweep republishes it when the lease passes.
			if serr := h.store.Snooze(ctx, []string{n.ID}, now.Add(h.cfg.SweepInterval)); serr != nil {
				h.logf("outbound: reconcile snooze: %v", serr)
			}
			if !errors.Is(err, queue.ErrFull) {
				return 0, err
			}
		}
	}
	return len(ns), nil
}

// retrySweep dispatches open deliveries whose next_at passed (retries and
// quiet-hours deferrals not covered by an in-memory timer, or left by a
// process that died), a little late so the timers win.
func (h *Handler) retrySweep(ctx context.Context) (int, error) {
	now := h.now()
	grace := h.tun.SweepGrace
	if h.retryNow.Swap(false) {
		grace = 0
	}
	due, err := h.store.DueDeliveries(ctx, now.Add(-grace), h.tun.SweepLimit)
	if err != nil {
		return 0, err
	}
	byMsg := map[string][]*messages.Delivery{}
	var order []string
	for _, d := range due {
		if h.inMemory(d.ID) {
			continue
		}
		if _, ok := byMsg[d.NotificationID]; !ok {
			order = append(order, d.NotificationID)
		}
		byMsg[d.NotificationID] = append(byMsg[d.NotificationID], d)
	}
	var ns []*messages.Notification
	for _, id := range order {
		n, err := h.store.Load(ctx, id)
		if errors.Is(err, messages.ErrNotFound) {
			h.closeRows(byMsg[id], nil, domain.DeliveryFailed, "notification not found", now)
			continue
		}
		if err != nil {
			return 0, err
		}
		ns = append(ns, n)
	}
	sort.SliceStable(ns, func(i, j int) bool { return ns[i].Priority.Rank() < ns[j].Priority.Rank() })
	for _, n := range ns {
		if ctx.Err() != nil || h.dead.Load() {
			return 0, ctx.Err()
		}
		if err := h.retryMessage(ctx, n, byMsg[n.ID], now); err != nil {
			return 0, err
		}
	}
	return len(due), nil
}

// retryMessage claims a notification's due rows and dispatches them again,
// re-checking preferences, address and quiet hours with fresh profiles.
func (h *Handler) retryMessage(ctx context.Context, n *messages.Notification, rows []*messages.Delivery, now time.Time) error {
	switch {
	case n.Status == domain.MessageCancelled:
		h.closeRows(rows, n, domain.DeliverySkipped, "notification cancelled", now)
		return nil
	case expired(n, now):
		h.closeRows(rows, n, domain.DeliveryExpired, "notification expired before delivery", now)
		return nil
	}
	won, err := h.sql.claim(ctx, rows, ms(now.Add(h.cfg.StaleAfter)))
	if err != nil {
		return err
	}
	var claimed []*messages.Delivery
	for _, d := range rows {
		if won[d.ID] {
			d.NextAt = ms(now.Add(h.cfg.StaleAfter))
			claimed = append(claimed, d)
		}
	}
	if len(claimed) == 0 {
		return nil
	}
	st := h.attach(n, false)
	jobs := make([]*job, len(claimed))
	for i, d := range claimed {
		jobs[i] = &job{st: st, d: d, durable: true}
		h.hold(jobs[i])
	}
	st.add(len(jobs))
	if err := st.resolve(ctx, h); err != nil {
		for _, j := range jobs {
			h.abandon(j)
		}
		return err
	}
	var users []string
	seen := map[string]bool{}
	for _, d := range claimed {
		if d.UserID != "" && !seen[d.UserID] {
			seen[d.UserID] = true
			users = append(users, d.UserID)
		}
	}
	profs := map[string]*contracts.Profile{}
	for start := 0; start < len(users); start += profileBatch {
		got, err := h.dir.Profiles(ctx, n.AppID, users[start:min(start+profileBatch, len(users))])
		if err != nil {
			for _, j := range jobs {
				h.abandon(j)
			}
			return err
		}
		for k, v := range got {
			profs[k] = v
		}
	}
	for _, j := range jobs {
		d := j.d
		var prof *contracts.Profile
		switch {
		case d.UserID != "":
			prof = profs[d.UserID]
			if prof == nil {
				d.Status, d.Error, d.NextAt = domain.DeliverySkipped, "unknown user", time.Time{}
				h.skipped.Add(1)
				h.recordFinal(j, contracts.EventSkipped, now, children{})
				continue
			}
			if prof.UserID == "" {
				cp := *prof
				cp.UserID = d.UserID
				prof = &cp
			}
		default:
			prof = directProfile(d)
		}
		j.prof = prof
		pl := h.plan(ctx, st, prof, d.Channel, now)
		if pl.address != "" || d.Channel == domain.ChannelWebhook {
			d.Address = pl.address
		}
		switch pl.kind {
		case planSkip:
			d.Status, d.Error, d.NextAt = domain.DeliverySkipped, pl.reason, time.Time{}
			h.skipped.Add(1)
			h.recordFinal(j, contracts.EventSkipped, now, children{})
		case planFail:
			d.Status, d.Error, d.NextAt = domain.DeliveryFailed, pl.reason, time.Time{}
			h.recordFinal(j, contracts.EventFailed, now, h.fallbacks(st, d, prof, now))
		case planDefer:
			d.Status, d.NextAt = domain.DeliveryPending, pl.at
			h.recordOpen(j, contracts.EventScheduled, now)
		default:
			j.content = pl.content
			if err := h.pools[d.Channel].push(j, true); err != nil {
				h.abandon(j)
			}
		}
	}
	return nil
}

// directProfile rebuilds the profile of a direct email/phone recipient.
func directProfile(d *messages.Delivery) *contracts.Profile {
	p := &contracts.Profile{}
	switch {
	case len(d.Recipient) > 6 && d.Recipient[:6] == "email:":
		p.Email = d.Address
		if p.Email == "" {
			p.Email = d.Recipient[6:]
		}
	case len(d.Recipient) > 6 && d.Recipient[:6] == "phone:":
		p.Phone = d.Address
		if p.Phone == "" {
			p.Phone = d.Recipient[6:]
		}
	}
	return p
}

// closeRows finalises open rows that can no longer be sent.
func (h *Handler) closeRows(rows []*messages.Delivery, n *messages.Notification, st domain.DeliveryStatus, reason string, now time.Time) {
	for _, d := range rows {
		d.Status, d.Error, d.NextAt = st, reason, time.Time{}
	}
	var evs []contracts.Event
	if n != nil {
		for _, d := range rows {
			evs = append(evs, h.event(n, d, string(st), now))
		}
	}
	h.rec.submit(recEntry{rows: rows, events: evs, wait: true, high: n != nil && n.Priority == domain.PriorityHigh})
}

// heartbeat renews the leases of the notifications and delivery rows this
// process holds, so no reconciler or sweeper elsewhere takes them over.
func (h *Handler) heartbeat() {
	defer h.bgWG.Done()
	every := max(h.cfg.StaleAfter/4, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-h.hbCtx.Done():
			return
		case <-t.C:
		}
		if h.dead.Load() {
			return
		}
		h.renewLeases(h.hbCtx)
	}
}

func (h *Handler) renewLeases(ctx context.Context) {
	lease := h.now().Add(h.cfg.StaleAfter)
	if ids := h.ownedIDs(); len(ids) > 0 {
		if err := h.store.Snooze(ctx, ids, lease); err != nil && ctx.Err() == nil {
			h.logf("outbound: renew %d message leases: %v", len(ids), err)
		}
	}
	h.heldMu.Lock()
	held := make([]string, 0, len(h.held))
	for id := range h.held {
		held = append(held, id)
	}
	h.heldMu.Unlock()
	if len(held) > 0 {
		if err := h.sql.setDeliveryLeases(ctx, held, lease); err != nil && ctx.Err() == nil {
			h.logf("outbound: renew %d delivery leases: %v", len(held), err)
		}
	}
}

func idsOf(ns []*messages.Notification) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.ID
	}
	return out
}

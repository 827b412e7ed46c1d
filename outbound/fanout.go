package outbound

import (
	"context"
	"errors"
	"hash/maphash"
	"runtime"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/messages"
	"herald.dev/platform/queue"
	"herald.dev/platform/sqldb"
)

// profileBatch is how many user ids go into one Directory.Profiles call.
const profileBatch = 500

// fanout handles one lane message: it loads the notification, settles the
// cases that need no dispatch (final, expired, scheduled), claims it
// (accepted/queued/scheduled → processing, with next_at as the lease) and
// fans it out. The lane message is acked once every delivery is recorded or
// in a pool; from the claim on, the database (processing + lease, and
// reconciliation) protects the message, not the lane.
// yieldEvery is how many group members a fan-out turns into deliveries
// before it gives way (giveWay). Go preempts a running goroutine only
// after 10 ms, and the fan-out runs flat out. Without the yield, an API
// request woken behind it could wait that long for a processor: a
// high-priority send during a 1,000,000-member fan-out had an end-to-end
// p99 of 62–68 ms, and 53–61 ms with it (docs/benchmarks.md).
const yieldEvery = 64

// giveWay runs every yieldEvery members of a group fan-out. Go has no
// goroutine priorities, so a fan-out that is not high priority first
// waits, up to outbound.bulk_pause, while high-priority sends are being
// accepted and dispatched (Handler.urgentIn and urgentOut), leaving them
// the processors. Then it yields. With the default 2 ms the high stream's
// p99 during a 1,000,000-member fan-out fell from 55–58 to 29–35 ms, and
// the fan-out ran at 29,000–31,000/s instead of 49,000–55,000/s while that
// stream lasted.
func (h *Handler) giveWay(st *msgState) {
	if pause := h.cfg.BulkPause; pause > 0 && !st.high() {
		for deadline := time.Now().Add(pause); h.urgentOut.Load() < h.urgentIn.Load() && time.Now().Before(deadline); {
			time.Sleep(100 * time.Microsecond)
		}
	}
	runtime.Gosched()
}

func (h *Handler) fanout(ctx context.Context, l queue.Lease) {
	msg := l.Message()
	if st := h.takePreclaimed(msg.ID); st != nil {
		h.fanoutPreclaimed(ctx, l, st) // claimed at accept
		return
	}
	if h.ownedActive(msg.ID) {
		h.settleLease(l, true, 0) // a duplicate of a message this process is working on
		return
	}
	n, err := h.load(ctx, msg)
	if errors.Is(err, messages.ErrNotFound) {
		h.logf("outbound: lane message %s has no notification; dropping it", msg.ID)
		h.settleLease(l, true, 0)
		return
	}
	if err != nil {
		if ctx.Err() != nil {
			h.settleLease(l, false, 0)
			return
		}
		h.logf("outbound: load %s: %v", msg.ID, err)
		h.settleLease(l, false, time.Second)
		return
	}
	switch n.Status {
	case domain.MessageAccepted, domain.MessageQueued, domain.MessageScheduled:
	case domain.MessageProcessing:
		// Another fan-out owns it, reconciliation resumes it once its lease
		// passes, or it was republished after a resend: its due open rows
		// are dispatched by the retry sweep, which runs now.
		h.kickRetry()
		h.settleLease(l, true, 0)
		return
	default:
		h.settleLease(l, true, 0) // final
		return
	}
	now := h.now()
	from := []domain.MessageStatus{domain.MessageAccepted, domain.MessageQueued, domain.MessageScheduled}
	if expired(n, now) {
		h.expire(ctx, n)
		h.settleLease(l, true, 0)
		return
	}
	if n.SendAt.After(now) {
		// Scheduled: the outbox sweeper republishes it at send_at.
		if _, err := h.store.Transition(ctx, []string{n.ID}, domain.MessageScheduled, n.SendAt, "", from...); err != nil {
			h.logf("outbound: schedule %s: %v", n.ID, err)
		}
		h.settleLease(l, true, 0)
		return
	}
	if h.dead.Load() {
		return
	}
	var claimed, resumed bool
	err = h.urgently(n.Priority == domain.PriorityHigh, func() (err error) {
		// Claims are group-committed by the store: many messages, one commit.
		claimed, resumed, err = h.store.Claim(ctx, n.ID, now.Add(h.cfg.StaleAfter))
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			h.logf("outbound: claim %s: %v", n.ID, err)
		}
		h.settleLease(l, false, time.Second)
		return
	}
	if !claimed {
		h.settleLease(l, true, 0) // claimed by another consumer
		return
	}
	// Deliveries can only exist if the message was dispatched before (the
	// claim read that from the database); a first dispatch skips the lookup
	// of existing rows.
	st := h.attach(n, true)
	ok := h.expand(ctx, st, resumed)
	h.settleLease(l, true, 0)
	h.endFanout(st, ok)
}

// load reads the notification of a lane message. On SQLite it reads
// through the read pool (WAL readers see every committed row), so a
// high-priority message is not queued behind the single writer connection;
// elsewhere it reads the primary, since a replica may lag.
func (h *Handler) load(ctx context.Context, msg queue.Message) (*messages.Notification, error) {
	// Accepted by this very process: no read needed.
	if n := h.store.Take(msg.ID); n != nil && n.AppID == msg.AppID {
		return n, nil
	}
	if h.sql.db.Dialect == sqldb.SQLite && msg.AppID != "" {
		n, err := h.store.Get(ctx, msg.AppID, msg.ID)
		if !errors.Is(err, messages.ErrNotFound) {
			return n, err
		}
	}
	return h.store.Load(ctx, msg.ID)
}

// expire marks an undispatched notification expired: one in from, by
// default accepted, queued or scheduled. It reports false when the write
// failed.
func (h *Handler) expire(ctx context.Context, n *messages.Notification, from ...domain.MessageStatus) bool {
	if len(from) == 0 {
		from = []domain.MessageStatus{domain.MessageAccepted, domain.MessageQueued, domain.MessageScheduled}
	}
	c, err := h.store.Transition(ctx, []string{n.ID}, domain.MessageExpired, time.Time{}, "expired before dispatch", from...)
	if err != nil {
		h.logf("outbound: expire %s: %v", n.ID, err)
		return false
	}
	if c > 0 {
		h.track.Track(h.msgEvent(n, contracts.EventExpired, h.now(), "expired before dispatch"))
	}
	return true
}

// fan is the state of one running fan-out.
type fan struct {
	h        *Handler
	st       *msgState
	ctx      context.Context
	now      time.Time
	existing map[[12]byte]bool // rows from an earlier run, by delivery id
	seed1    maphash.Seed
	seed2    maphash.Seed
	seen     map[[2]uint64]struct{} // recipients already fanned out (only with several entries)
	total    int

	rows   []*messages.Delivery   // non-dispatched outcomes of the current page
	groups [][]*messages.Delivery // failures with their fallback rows (one transaction each)
	events []contracts.Event
	jobs   []*job // deferred deliveries and fallbacks, armed once recorded
	queued []contracts.Event
	// submitted: rows went to the recorder; they must be durable before
	// the lane message is acked.
	submitted bool
}

// urgently runs a write of a high-priority message; the recorder lets it
// in before its next chunk of outcome rows.
func (h *Handler) urgently(high bool, fn func() error) error {
	if !high {
		return fn()
	}
	h.urgentIn.Add(1)
	defer h.urgentOut.Add(1)
	return fn()
}

// expand resolves recipients and routes every (recipient, channel). It
// returns false when the fan-out could not finish; the message then stays
// processing and reconciliation resumes it.
func (h *Handler) expand(ctx context.Context, st *msgState, resumed bool) bool {
	n := st.n
	if err := st.resolve(ctx, h); err != nil {
		h.logf("outbound: channels of %s: %v", n.ID, err)
		return false
	}
	f := &fan{h: h, st: st, ctx: ctx, now: h.now()}
	if resumed {
		ex, err := h.sql.existing(ctx, n.ID)
		if err != nil {
			h.logf("outbound: resume %s: %v", n.ID, err)
			return false
		}
		f.existing = ex.ids
		if ex.open > 0 {
			st.mu.Lock()
			st.durableOpen = true // open rows from the earlier run belong to the retry sweeper
			st.mu.Unlock()
		}
	}
	if len(n.Payload.Recipients) > 1 {
		f.seed1, f.seed2 = maphash.MakeSeed(), maphash.MakeSeed()
		f.seen = map[[2]uint64]struct{}{}
	}
	var users []string
	for _, r := range n.Payload.Recipients {
		if r.UserID != "" {
			users = append(users, r.UserID)
		}
	}
	for start := 0; start < len(users); start += profileBatch {
		chunk := users[start:min(start+profileBatch, len(users))]
		profs, err := h.dir.Profiles(ctx, n.AppID, chunk)
		if err != nil {
			if ctx.Err() == nil {
				h.logf("outbound: profiles for %s: %v", n.ID, err)
			}
			return false
		}
		for _, id := range chunk {
			p := profs[id]
			if p == nil {
				if !f.unseen(id) {
					continue
				}
				f.unknown(id, id, "unknown user")
				continue
			}
			if p.UserID == "" { // never mutate the directory's (possibly cached) profile
				cp := *p
				cp.UserID = id
				p = &cp
			}
			if err := f.recipient(p, id); err != nil {
				return false
			}
		}
		if err := f.page(); err != nil {
			return false
		}
	}
	for _, r := range n.Payload.Recipients {
		if r.Email == "" && r.Phone == "" || r.UserID != "" || r.GroupID != "" {
			continue
		}
		p := &contracts.Profile{Email: r.Email, Phone: r.Phone}
		if r.Email != "" {
			p.Phone = ""
		}
		if err := f.recipient(p, messages.RecipientKey("", p.Email, p.Phone)); err != nil {
			return false
		}
	}
	if err := f.page(); err != nil {
		return false
	}
	for _, r := range n.Payload.Recipients {
		if r.GroupID == "" || r.UserID != "" {
			continue
		}
		err := h.dir.GroupMembers(ctx, n.AppID, r.GroupID, h.tun.GroupBatch, func(ps []*contracts.Profile) error {
			for i, p := range ps {
				if i%yieldEvery == yieldEvery-1 {
					h.giveWay(st)
				}
				if p == nil || p.UserID == "" {
					continue
				}
				if err := f.recipient(p, p.UserID); err != nil {
					return err
				}
			}
			return f.page()
		})
		switch {
		case errors.Is(err, contracts.ErrGroupNotFound):
			key := "group:" + r.GroupID
			if f.unseen(key) {
				f.unknown(key, "", "unknown group "+r.GroupID)
			}
		case err != nil:
			if ctx.Err() == nil {
				h.logf("outbound: members of group %s for %s: %v", r.GroupID, n.ID, err)
			}
			return false
		}
		if err := f.page(); err != nil {
			return false
		}
	}
	if f.submitted && !h.rec.flush(ctx, st.high()) {
		return false
	}
	if h.dead.Load() {
		return false
	}
	// The total is recorded with the completion (one write instead of
	// two), or before the completion check when open rows remain; a crash
	// before then resumes the fan-out, which counts again.
	st.mu.Lock()
	st.total = f.total
	st.mu.Unlock()
	return true
}

// unseen reports whether key is new to this fan-out (and remembers it).
func (f *fan) unseen(key string) bool {
	if f.seen == nil {
		return true
	}
	k := [2]uint64{maphash.String(f.seed1, key), maphash.String(f.seed2, key)}
	if _, ok := f.seen[k]; ok {
		return false
	}
	f.seen[k] = struct{}{}
	return true
}

func (f *fan) has(id string) bool {
	if f.existing == nil {
		return false
	}
	k, ok := messages.DeliveryKey(id)
	return ok && f.existing[k]
}

// unknown records the one skipped delivery of an unresolvable recipient.
func (f *fan) unknown(key, userID, reason string) {
	f.total++
	ch := f.st.channels[0]
	id := messages.DeliveryID(f.st.n.ID, key, ch)
	if f.has(id) {
		return
	}
	d := &messages.Delivery{ID: id, AppID: f.st.n.AppID, NotificationID: f.st.n.ID, Recipient: key, UserID: userID,
		Channel: ch, Status: domain.DeliverySkipped, Error: reason, CreatedAt: ms(f.now)}
	f.rows = append(f.rows, d)
	f.events = append(f.events, f.h.event(f.st.n, d, contracts.EventSkipped, f.now))
	f.h.skipped.Add(1)
}

// recipient routes every channel of one resolved recipient.
func (f *fan) recipient(p *contracts.Profile, key string) error {
	if !f.unseen(key) {
		return nil
	}
	h, st, n := f.h, f.st, f.st.n
	for _, ch := range st.channels {
		f.total++
		id := messages.DeliveryID(n.ID, key, ch)
		if f.has(id) {
			continue // recorded by an earlier run: final, or owned by the retry sweeper
		}
		d := &messages.Delivery{ID: id, AppID: n.AppID, NotificationID: n.ID, Recipient: key, UserID: p.UserID,
			Channel: ch, CreatedAt: ms(f.now)}
		pl := h.plan(f.ctx, st, p, ch, f.now)
		d.Address = pl.address
		switch pl.kind {
		case planSkip:
			d.Status, d.Error = domain.DeliverySkipped, pl.reason
			f.rows = append(f.rows, d)
			f.events = append(f.events, h.event(n, d, contracts.EventSkipped, f.now))
			h.skipped.Add(1)
		case planFail:
			d.Status, d.Error = domain.DeliveryFailed, pl.reason
			f.events = append(f.events, h.event(n, d, contracts.EventFailed, f.now))
			kids := h.fallbacks(st, d, p, f.now)
			if len(kids.rows) == 0 {
				f.rows = append(f.rows, d)
			} else { // the failure and its fallbacks are written together
				f.groups = append(f.groups, append([]*messages.Delivery{d}, kids.rows...))
			}
			f.events = append(f.events, kids.events...)
			f.jobs = append(f.jobs, kids.jobs...)
		case planDefer:
			d.Status, d.NextAt = domain.DeliveryPending, pl.at
			f.rows = append(f.rows, d)
			f.events = append(f.events, h.event(n, d, contracts.EventScheduled, f.now))
			f.jobs = append(f.jobs, &job{st: st, d: d, prof: p, content: pl.content})
			h.pendingN.Add(1)
		default:
			d.Status = domain.DeliveryQueued // in memory only: no row until the outcome
			j := &job{st: st, d: d, prof: p, content: pl.content}
			ev := h.event(n, d, contracts.EventQueued, f.now) // before the push: a worker owns d after it
			st.add(1)
			if err := h.pools[ch].push(j, true); err != nil {
				st.add(-1)
				return err
			}
			f.queued = append(f.queued, ev)
			if len(f.queued) >= 256 {
				h.track.Track(f.queued...)
				f.queued = f.queued[:0]
			}
		}
	}
	if len(f.rows)+len(f.groups) >= f.h.tun.RecordBatch {
		return f.page()
	}
	return nil
}

// page hands the page's non-dispatched rows to the recorder; deferred
// deliveries and fallbacks are armed once their rows are durable.
func (f *fan) page() error {
	if len(f.queued) > 0 {
		f.h.track.Track(f.queued...)
		f.queued = f.queued[:0]
	}
	if err := f.ctx.Err(); err != nil {
		return err
	}
	if len(f.rows) == 0 && len(f.groups) == 0 {
		return nil
	}
	h, st, jobs := f.h, f.st, f.jobs
	st.add(len(jobs))
	f.submitted = true
	for _, g := range f.groups {
		h.rec.submit(recEntry{rows: g, atomic: true, wait: true, high: st.high(), low: st.low()})
	}
	f.groups = nil
	// Submitted after the groups (same lane): its callback runs once they
	// are durable too.
	h.rec.submit(recEntry{rows: f.rows, events: f.events, wait: true, high: st.high(), low: st.low(), after: func(ok bool) {
		if !ok {
			st.mu.Lock()
			st.incomplete = true
			st.mu.Unlock()
			for _, j := range jobs {
				h.abandon(j)
			}
			return
		}
		for _, j := range jobs {
			h.scheduleRetry(j)
		}
	}})
	f.rows, f.events, f.jobs = nil, nil, nil
	return nil
}

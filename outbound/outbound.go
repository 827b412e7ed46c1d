// Package outbound is Herald's universal outbound handler. It drains the
// priority lanes, resolves each notification's recipients through the
// Directory, renders content once per (channel, locale), routes every
// (recipient, channel) delivery through preferences, addresses and quiet
// hours, hands deliveries to bounded per-channel worker pools that serve
// high priority first, records every outcome in batches, retries with
// exponential backoff and full jitter, follows fallback chains, and runs the
// outbox, retry and reconciliation sweepers that make an accepted
// notification impossible to lose. See docs/outbound.md for the design.
package outbound

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync"
	"sync/atomic"
	"time"

	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/messages"
	"herald.dev/platform/queue"
	"herald.dev/platform/sqldb"
)

// Deps are the handler's collaborators and settings.
type Deps struct {
	Store     *messages.Store
	Queue     queue.Queue
	Directory contracts.Directory
	Renderer  contracts.Renderer
	// Senders maps each configured channel to its adapter. A delivery on a
	// channel without a sender fails with "channel X is not configured".
	Senders map[domain.Channel]contracts.Sender
	// Tracker receives an event for every state change (nil = NopTracker).
	Tracker contracts.Tracker
	Config  config.Outbound
	// DefaultChannels are used when a send names no channels and its
	// template has no variants (nil = Config.DefaultChannels, else inapp).
	DefaultChannels []domain.Channel
	// Fallback holds per-category fallback chains ("*" applies to every
	// category); a notification's own Payload.Fallback takes precedence.
	Fallback map[string][]domain.Channel
	// Logf logs one line (nil = log.Printf).
	Logf func(string, ...any)
	// Now is the clock (nil = time.Now); tests inject it.
	Now func() time.Time
	// Tuning holds the knobs that are not in the config file; zero values
	// take the defaults documented on each field.
	Tuning Tuning
}

// Tuning are internal limits. Zero values take the defaults.
type Tuning struct {
	// FanoutSlots is how many fan-outs may run at once per priority, indexed
	// by Priority.Rank() (default 128 high, 128 medium, 64 low on SQLite,
	// 512/512/64 on MySQL; most fan-outs are a few recipients and wait
	// mostly on commits). High never
	// waits for a medium or low slot.
	FanoutSlots [3]int
	// SubQueue bounds each per-priority sub-queue of a channel's worker
	// pool (default 4096 jobs).
	SubQueue int
	// AgeLimit is the pool's ageing rule: a lower-priority job whose wait
	// exceeds it is served on every AgedShare-th pick even while higher
	// work is waiting (default 5s).
	AgeLimit time.Duration
	// AgedShare is the 1-in-N share of picks given to overdue lower work
	// (default 4).
	AgedShare int
	// SendTimeout bounds one Sender.Send call (default 30s).
	SendTimeout time.Duration
	// ShutdownGrace bounds how long Run waits for in-flight deliveries
	// after its context ends (default 15s).
	ShutdownGrace time.Duration
	// RecordBatch is how many delivery rows trigger a flush (default 2048);
	// RecordInterval is the longest a row waits for its flush (default 5ms).
	RecordBatch    int
	RecordInterval time.Duration
	// RecordTxRows caps the rows written per transaction (default 256):
	// smaller transactions let other writers (claims of high-priority
	// messages) in sooner, larger ones write faster.
	RecordTxRows int
	// RecordLowTxRows is RecordTxRows for low-priority rows (default 1024,
	// 512 on MySQL): bulk sends favour throughput, fewer and larger commits.
	RecordLowTxRows int
	// RecordLowTxRowsBusy replaces RecordLowTxRows while high-priority
	// work arrives (an urgent write or high-priority rows within the last
	// second; default 512): a high-priority accept waits for at most one
	// low-priority chunk, so smaller chunks shorten its wait at some cost
	// to the bulk send.
	RecordLowTxRowsBusy int
	// RecordWriters is how many chunks are written at once (default 4; on
	// SQLite the store folds concurrent chunks into one transaction).
	RecordWriters int
	// GroupBatch is the page size for streaming group members (default 1000).
	GroupBatch int
	// PreclaimCap bounds the notifications claimed at accept whose fan-out
	// has not started (default 16384). They are held in memory with their
	// payload; beyond the cap, Hold refuses and the API accepts as usual
	// (the fan-out then claims).
	PreclaimCap int
	// SweepLimit bounds the rows one sweep batch handles (default 500); a
	// sweep runs at most SweepBatches batches per run (default 8).
	SweepLimit   int
	SweepBatches int
	// RetryTimerMax: retries due within this are re-dispatched by an
	// in-memory timer, later ones by the retry sweeper (default 1m).
	RetryTimerMax time.Duration
	// MaxTimers caps in-memory retry timers (default 20000); beyond it the
	// retry sweeper takes over.
	MaxTimers int
	// SweepGrace delays the retry sweeper behind the in-memory timers so
	// the timers win (default 2s, at most SweepInterval).
	SweepGrace time.Duration
}

func (t *Tuning) defaults(cfg config.Outbound, d sqldb.Dialect) {
	def := [3]int{128, 128, 64}
	if d == sqldb.MySQL {
		// A fan-out mostly waits on round trips (claim, profiles), and
		// MySQL serves many at once: more slots keep dispatch up with
		// accepts. On SQLite, with one writer, more only add contention.
		def = [3]int{512, 512, 64}
	}
	for i := range t.FanoutSlots {
		if t.FanoutSlots[i] <= 0 {
			t.FanoutSlots[i] = def[i]
		}
	}
	setDefault(&t.SubQueue, 4096)
	setDefaultDur(&t.AgeLimit, 5*time.Second)
	setDefault(&t.AgedShare, 4)
	setDefaultDur(&t.SendTimeout, 30*time.Second)
	setDefaultDur(&t.ShutdownGrace, 15*time.Second)
	setDefault(&t.RecordBatch, 2048)
	setDefaultDur(&t.RecordInterval, 5*time.Millisecond)
	setDefault(&t.RecordTxRows, 256)
	lowRows := 1024
	if d == sqldb.MySQL {
		// A 1,000,000-member fan-out on MariaDB wrote 16,200–16,600
		// deliveries/s in 1,024-row transactions and 41,300–49,200/s in
		// 512-row ones (docs/benchmarks.md, third round of 2026-12-04).
		lowRows = 512
	}
	setDefault(&t.RecordLowTxRows, lowRows)
	setDefault(&t.RecordLowTxRowsBusy, min(512, t.RecordLowTxRows))
	setDefault(&t.GroupBatch, 1000)
	setDefault(&t.PreclaimCap, 16384)
	setDefault(&t.SweepLimit, 500)
	setDefault(&t.SweepBatches, 8)
	setDefaultDur(&t.RetryTimerMax, time.Minute)
	setDefault(&t.MaxTimers, 20000)
	setDefaultDur(&t.SweepGrace, 2*time.Second)
	if t.SweepGrace > cfg.SweepInterval {
		t.SweepGrace = cfg.SweepInterval
	}
}

func setDefault(p *int, v int) {
	if *p <= 0 {
		*p = v
	}
}

func setDefaultDur(p *time.Duration, v time.Duration) {
	if *p <= 0 {
		*p = v
	}
}

// Handler is the outbound handler. Create it with New and start it with Run.
type Handler struct {
	store    *messages.Store
	q        queue.Queue
	dir      contracts.Directory
	rend     contracts.Renderer
	track    contracts.Tracker
	cfg      config.Outbound
	tun      Tuning
	defaults []domain.Channel
	fallback map[string][]domain.Channel
	logf     func(string, ...any)
	now      func() time.Time
	sql      sqlq

	pools map[domain.Channel]*pool
	tiers [3]*tier
	rec   *recorder
	comp  *completer

	regMu sync.Mutex
	reg   map[string]*msgState
	// preclaiming: Hold claims notifications at accept (from Run until
	// shutdown); preclaimed counts those whose fan-out has not started.
	preclaiming bool
	preclaimed  int

	heldMu   sync.Mutex
	held     map[string]*job // durable open rows claimed by this process and held in memory
	released []string        // held rows abandoned at shutdown: their leases are released

	timerMu   sync.Mutex
	timers    map[*job]*time.Timer
	timerIDs  map[string]int
	timersOff bool

	running atomic.Bool
	dead    atomic.Bool // halted (simulated crash): no more writes

	baseCtx    context.Context // lives until Run returns; for bookkeeping writes
	baseCancel context.CancelFunc
	recvCtx    context.Context
	recvCancel context.CancelFunc
	fanCtx     context.Context
	fanCancel  context.CancelFunc
	sendCtx    context.Context
	sendCancel context.CancelFunc
	sweepCtx   context.Context
	sweepStop  context.CancelFunc
	hbCtx      context.Context
	hbStop     context.CancelFunc

	fanWG    sync.WaitGroup
	workerWG sync.WaitGroup
	bgWG     sync.WaitGroup // receiver, sweepers, heartbeat

	skipped  atomic.Uint64
	pendingN atomic.Uint64
	// urgentIn and urgentOut count urgent writes begun and finished:
	// high-priority claims, and high-priority accepts claimed at accept
	// (finished when their fan-out starts).
	urgentIn, urgentOut atomic.Uint64

	retryKick chan struct{}
	retryNow  atomic.Bool
}

// New validates deps and builds a handler.
func New(d Deps) (*Handler, error) {
	if d.Store == nil {
		return nil, errors.New("outbound: Store is required")
	}
	if d.Queue == nil {
		return nil, errors.New("outbound: Queue is required")
	}
	if d.Directory == nil {
		return nil, errors.New("outbound: Directory is required")
	}
	if d.Renderer == nil {
		return nil, errors.New("outbound: Renderer is required")
	}
	cfg := d.Config
	def := config.Defaults().Outbound
	setDefault(&cfg.Workers, def.Workers)
	setDefault(&cfg.MaxAttempts, def.MaxAttempts)
	setDefaultDur(&cfg.BackoffBase, def.BackoffBase)
	setDefaultDur(&cfg.BackoffMax, def.BackoffMax)
	setDefaultDur(&cfg.SweepInterval, def.SweepInterval)
	setDefaultDur(&cfg.StaleAfter, def.StaleAfter)
	if cfg.BackoffMax < cfg.BackoffBase {
		cfg.BackoffMax = cfg.BackoffBase
	}
	h := &Handler{
		store: d.Store, q: d.Queue, dir: d.Directory, rend: d.Renderer, track: d.Tracker, cfg: cfg, tun: d.Tuning,
		logf: d.Logf, now: d.Now, sql: newSQLQ(d.Store.DB()),
		pools: map[domain.Channel]*pool{}, reg: map[string]*msgState{}, held: map[string]*job{},
		timers: map[*job]*time.Timer{}, timerIDs: map[string]int{}, fallback: map[string][]domain.Channel{},
		retryKick: make(chan struct{}, 1),
	}
	if h.tun.RecordWriters <= 0 {
		// Concurrent chunks share commits: on SQLite the store folds writes
		// that arrive together into one transaction, on MySQL they commit in
		// parallel.
		h.tun.RecordWriters = 4
	}
	h.tun.defaults(cfg, d.Store.DB().Dialect)
	if h.track == nil {
		h.track = contracts.NopTracker{}
	}
	if h.logf == nil {
		h.logf = log.Printf
	}
	if h.now == nil {
		h.now = time.Now
	}
	for cat, chain := range d.Fallback {
		for _, ch := range chain {
			if !ch.Valid() {
				return nil, fmt.Errorf("outbound: fallback chain %q: unknown channel %q", cat, ch)
			}
		}
		h.fallback[cat] = append([]domain.Channel(nil), chain...)
	}
	h.defaults = append(h.defaults, d.DefaultChannels...)
	if len(h.defaults) == 0 {
		for _, c := range cfg.DefaultChannels {
			h.defaults = append(h.defaults, domain.Channel(c))
		}
	}
	if len(h.defaults) == 0 {
		h.defaults = []domain.Channel{domain.ChannelInApp}
	}
	for _, ch := range h.defaults {
		if !ch.Valid() {
			return nil, fmt.Errorf("outbound: default channel %q is unknown", ch)
		}
	}
	for ch, s := range d.Senders {
		if s == nil {
			continue
		}
		if !ch.Valid() {
			return nil, fmt.Errorf("outbound: sender for unknown channel %q", ch)
		}
		n := cfg.Workers
		if w, ok := cfg.ChannelWorkers[string(ch)]; ok && w > 0 {
			n = w
		}
		h.pools[ch] = newPool(ch, s, n, h.tun.SubQueue, h.tun.AgeLimit, h.tun.AgedShare)
	}
	for r, p := range domain.Priorities {
		h.tiers[r] = newTier(p, h.tun.FanoutSlots[r])
	}
	h.rec = newRecorder(h)
	for _, p := range h.pools {
		p.room = h.rec.room
	}
	h.comp = newCompleter(h)
	return h, nil
}

// Run dispatches until ctx ends, then stops taking new work, finishes
// in-flight deliveries (bounded by the shutdown grace), flushes the outcome
// batches and returns. A Handler runs once.
func (h *Handler) Run(ctx context.Context) error {
	if !h.running.CompareAndSwap(false, true) {
		return errors.New("outbound: handler already ran")
	}
	h.baseCtx, h.baseCancel = context.WithCancel(context.Background())
	h.recvCtx, h.recvCancel = context.WithCancel(h.baseCtx)
	h.fanCtx, h.fanCancel = context.WithCancel(h.baseCtx)
	h.sendCtx, h.sendCancel = context.WithCancel(h.baseCtx)
	h.sweepCtx, h.sweepStop = context.WithCancel(h.baseCtx)
	h.hbCtx, h.hbStop = context.WithCancel(h.baseCtx)

	h.rec.start()
	h.comp.start()
	for _, p := range h.pools {
		for i := 0; i < p.workers; i++ {
			h.workerWG.Add(1)
			go h.worker(p)
		}
	}
	h.bgWG.Add(5)
	go h.sweepLoop("outbox", h.outboxSweep, nil)
	go h.sweepLoop("reconcile", h.reconcileSweep, nil)
	go h.sweepLoop("retry", h.retrySweep, h.retryKick)
	go h.heartbeat()
	go h.receive()
	h.regMu.Lock()
	h.preclaiming = true
	h.regMu.Unlock()

	<-ctx.Done()
	if h.dead.Load() {
		h.bgWG.Wait()
		h.fanWG.Wait()
		h.workerWG.Wait()
		return nil
	}
	h.shutdown()
	return nil
}

// shutdown stops intake, drains the pools within the grace period, flushes
// every batch and releases leases so a restart resumes at once.
func (h *Handler) shutdown() {
	h.recvCancel()
	h.sweepStop()
	h.fanCancel()
	for _, p := range h.pools {
		p.abortPushes()
	}
	for _, t := range h.tiers {
		for _, l := range t.stop() {
			h.settleLease(l, false, 0)
		}
	}
	h.fanWG.Wait()
	h.stopPreclaiming()
	h.stopTimers()
	for _, p := range h.pools {
		p.close()
	}
	drained := make(chan struct{})
	go func() { h.workerWG.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(h.tun.ShutdownGrace):
		h.logf("outbound: shutdown grace %s passed with deliveries in flight; leaving them to recovery", h.tun.ShutdownGrace)
		h.sendCancel()
		for _, p := range h.pools {
			for _, j := range p.discard() {
				h.abandon(j)
			}
		}
		<-drained
	}
	h.rec.close()
	h.comp.close()
	h.hbStop()
	h.bgWG.Wait()
	h.heldMu.Lock()
	ids := h.released
	for id := range h.held {
		ids = append(ids, id)
	}
	h.released, h.held = nil, map[string]*job{}
	h.heldMu.Unlock()
	if len(ids) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := h.sql.setDeliveryLeases(ctx, ids, h.now()); err != nil {
			h.logf("outbound: release %d delivery leases: %v", len(ids), err)
		}
		cancel()
	}
	h.sendCancel()
	h.baseCancel()
}

// halt simulates a crash (kill -9): everything stops at once, nothing is
// flushed and no lease is released. Tests use it.
func (h *Handler) halt() {
	h.dead.Store(true)
	h.recvCancel()
	h.sweepStop()
	h.fanCancel()
	h.sendCancel()
	for _, p := range h.pools {
		p.abortPushes()
		p.close()
		p.discard()
	}
	for _, t := range h.tiers {
		t.stop()
	}
	h.timerMu.Lock()
	h.timersOff = true
	for j, t := range h.timers {
		t.Stop()
		delete(h.timers, j)
	}
	h.timerMu.Unlock()
	h.rec.kill()
	h.comp.kill()
	h.baseCancel()
}

// ChannelStats describes one channel's worker pool.
type ChannelStats struct {
	Workers int
	// Depth is the number of deliveries waiting in each priority sub-queue.
	Depth     map[domain.Priority]int
	InFlight  int
	Sent      uint64 // accepted by the channel (sent or delivered)
	Delivered uint64 // confirmed delivered (subset of Sent)
	Failed    uint64
	Retried   uint64
	Expired   uint64
}

// Stats is a snapshot for metrics.
type Stats struct {
	Channels map[domain.Channel]ChannelStats
	// Fanouts is the number of fan-outs running per priority, and Waiting
	// the received messages waiting for a fan-out slot.
	Fanouts map[domain.Priority]int
	Waiting map[domain.Priority]int
	// Messages is how many notifications the handler holds in memory.
	Messages int
	// Timers is the number of armed in-memory retry timers.
	Timers int
	// Unrecorded is the number of delivery rows waiting for their batch flush.
	Unrecorded int
	Skipped    uint64
	Deferred   uint64 // deliveries stored pending for quiet hours
}

// Stats returns counters and depths.
func (h *Handler) Stats() Stats {
	s := Stats{Channels: map[domain.Channel]ChannelStats{}, Fanouts: map[domain.Priority]int{}, Waiting: map[domain.Priority]int{}}
	for ch, p := range h.pools {
		s.Channels[ch] = p.stats()
	}
	for r, t := range h.tiers {
		run, wait := t.counts()
		s.Fanouts[domain.Priorities[r]] = run
		s.Waiting[domain.Priorities[r]] = wait
	}
	h.regMu.Lock()
	s.Messages = len(h.reg)
	h.regMu.Unlock()
	h.timerMu.Lock()
	s.Timers = len(h.timers)
	h.timerMu.Unlock()
	s.Unrecorded = h.rec.pending()
	s.Skipped = h.skipped.Load()
	s.Deferred = h.pendingN.Load()
	return s
}

// ms truncates t to the millisecond, the storage precision, so values read
// back compare equal to what was written.
func ms(t time.Time) time.Time { return domain.FromMillis(domain.Millis(t)) }

package outbound

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/messages"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
)

// noopSender accepts everything; high-priority sends are reported on hi.
type noopSender struct {
	ch    domain.Channel
	n     atomic.Int64
	lowNS time.Duration // simulated cost of a low send
	hi    chan time.Time
}

func (s *noopSender) Channel() domain.Channel { return s.ch }

func (s *noopSender) Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	s.n.Add(1)
	if d.Priority == domain.PriorityHigh && s.hi != nil {
		s.hi <- time.Now()
	} else if s.lowNS > 0 {
		time.Sleep(s.lowNS) // a vendor round trip: the worker waits, the CPU is free
	}
	return contracts.Result{Delivered: true}, nil
}

// BenchmarkFanout streams a 100k-member group through the whole handler
// (directory pages, routing, pools, a no-op sender, batched outcome rows on
// SQLite) and reports deliveries per second.
func BenchmarkFanout(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchFanout(b, sqldbtest.SQLite(b)) })
	b.Run("mysql", func(b *testing.B) { benchFanout(b, sqldbtest.MySQL(b)) })
}

func benchFanout(b *testing.B, db *sqldb.DB) {
	const members = 100_000
	e := newEnv(b, db)
	s := &noopSender{ch: domain.ChannelInApp}
	e.deps.Senders = map[domain.Channel]contracts.Sender{domain.ChannelInApp: s}
	e.deps.Tracker = contracts.NopTracker{}
	e.deps.Config.Workers = 16
	e.deps.Config.StaleAfter = time.Minute
	e.dir.gen["all"] = members
	e.start()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // sample the heap
		defer wg.Done()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		n := e.accept([]domain.Recipient{{GroupID: "all"}}, withChannels(domain.ChannelInApp), withPriority(domain.PriorityLow))
		e.waitStatus(n.ID, domain.MessageDone)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	wg.Wait()
	if got := s.n.Load(); got != int64(b.N*members) {
		b.Fatalf("sent %d, want %d", got, b.N*members)
	}
	b.ReportMetric(float64(b.N*members)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MB")
}

// BenchmarkPriority measures how long a high-priority delivery takes to
// reach its sender when 200k low-priority deliveries are queued in the same
// channel's pool and the workers are busy with them (each low send waits
// 50µs, like a fast vendor call) or held back by the outcome recorder: the
// time from the push into the pool to Sender.Send.
func BenchmarkPriority(b *testing.B) {
	const backlog = 200_000
	db := sqldbtest.SQLite(b)
	e := newEnv(b, db)
	s := &noopSender{ch: domain.ChannelBench, lowNS: 50 * time.Microsecond, hi: make(chan time.Time, 1)}
	e.deps.Senders = map[domain.Channel]contracts.Sender{domain.ChannelBench: s}
	e.deps.Tracker = contracts.NopTracker{}
	e.deps.Config.Workers = 4
	e.deps.Config.StaleAfter = time.Hour
	e.deps.Tuning.SubQueue = 2 * backlog
	h := e.start()
	p := h.pools[domain.ChannelBench]
	low := h.attach(e.notification(nil, withPriority(domain.PriorityLow)), false)
	high := h.attach(e.notification(nil, withPriority(domain.PriorityHigh)), false)
	mk := func(st *msgState, i int) *job {
		id := fmt.Sprintf("r%d", i)
		return &job{st: st, d: &messages.Delivery{ID: messages.DeliveryID(st.n.ID, id, domain.ChannelBench), AppID: st.n.AppID,
			NotificationID: st.n.ID, Recipient: id, UserID: id, Channel: domain.ChannelBench}}
	}
	fill := func(k int) {
		low.add(k)
		for i := 0; i < k; i++ {
			if err := p.push(mk(low, i), true); err != nil {
				b.Fatal(err)
			}
		}
	}
	fill(backlog)
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d := p.depth(2); d < backlog {
			b.StopTimer()
			fill(backlog - d)
			b.StartTimer()
		}
		high.add(1)
		t0 := time.Now()
		if err := p.push(mk(high, i), true); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, (<-s.hi).Sub(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(p.depth(2)), "low-backlog")
	p.abortPushes()
	for _, j := range p.discard() {
		j.st.add(-1)
	}
}

// BenchmarkHighBehindLowGroup is the end-to-end form: a 200k-member
// low-priority group is being fanned out and sent (low sends wait 20µs)
// when a high-priority notification is accepted; it measures acceptance
// (publish) to Sender.Send of the high delivery, through the lane, the
// fan-out tiers and the pool.
func BenchmarkHighBehindLowGroup(b *testing.B) {
	const members = 200_000
	db := sqldbtest.SQLite(b)
	e := newEnv(b, db)
	s := &noopSender{ch: domain.ChannelInApp, lowNS: 20 * time.Microsecond, hi: make(chan time.Time, 1)}
	e.deps.Senders = map[domain.Channel]contracts.Sender{domain.ChannelInApp: s}
	e.deps.Tracker = contracts.NopTracker{}
	e.deps.Config.Workers = 4
	e.deps.Config.StaleAfter = time.Hour
	e.dir.gen["all"] = members
	e.dir.add(&contracts.Profile{UserID: "vip"})
	h := e.start()
	e.accept([]domain.Recipient{{GroupID: "all"}}, withChannels(domain.ChannelInApp), withPriority(domain.PriorityLow))
	waitFor(b, "a low backlog", func() bool { return h.pools[domain.ChannelInApp].depth(2) >= 2000 })
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		e.accept(users("vip"), withChannels(domain.ChannelInApp), withPriority(domain.PriorityHigh))
		lat = append(lat, (<-s.hi).Sub(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(h.pools[domain.ChannelInApp].depth(2)), "low-backlog")
}

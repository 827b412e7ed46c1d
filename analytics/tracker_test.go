package analytics

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"herald.dev/platform/contracts"
)

// fakeSink records batches; failures and blocking are scripted.
type fakeSink struct {
	mu       sync.Mutex
	batches  [][]contracts.Event
	calls    int
	failN    int           // fail the first failN calls
	failAll  bool          // fail every call
	gate     chan struct{} // when set, WriteEvents waits for it (or ctx)
	wrote    chan int      // receives each successful batch's size
	maxBatch int
}

func newFake() *fakeSink { return &fakeSink{wrote: make(chan int, 1024)} }

func (f *fakeSink) WriteEvents(ctx context.Context, evs []contracts.Event) error {
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	f.calls++
	if f.failAll || f.calls <= f.failN {
		f.mu.Unlock()
		return errors.New("sink down")
	}
	f.batches = append(f.batches, append([]contracts.Event(nil), evs...))
	f.maxBatch = max(f.maxBatch, len(evs))
	f.mu.Unlock()
	select {
	case f.wrote <- len(evs):
	default:
	}
	return nil
}

func (f *fakeSink) Summary(context.Context, string, time.Time, time.Time) (Summary, error) {
	return Summary{}, nil
}
func (f *fakeSink) Series(context.Context, string, time.Time, time.Time, Bucket, string) ([]Point, error) {
	return nil, nil
}
func (f *fakeSink) Events(context.Context, string, string) ([]contracts.Event, error) {
	return nil, nil
}

func (f *fakeSink) all() []contracts.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []contracts.Event
	for _, b := range f.batches {
		out = append(out, b...)
	}
	return out
}

func (f *fakeSink) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func ev(i int) contracts.Event {
	return contracts.Event{AppID: "app", NotificationID: fmt.Sprintf("n%d", i), Type: contracts.EventQueued, At: time.Unix(1_700_000_000, 0)}
}

// waitWritten waits (bounded) until n events reached the sink.
func waitWritten(t *testing.T, f *fakeSink, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	got := len(f.all())
	for got < n {
		select {
		case k := <-f.wrote:
			got += k
		case <-deadline:
			t.Fatalf("only %d of %d events reached the sink", len(f.all()), n)
		}
	}
}

func TestFlushBySize(t *testing.T) {
	f := newFake()
	tr := NewTracker(f, Options{BatchSize: 10, FlushInterval: time.Hour, BufferSize: 1024})
	defer tr.Close()
	for i := 0; i < 40; i++ {
		tr.Track(ev(i))
	}
	// No ticker will fire for an hour: only the size trigger can flush.
	waitWritten(t, f, 10)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maxBatch > 10 {
		t.Errorf("a batch held %d events, BatchSize is 10", f.maxBatch)
	}
}

func TestFlushByInterval(t *testing.T) {
	f := newFake()
	tr := NewTracker(f, Options{BatchSize: 1000, FlushInterval: 20 * time.Millisecond})
	defer tr.Close()
	tr.Track(ev(1), ev(2), ev(3))
	waitWritten(t, f, 3)
	if got := f.all(); len(got) != 3 || got[0].NotificationID != "n1" || got[2].NotificationID != "n3" {
		t.Errorf("sink got %+v", got)
	}
}

func TestFlushAndCloseWriteEverything(t *testing.T) {
	f := newFake()
	tr := NewTracker(f, Options{BatchSize: 7, FlushInterval: time.Hour})
	for i := 0; i < 50; i++ {
		tr.Track(ev(i))
	}
	if err := tr.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(f.all()); n != 50 {
		t.Fatalf("after Flush the sink has %d events, want 50", n)
	}
	tr.Track(ev(50), ev(51))
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(f.all()); n != 52 {
		t.Fatalf("after Close the sink has %d events, want 52", n)
	}
	seen := map[string]bool{}
	for _, e := range f.all() {
		if seen[e.NotificationID] {
			t.Fatalf("event %s written twice", e.NotificationID)
		}
		seen[e.NotificationID] = true
	}
	tr.Track(ev(99))
	st := tr.Stats()
	if st.Dropped != 1 || st.Written != 52 || st.Tracked != 52 || st.Buffered != 0 {
		t.Errorf("stats after Close and a late Track: %+v", st)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := tr.Flush(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close = %v, want ErrClosed", err)
	}
}

func TestFullBufferDropsWithoutBlocking(t *testing.T) {
	f := newFake()
	f.gate = make(chan struct{})
	tr := NewTracker(f, Options{BufferSize: 256, BatchSize: 64, FlushInterval: time.Millisecond})
	// The flusher takes the first events and blocks in the sink; the rest
	// fill the buffer, then Track must drop instead of waiting.
	const n = 5000
	for i := 0; i < n; i++ {
		tr.Track(ev(i))
	}
	st := tr.Stats()
	if st.Dropped == 0 || st.Tracked+st.Dropped != n {
		t.Fatalf("stats with a stuck sink: %+v; want drops and tracked+dropped = %d", st, n)
	}
	if st.Tracked > 2*256 {
		t.Errorf("tracked %d events with BufferSize 256: the buffer is not bounded", st.Tracked)
	}
	close(f.gate)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	st = tr.Stats()
	if st.Written != st.Tracked || len(f.all()) != int(st.Tracked) {
		t.Errorf("after the sink recovered: %+v, sink holds %d", st, len(f.all()))
	}
}

func TestRetriesThenSucceeds(t *testing.T) {
	f := newFake()
	f.failN = 2
	tr := NewTracker(f, Options{FlushInterval: time.Hour, RetryBackoff: time.Millisecond})
	tr.Track(ev(1), ev(2))
	if err := tr.Flush(context.Background()); err != nil {
		t.Fatalf("Flush after two transient failures: %v", err)
	}
	st := tr.Stats()
	if st.Written != 2 || st.Retries != 2 || st.Lost != 0 || f.callCount() != 3 {
		t.Errorf("stats %+v after %d calls; want 2 written, 2 retries", st, f.callCount())
	}
	tr.Close()
}

func TestLostAfterRetries(t *testing.T) {
	f := newFake()
	f.failAll = true
	var logged atomic.Int32
	tr := NewTracker(f, Options{FlushInterval: time.Hour, BatchSize: 30, Retries: 2, RetryBackoff: time.Millisecond,
		Logf: func(string, ...any) { logged.Add(1) }})
	defer tr.Close()
	for i := 0; i < 30; i++ {
		tr.Track(ev(i))
	}
	// Background flushes may run too; in the end every event is lost and
	// counted, and Flush reports an error for what it wrote itself.
	err := tr.Flush(context.Background())
	if st := tr.Stats(); st.Lost != 30 || st.Written != 0 || st.Buffered != 0 {
		t.Errorf("stats %+v; want 30 lost", st)
	}
	if err != nil && !strings.Contains(err.Error(), "sink down") {
		t.Errorf("Flush with a dead sink = %v", err)
	}
	if logged.Load() == 0 {
		t.Error("no lost-batch log line")
	}
}

// TestDegradedRound drives flush directly (no background goroutine) to check
// that after a lost batch the rest of the round gets one attempt each.
func TestDegradedRound(t *testing.T) {
	f := newFake()
	f.failAll = true
	tr := idleTracker(f, Options{BatchSize: 10, Retries: 2, RetryBackoff: time.Millisecond, BufferSize: 1024})
	for i := 0; i < 30; i++ {
		tr.Track(ev(i))
	}
	err := tr.flush(time.Time{})
	if err == nil || !strings.Contains(err.Error(), "sink down") {
		t.Fatalf("flush with a dead sink = %v", err)
	}
	// First batch: 1 + 2 retries; the next two batches one attempt each.
	if c := f.callCount(); c != 5 {
		t.Errorf("%d sink calls, want 5", c)
	}
	if st := tr.Stats(); st.Lost != 30 || st.Retries != 2 {
		t.Errorf("stats %+v; want 30 lost after 2 retries", st)
	}
	// The next round starts with full retries again, and a recovered sink is used.
	f.mu.Lock()
	f.failAll, f.failN, f.calls = false, 1, 0
	f.mu.Unlock()
	tr.Track(ev(100))
	if err := tr.flush(time.Time{}); err != nil {
		t.Fatalf("flush after recovery: %v", err)
	}
	if st := tr.Stats(); st.Written != 1 || st.Retries != 3 {
		t.Errorf("stats %+v; want 1 written after one more retry", st)
	}
}

func TestCloseTimeoutBoundsAStuckSink(t *testing.T) {
	f := newFake()
	f.gate = make(chan struct{}) // never opened: every write waits for its context
	tr := NewTracker(f, Options{FlushInterval: time.Hour, CloseTimeout: 100 * time.Millisecond, WriteTimeout: time.Hour})
	tr.Track(ev(1))
	if err := tr.Close(); err == nil {
		t.Fatal("Close with a stuck sink returned nil")
	}
	if st := tr.Stats(); st.Lost != 1 {
		t.Errorf("stats %+v; want the event counted lost", st)
	}
}

func TestZeroTimeIsStamped(t *testing.T) {
	f := newFake()
	tr := NewTracker(f, Options{FlushInterval: time.Hour})
	before := time.Now()
	tr.Track(contracts.Event{AppID: "a", NotificationID: "n", Type: contracts.EventAccepted})
	tr.Close()
	got := f.all()
	if len(got) != 1 || got[0].At.Before(before) || got[0].At.After(time.Now()) {
		t.Errorf("zero-time event written as %+v", got)
	}
}

func TestConcurrentTrack(t *testing.T) {
	f := newFake()
	tr := NewTracker(f, Options{BufferSize: 1 << 20, BatchSize: 100, FlushInterval: 5 * time.Millisecond})
	const g, per = 8, 2000
	var wg sync.WaitGroup
	for w := 0; w < g; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				e := ev(w*per + i)
				if i%3 == 0 {
					tr.Track(e, e) // a multi-event call
					continue
				}
				tr.Track(e)
			}
		}(w)
	}
	wg.Wait()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	want := g * (per + (per+2)/3)
	if st := tr.Stats(); st.Written != uint64(want) || st.Dropped != 0 || len(f.all()) != want {
		t.Errorf("stats %+v, sink %d; want %d written", st, len(f.all()), want)
	}
}

// idleTracker builds a tracker without its flusher goroutine, so tests can
// drive flush themselves and see the buffer exactly as Track left it.
func idleTracker(sink Sink, o Options) *Tracker {
	o.defaults()
	return &Tracker{sink: sink, o: o, shards: make([]shard, 1), shardCap: o.BufferSize, kickAt: 1 << 30, kick: make(chan struct{}, 1)}
}

func TestPrometheusCollector(t *testing.T) {
	f := newFake()
	tr := idleTracker(f, Options{BufferSize: 64})
	for i := 0; i < 100; i++ {
		tr.Track(ev(i))
	}
	gather := func() map[string]float64 {
		reg := prometheus.NewRegistry()
		reg.MustRegister(tr)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		vals := map[string]float64{}
		for _, mf := range mfs {
			m := mf.GetMetric()[0]
			if m.GetCounter() != nil {
				vals[mf.GetName()] = m.GetCounter().GetValue()
			} else {
				vals[mf.GetName()] = m.GetGauge().GetValue()
			}
		}
		return vals
	}
	vals := gather()
	if vals["herald_analytics_events_dropped_total"] != 36 || vals["herald_analytics_events_tracked_total"] != 64 ||
		vals["herald_analytics_events_buffered"] != 64 {
		t.Errorf("metrics %v; want 64 tracked and buffered, 36 dropped", vals)
	}
	if err := tr.flush(time.Time{}); err != nil {
		t.Fatal(err)
	}
	vals = gather()
	if vals["herald_analytics_events_written_total"] != 64 || vals["herald_analytics_events_buffered"] != 0 || vals["herald_analytics_batches_total"] != 1 {
		t.Errorf("metrics after a flush %v; want 64 written, none buffered, 1 batch", vals)
	}
}

// discard is a sink that only counts, to measure Track itself.
type discard struct{ n atomic.Int64 }

func (d *discard) WriteEvents(_ context.Context, evs []contracts.Event) error {
	d.n.Add(int64(len(evs)))
	return nil
}
func (d *discard) Summary(context.Context, string, time.Time, time.Time) (Summary, error) {
	return Summary{}, nil
}
func (d *discard) Series(context.Context, string, time.Time, time.Time, Bucket, string) ([]Point, error) {
	return nil, nil
}
func (d *discard) Events(context.Context, string, string) ([]contracts.Event, error) {
	return nil, nil
}

func benchTrack(b *testing.B, per int) {
	d := &discard{}
	tr := NewTracker(d, Options{})
	e := contracts.Event{AppID: "app_01", NotificationID: "ntf_01HZX", DeliveryID: "dlv_01HZX", UserID: "u-42",
		Channel: "email", Category: "billing", Priority: "high", Type: contracts.EventSent, At: time.Now(), LatencyMS: 12}
	batch := make([]contracts.Event, per)
	for i := range batch {
		batch[i] = e
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tr.Track(batch...)
		}
	})
	b.StopTimer()
	tr.Close()
	st := tr.Stats()
	// events/s counts every event offered to Track; accepted/s those that
	// found room (the rest were dropped because the flusher, sharing the
	// cores with the producers, fell behind).
	b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(st.Tracked)/b.Elapsed().Seconds(), "accepted/s")
	b.ReportMetric(float64(st.Dropped)/float64(b.N*per)*100, "%dropped")
}

// BenchmarkTrackParallel measures Track from all cores, one event per call.
func BenchmarkTrackParallel(b *testing.B) { benchTrack(b, 1) }

// BenchmarkTrackParallelBatch10 measures Track with ten events per call.
func BenchmarkTrackParallelBatch10(b *testing.B) { benchTrack(b, 10) }

// TestSortPendingGroupsNotificationsInTrackedOrder checks the flusher's sort
// against a stable sort of the same events: grouped by app and notification,
// each notification's events in the order they were tracked.
func TestSortPendingGroupsNotificationsInTrackedOrder(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 17, 1000, 20000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(n), 7))
			events := make([]contracts.Event, n)
			for i := range events {
				events[i] = contracts.Event{
					AppID:          fmt.Sprintf("app_%d", r.IntN(3)),
					NotificationID: fmt.Sprintf("ntf_%03d", r.IntN(max(1, n/10))),
					DeliveryID:     fmt.Sprintf("dlv_%d", i), // the tracked order
				}
			}
			want := slices.Clone(events)
			slices.SortStableFunc(want, func(a, b contracts.Event) int {
				if c := strings.Compare(a.AppID, b.AppID); c != 0 {
					return c
				}
				return strings.Compare(a.NotificationID, b.NotificationID)
			})
			tr := &Tracker{pending: events}
			tr.sortPending()
			if !slices.Equal(tr.pending, want) {
				t.Fatalf("sortPending differs from a stable sort")
			}
			for i, o := range tr.order[:min(n, len(tr.order))] {
				if int(o) != i {
					t.Fatalf("order[%d] = %d after the permutation, want the identity", i, o)
				}
			}
		})
	}
}

func BenchmarkSortPending(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	src := make([]contracts.Event, 50000)
	for i := range src {
		src[i] = contracts.Event{AppID: "app_bench", NotificationID: fmt.Sprintf("ntf_%05d", r.IntN(5000)), Type: "sent"}
	}
	events := make([]contracts.Event, len(src))
	tr := &Tracker{}
	b.ReportAllocs()
	for b.Loop() {
		copy(events, src)
		tr.pending = events
		tr.sortPending()
	}
}

// Package analyticstest is the conformance suite every analytics.Sink
// passes. Sinks are checked against a reference model computed from the raw
// events the suite writes, so a sink that loses, double-counts or misfiles an
// event, leaks another app's data or mis-rounds a range fails.
//
// Every subtest uses fresh app ids, so newSink may return sinks that share
// storage (one Cassandra keyspace for the whole run, say).
package analyticstest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"herald.dev/analytics"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/ids"
)

// Base is the start of the synthetic event history (a UTC midnight).
var Base = time.Date(2025, 3, 10, 0, 0, 0, 0, time.UTC)

// Run runs the suite; newSink returns a ready sink for one subtest.
func Run(t *testing.T, newSink func(t *testing.T) analytics.Sink) {
	t.Run("Trace", func(t *testing.T) { testTrace(t, newSink(t)) })
	t.Run("TenantIsolation", func(t *testing.T) { testIsolation(t, newSink(t)) })
	t.Run("SummaryMatchesEvents", func(t *testing.T) { testSummary(t, newSink(t)) })
	t.Run("SeriesMatchesEvents", func(t *testing.T) { testSeries(t, newSink(t)) })
	t.Run("BatchesAccumulate", func(t *testing.T) { testAccumulate(t, newSink(t)) })
	t.Run("ConcurrentWriters", func(t *testing.T) { testConcurrent(t, newSink(t)) })
	t.Run("CleansInput", func(t *testing.T) { testClean(t, newSink(t)) })
	t.Run("InvalidQueries", func(t *testing.T) { testInvalid(t, newSink(t)) })
	t.Run("EmptyApp", func(t *testing.T) { testEmpty(t, newSink(t)) })
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func write(t *testing.T, s analytics.Sink, evs []contracts.Event) {
	t.Helper()
	if err := s.WriteEvents(ctx(t), evs); err != nil {
		t.Fatalf("WriteEvents(%d events): %v", len(evs), err)
	}
}

// ms drops what a sink is allowed to lose: sub-millisecond precision and the location.
func ms(tm time.Time) time.Time { return tm.UTC().Truncate(time.Millisecond) }

func normalize(e contracts.Event) contracts.Event {
	e.At = ms(e.At)
	return e
}

func testTrace(t *testing.T, s analytics.Sink) {
	app, n1, n2 := ids.New("app"), ids.New("ntf"), ids.New("ntf")
	at := Base.Add(90*time.Minute + 123456789) // sub-millisecond part is dropped
	d1, d2 := ids.New("dlv"), ids.New("dlv")
	trace := []contracts.Event{
		{AppID: app, NotificationID: n1, Type: contracts.EventAccepted, Category: "billing", Priority: domain.PriorityHigh, At: at},
		{AppID: app, NotificationID: n1, Type: contracts.EventQueued, Category: "billing", Priority: domain.PriorityHigh, At: at.Add(2 * time.Millisecond), LatencyMS: 2},
		{AppID: app, NotificationID: n1, DeliveryID: d1, UserID: "u-1", Channel: domain.ChannelEmail, Category: "billing", Priority: domain.PriorityHigh, Type: contracts.EventRetrying, Error: "smtp 451: try later", At: at.Add(40 * time.Millisecond), LatencyMS: 40},
		{AppID: app, NotificationID: n1, DeliveryID: d2, UserID: "u-2", Channel: domain.ChannelSMS, Category: "billing", Priority: domain.PriorityHigh, Type: contracts.EventSent, At: at.Add(40 * time.Millisecond), LatencyMS: 40},
		{AppID: app, NotificationID: n1, DeliveryID: d1, UserID: "u-1", Channel: domain.ChannelEmail, Category: "billing", Priority: domain.PriorityHigh, Type: contracts.EventSent, At: at.Add(1500 * time.Millisecond), LatencyMS: 1500},
		{AppID: app, NotificationID: n1, DeliveryID: d1, UserID: "u-1", Channel: domain.ChannelEmail, Category: "billing", Priority: domain.PriorityHigh, Type: contracts.EventRead, At: at.Add(2 * time.Hour), LatencyMS: 7200000},
	}
	other := contracts.Event{AppID: app, NotificationID: n2, Type: contracts.EventAccepted, At: at}
	// Written out of order, over two batches, mixed with another notification.
	write(t, s, []contracts.Event{trace[4], other, trace[0], trace[5]})
	write(t, s, []contracts.Event{trace[2], trace[1], trace[3]})

	got, err := s.Events(ctx(t), app, n1)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	if len(got) != len(trace) {
		t.Fatalf("Events returned %d events, want %d: %+v", len(got), len(trace), got)
	}
	// Events 2 and 3 share a millisecond: compare as a set, order by time.
	want := map[string]contracts.Event{}
	for _, e := range trace {
		want[e.Type+"/"+e.DeliveryID] = normalize(e)
	}
	for i, e := range got {
		if i > 0 && e.At.Before(got[i-1].At) {
			t.Errorf("trace not in time order at %d: %v before %v", i, e.At, got[i-1].At)
		}
		w, ok := want[e.Type+"/"+e.DeliveryID]
		if !ok {
			t.Errorf("unexpected event %+v", e)
			continue
		}
		delete(want, e.Type+"/"+e.DeliveryID)
		if e.At.Location() != time.UTC {
			t.Errorf("event time %v is not UTC", e.At)
		}
		if normalize(e) != w {
			t.Errorf("event round trip:\n got %+v\nwant %+v", normalize(e), w)
		}
	}
	if got[0].Type != contracts.EventAccepted || got[len(got)-1].Type != contracts.EventRead {
		t.Errorf("trace order: first %s, last %s", got[0].Type, got[len(got)-1].Type)
	}

	if got, err := s.Events(ctx(t), app, n2); err != nil || len(got) != 1 || normalize(got[0]) != normalize(other) {
		t.Errorf("Events(n2) = %+v, %v; want the one event", got, err)
	}
	if got, err := s.Events(ctx(t), app, ids.New("ntf")); err != nil || len(got) != 0 {
		t.Errorf("Events(unknown) = %+v, %v; want none", got, err)
	}
}

func testIsolation(t *testing.T, s analytics.Sink) {
	a, b := ids.New("app"), ids.New("app")
	n := ids.New("ntf") // the same notification id under two apps
	evA := contracts.Event{AppID: a, NotificationID: n, DeliveryID: "d", Channel: domain.ChannelEmail, Type: contracts.EventSent, At: Base.Add(time.Hour), LatencyMS: 10}
	evB := contracts.Event{AppID: b, NotificationID: n, DeliveryID: "d", Channel: domain.ChannelSMS, Type: contracts.EventFailed, Error: "boom", At: Base.Add(time.Hour)}
	write(t, s, []contracts.Event{evA, evB, evB})

	ga, err := s.Events(ctx(t), a, n)
	if err != nil || len(ga) != 1 || ga[0].AppID != a || ga[0].Type != contracts.EventSent {
		t.Fatalf("Events(a) = %+v, %v; want only a's sent event", ga, err)
	}
	sa, err := s.Summary(ctx(t), a, Base, Base.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if sa.Counts[contracts.EventSent] != 1 || sa.Counts[contracts.EventFailed] != 0 || len(sa.Channels) != 1 {
		t.Errorf("Summary(a) leaks b's events: %+v", sa)
	}
	sb, err := s.Summary(ctx(t), b, Base, Base.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if sb.Counts[contracts.EventFailed] != 2 || sb.Counts[contracts.EventSent] != 0 || sb.SuccessRate == nil || *sb.SuccessRate != 0 {
		t.Errorf("Summary(b) = %+v; want 2 failed, 0 sent, success rate 0", sb)
	}
	pa, err := s.Series(ctx(t), a, Base, Base.Add(2*time.Hour), analytics.Hour, contracts.EventFailed)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pa {
		if p.Count != 0 {
			t.Errorf("Series(a, failed) leaks b's events: %+v", pa)
		}
	}
}

// history is a deterministic synthetic event log over three days.
func history(app string, seed uint64, n int) []contracts.Event {
	r := rand.New(rand.NewPCG(seed, 7))
	chans := []domain.Channel{domain.ChannelEmail, domain.ChannelSMS, domain.ChannelInApp, domain.ChannelWebhook}
	cats := []string{"", "billing", "security", "营销"}
	var out []contracts.Event
	for len(out) < n {
		nid := ids.New("ntf")
		at := Base.Add(time.Duration(r.Int64N(int64(72 * time.Hour))))
		cat := cats[r.IntN(len(cats))]
		prio := domain.Priorities[r.IntN(3)]
		out = append(out, contracts.Event{AppID: app, NotificationID: nid, Category: cat, Priority: prio, Type: contracts.EventAccepted, At: at})
		if r.IntN(5) == 0 {
			out = append(out, contracts.Event{AppID: app, NotificationID: nid, Category: cat, Priority: prio, Type: contracts.EventScheduled, At: at})
		}
		for d := 0; d < 1+r.IntN(3); d++ {
			ch := chans[r.IntN(len(chans))]
			did := ids.New("dlv")
			lat := int64(1 + r.IntN(5000))
			ev := func(typ string, lat int64, errText string) contracts.Event {
				return contracts.Event{AppID: app, NotificationID: nid, DeliveryID: did, UserID: fmt.Sprintf("u%d", r.IntN(50)),
					Channel: ch, Category: cat, Priority: prio, Type: typ, Error: errText, At: at.Add(time.Duration(lat) * time.Millisecond), LatencyMS: lat}
			}
			out = append(out, ev(contracts.EventQueued, lat/10, ""))
			switch k := r.IntN(10); {
			case k < 6:
				out = append(out, ev(contracts.EventSent, lat, ""))
				if ch == domain.ChannelInApp {
					out = append(out, ev(contracts.EventDelivered, lat+3, ""))
					if r.IntN(2) == 0 {
						out = append(out, ev(contracts.EventRead, lat+int64(r.IntN(3_600_000)), ""))
					}
				}
			case k < 8:
				out = append(out, ev(contracts.EventRetrying, lat, "timeout"), ev(contracts.EventFailed, lat*2, "permanent: rejected"))
			case k < 9:
				out = append(out, ev(contracts.EventSkipped, 0, "opted out"))
			default:
				// a delivered confirmation without a sent event (in-app style)
				out = append(out, ev(contracts.EventDelivered, lat, ""))
			}
		}
		if r.IntN(7) == 0 {
			out = append(out, contracts.Event{AppID: app, NotificationID: nid, Category: cat, Type: contracts.EventExpired, At: at.Add(time.Hour)})
		}
	}
	return out
}

func writeInBatches(t *testing.T, s analytics.Sink, evs []contracts.Event) {
	t.Helper()
	for off, size := 0, 1; off < len(evs); off, size = off+size, size*3 {
		write(t, s, evs[off:min(off+size, len(evs))])
	}
}

// model computes the expected reports from raw events.
type model []contracts.Event

func (m model) summary(from, to time.Time) analytics.Summary {
	start, end := from.UTC().Truncate(time.Hour), to.UTC().Truncate(time.Hour)
	if end.Before(to) {
		end = end.Add(time.Hour)
	}
	s := analytics.Summary{From: start, To: end, Counts: map[string]int64{}, Channels: map[string]analytics.ChannelSummary{}}
	for _, typ := range analytics.EventTypes {
		s.Counts[typ] = 0
	}
	type acc struct {
		counts               map[string]int64
		latSum, latN, latMax int64
	}
	chans := map[string]*acc{}
	var latSum, latN int64
	for _, e := range m {
		h := e.At.UTC().Truncate(time.Hour)
		if h.Before(start) || !h.Before(end) {
			continue
		}
		s.Counts[e.Type]++
		if e.Type == contracts.EventSent && e.LatencyMS > 0 {
			latSum += e.LatencyMS
			latN++
			s.MaxLatencyMS = max(s.MaxLatencyMS, e.LatencyMS)
		}
		if e.Channel == "" {
			continue
		}
		a := chans[string(e.Channel)]
		if a == nil {
			a = &acc{counts: map[string]int64{}}
			chans[string(e.Channel)] = a
		}
		a.counts[e.Type]++
		if e.Type == contracts.EventSent && e.LatencyMS > 0 {
			a.latSum += e.LatencyMS
			a.latN++
			a.latMax = max(a.latMax, e.LatencyMS)
		}
	}
	var good, bad int64
	for name, a := range chans {
		g := max(a.counts[contracts.EventSent], a.counts[contracts.EventDelivered])
		b := a.counts[contracts.EventFailed]
		good += g
		bad += b
		s.Channels[name] = analytics.ChannelSummary{Counts: a.counts, SuccessRate: ratio(g, b), AvgLatencyMS: mean(a.latSum, a.latN), MaxLatencyMS: a.latMax}
	}
	s.SuccessRate = ratio(good, bad)
	s.AvgLatencyMS = mean(latSum, latN)
	return s
}

func ratio(g, b int64) *float64 {
	if g+b == 0 {
		return nil
	}
	r := float64(g) / float64(g+b)
	return &r
}

func mean(sum, n int64) float64 {
	if n == 0 {
		return 0
	}
	return float64(sum) / float64(n)
}

func (m model) series(from, to time.Time, d time.Duration, typ string) []analytics.Point {
	start := from.UTC().Truncate(d)
	end := to.UTC().Truncate(d)
	if end.Before(to) {
		end = end.Add(d)
	}
	var pts []analytics.Point
	sums, ns := map[int]int64{}, map[int]int64{}
	for tm := start; tm.Before(end); tm = tm.Add(d) {
		pts = append(pts, analytics.Point{Time: tm})
	}
	for _, e := range m {
		if typ != "" && e.Type != typ {
			continue
		}
		b := e.At.UTC().Truncate(d)
		if b.Before(start) || !b.Before(end) {
			continue
		}
		i := int(b.Sub(start) / d)
		pts[i].Count++
		if e.LatencyMS > 0 {
			sums[i] += e.LatencyMS
			ns[i]++
			pts[i].MaxLatencyMS = max(pts[i].MaxLatencyMS, e.LatencyMS)
		}
	}
	for i := range pts {
		pts[i].AvgLatencyMS = mean(sums[i], ns[i])
	}
	return pts
}

func near(a, b float64) bool { return math.Abs(a-b) <= 0.006 }

func rateStr(r *float64) string {
	if r == nil {
		return "nil"
	}
	return fmt.Sprintf("%.6f", *r)
}

func compareSummary(t *testing.T, label string, got, want analytics.Summary) {
	t.Helper()
	if !got.From.Equal(want.From) || !got.To.Equal(want.To) {
		t.Errorf("%s: range [%v, %v), want [%v, %v)", label, got.From, got.To, want.From, want.To)
	}
	for _, typ := range analytics.EventTypes {
		if c, ok := got.Counts[typ]; !ok || c != want.Counts[typ] {
			t.Errorf("%s: counts[%s] = %d (present %v), want %d", label, typ, c, ok, want.Counts[typ])
		}
	}
	if rateStr(got.SuccessRate) != rateStr(want.SuccessRate) {
		t.Errorf("%s: success rate %s, want %s", label, rateStr(got.SuccessRate), rateStr(want.SuccessRate))
	}
	if !near(got.AvgLatencyMS, want.AvgLatencyMS) || got.MaxLatencyMS != want.MaxLatencyMS {
		t.Errorf("%s: latency avg %v max %d, want avg %v max %d", label, got.AvgLatencyMS, got.MaxLatencyMS, want.AvgLatencyMS, want.MaxLatencyMS)
	}
	if len(got.Channels) != len(want.Channels) {
		t.Errorf("%s: channels %v, want %v", label, keys(got.Channels), keys(want.Channels))
	}
	for name, w := range want.Channels {
		g := got.Channels[name]
		for typ, c := range w.Counts {
			if g.Counts[typ] != c {
				t.Errorf("%s: channel %s counts[%s] = %d, want %d", label, name, typ, g.Counts[typ], c)
			}
		}
		for typ, c := range g.Counts {
			if c != 0 && w.Counts[typ] == 0 {
				t.Errorf("%s: channel %s counts[%s] = %d, want none", label, name, typ, c)
			}
		}
		if rateStr(g.SuccessRate) != rateStr(w.SuccessRate) {
			t.Errorf("%s: channel %s success rate %s, want %s", label, name, rateStr(g.SuccessRate), rateStr(w.SuccessRate))
		}
		if !near(g.AvgLatencyMS, w.AvgLatencyMS) || g.MaxLatencyMS != w.MaxLatencyMS {
			t.Errorf("%s: channel %s latency avg %v max %d, want avg %v max %d", label, name, g.AvgLatencyMS, g.MaxLatencyMS, w.AvgLatencyMS, w.MaxLatencyMS)
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func testSummary(t *testing.T, s analytics.Sink) {
	app := ids.New("app")
	evs := history(app, 1, 700)
	writeInBatches(t, s, evs)
	m := model(evs)
	ranges := []struct {
		name     string
		from, to time.Duration
	}{
		{"whole history", 0, 80 * time.Hour},
		{"partial edges", 5*time.Hour + 30*time.Minute, 50*time.Hour + 10*time.Minute},
		{"inside one hour", 26*time.Hour + 15*time.Minute, 26*time.Hour + 45*time.Minute},
		{"whole days only", 24 * time.Hour, 72 * time.Hour},
		{"day edges", 20 * time.Hour, 70 * time.Hour},
		{"before the history", -48 * time.Hour, -time.Hour},
		{"one day", 24 * time.Hour, 48 * time.Hour},
	}
	for _, r := range ranges {
		from, to := Base.Add(r.from), Base.Add(r.to)
		got, err := s.Summary(ctx(t), app, from, to)
		if err != nil {
			t.Fatalf("%s: Summary: %v", r.name, err)
		}
		compareSummary(t, r.name, got, m.summary(from, to))
	}
	// A range given in another zone means the same instants.
	loc := time.FixedZone("UTC+8", 8*3600)
	got, err := s.Summary(ctx(t), app, Base.Add(3*time.Hour).In(loc), Base.Add(40*time.Hour).In(loc))
	if err != nil {
		t.Fatal(err)
	}
	compareSummary(t, "zoned range", got, m.summary(Base.Add(3*time.Hour), Base.Add(40*time.Hour)))
	if whole := m.summary(Base, Base.Add(80*time.Hour)); whole.Counts[contracts.EventSent] == 0 || whole.SuccessRate == nil {
		t.Fatalf("synthetic history has no outcomes: %+v", whole)
	}
}

func comparePoints(t *testing.T, label string, got, want []analytics.Point) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d points, want %d", label, len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if !g.Time.Equal(w.Time) || g.Count != w.Count || g.MaxLatencyMS != w.MaxLatencyMS || !near(g.AvgLatencyMS, w.AvgLatencyMS) {
			t.Errorf("%s: point %d = %+v, want %+v", label, i, g, w)
		}
	}
}

func testSeries(t *testing.T, s analytics.Sink) {
	app := ids.New("app")
	evs := history(app, 2, 500)
	writeInBatches(t, s, evs)
	m := model(evs)
	cases := []struct {
		name     string
		from, to time.Duration
		bucket   analytics.Bucket
		typ      string
	}{
		{"hourly sent", 3 * time.Hour, 30 * time.Hour, analytics.Hour, contracts.EventSent},
		{"hourly all types, partial edges", 47*time.Hour + 59*time.Minute, 60*time.Hour + time.Minute, analytics.Hour, ""},
		{"daily failed", 0, 72 * time.Hour, analytics.Day, contracts.EventFailed},
		{"daily accepted, partial", 10 * time.Hour, 49 * time.Hour, analytics.Day, contracts.EventAccepted},
		{"daily read, past the history", -24 * time.Hour, 96 * time.Hour, analytics.Day, contracts.EventRead},
	}
	for _, c := range cases {
		from, to := Base.Add(c.from), Base.Add(c.to)
		got, err := s.Series(ctx(t), app, from, to, c.bucket, c.typ)
		if err != nil {
			t.Fatalf("%s: Series: %v", c.name, err)
		}
		comparePoints(t, c.name, got, m.series(from, to, c.bucket.Duration(), c.typ))
	}
	// Sum of the hourly points of a day equals its daily point.
	hourly, err := s.Series(ctx(t), app, Base.Add(24*time.Hour), Base.Add(48*time.Hour), analytics.Hour, contracts.EventQueued)
	if err != nil {
		t.Fatal(err)
	}
	daily, err := s.Series(ctx(t), app, Base.Add(24*time.Hour), Base.Add(48*time.Hour), analytics.Day, contracts.EventQueued)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, p := range hourly {
		sum += p.Count
	}
	if len(daily) != 1 || daily[0].Count != sum || sum == 0 {
		t.Errorf("daily point %+v, want count %d (sum of %d hourly points)", daily, sum, len(hourly))
	}
}

func testAccumulate(t *testing.T, s analytics.Sink) {
	app := ids.New("app")
	at := Base.Add(5*time.Hour + 10*time.Minute)
	mk := func(lat int64) contracts.Event {
		return contracts.Event{AppID: app, NotificationID: ids.New("ntf"), DeliveryID: ids.New("dlv"), Channel: domain.ChannelWebhook,
			Category: "ops", Type: contracts.EventSent, At: at, LatencyMS: lat}
	}
	// Same rollup rows across batches: counters add up, max is the max of all batches.
	write(t, s, []contracts.Event{mk(100), mk(500)})
	write(t, s, []contracts.Event{mk(300)})
	write(t, s, []contracts.Event{mk(200), mk(0)}) // 0 = latency unknown
	sum, err := s.Summary(ctx(t), app, Base, Base.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Counts[contracts.EventSent] != 5 || sum.MaxLatencyMS != 500 || !near(sum.AvgLatencyMS, 275) {
		t.Errorf("after three batches: sent %d, max %d, avg %v; want 5, 500, 275", sum.Counts[contracts.EventSent], sum.MaxLatencyMS, sum.AvgLatencyMS)
	}
	write(t, s, []contracts.Event{mk(900)})
	pts, err := s.Series(ctx(t), app, at, at.Add(time.Minute), analytics.Hour, contracts.EventSent)
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 1 || pts[0].Count != 6 || pts[0].MaxLatencyMS != 900 || !near(pts[0].AvgLatencyMS, 400) || !pts[0].Time.Equal(Base.Add(5*time.Hour)) {
		t.Errorf("series after a fourth batch = %+v; want one point at 05:00, count 6, max 900, avg 400", pts)
	}
}

func testConcurrent(t *testing.T, s analytics.Sink) {
	app := ids.New("app")
	const writers, batches, per = 6, 4, 40
	chans := []domain.Channel{domain.ChannelEmail, domain.ChannelSMS}
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				evs := make([]contracts.Event, per)
				for i := range evs {
					evs[i] = contracts.Event{AppID: app, NotificationID: ids.New("ntf"), DeliveryID: ids.New("dlv"), Channel: chans[i%2],
						Type: contracts.EventSent, At: Base.Add(time.Duration(i%3) * time.Hour), LatencyMS: int64(w*1000 + b*100 + i + 1)}
				}
				if err := s.WriteEvents(context.Background(), evs); err != nil {
					errs <- err
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent WriteEvents: %v", err)
	}
	sum, err := s.Summary(ctx(t), app, Base, Base.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	total := int64(writers * batches * per)
	if sum.Counts[contracts.EventSent] != total || sum.Channels["email"].Counts[contracts.EventSent] != total/2 {
		t.Errorf("concurrent writers: sent %d (email %d), want %d (%d)", sum.Counts[contracts.EventSent], sum.Channels["email"].Counts[contracts.EventSent], total, total/2)
	}
	if want := int64((writers-1)*1000 + (batches-1)*100 + per); sum.MaxLatencyMS != want {
		t.Errorf("concurrent writers: max latency %d, want %d", sum.MaxLatencyMS, want)
	}
}

func testClean(t *testing.T, s analytics.Sink) {
	app, n := ids.New("app"), ids.New("ntf")
	long := strings.Repeat("é", 3000) // 6000 bytes
	before := time.Now().Add(-time.Second)
	write(t, s, nil)
	write(t, s, []contracts.Event{
		{AppID: "", NotificationID: n, Type: contracts.EventSent, At: Base},                 // no app: ignored
		{AppID: app, NotificationID: n, Type: "", At: Base},                                 // no type: ignored
		{AppID: app, NotificationID: n, Type: contracts.EventFailed, Error: long, At: Base}, // truncated
		{AppID: app, NotificationID: n, Type: contracts.EventRetrying, Category: "bad\xffutf8", At: Base.Add(time.Second), LatencyMS: -5},
		{AppID: app, NotificationID: n, Type: contracts.EventDone}, // zero time: stamped now
	})
	got, err := s.Events(ctx(t), app, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("Events = %d events, want 3 (invalid ones ignored): %+v", len(got), got)
	}
	if e := got[0]; e.Type != contracts.EventFailed || len(e.Error) > analytics.MaxErrorLen || len(e.Error) < analytics.MaxErrorLen-1 || !strings.HasPrefix(long, e.Error) {
		t.Errorf("long error stored as %d bytes (prefix %v), want cut to %d on a character boundary", len(e.Error), strings.HasPrefix(long, e.Error), analytics.MaxErrorLen)
	}
	if e := got[1]; e.LatencyMS != 0 || e.Category != "bad\uFFFDutf8" {
		t.Errorf("retrying event stored as latency %d category %q", e.LatencyMS, e.Category)
	}
	if e := got[2]; e.Type != contracts.EventDone || e.At.Before(before.Truncate(time.Millisecond)) || e.At.After(time.Now().Add(time.Second)) {
		t.Errorf("zero-time event stored at %v, want about now", e.At)
	}
}

func testInvalid(t *testing.T, s analytics.Sink) {
	app := ids.New("app")
	c := ctx(t)
	checks := []struct {
		name  string
		param string
		err   error
	}{
		{"summary empty range", "from", func() error { _, err := s.Summary(c, app, Base, Base); return err }()},
		{"summary reversed", "from", func() error { _, err := s.Summary(c, app, Base.Add(time.Hour), Base); return err }()},
		{"summary too long", "from", func() error { _, err := s.Summary(c, app, Base, Base.Add(5000*24*time.Hour)); return err }()},
		{"summary no app", "app_id", func() error { _, err := s.Summary(c, "", Base, Base.Add(time.Hour)); return err }()},
		{"series bad bucket", "bucket", func() error {
			_, err := s.Series(c, app, Base, Base.Add(time.Hour), "week", "")
			return err
		}()},
		{"series bad type", "type", func() error {
			_, err := s.Series(c, app, Base, Base.Add(time.Hour), analytics.Hour, "bounced")
			return err
		}()},
		{"series too many points", "from", func() error {
			_, err := s.Series(c, app, Base, Base.Add(1000*time.Hour), analytics.Hour, "")
			return err
		}()},
		{"series reversed", "from", func() error {
			_, err := s.Series(c, app, Base.Add(time.Hour), Base, analytics.Day, "")
			return err
		}()},
	}
	for _, ch := range checks {
		var qe *analytics.QueryError
		if !errors.Is(ch.err, analytics.ErrInvalidQuery) || !errors.As(ch.err, &qe) || qe.Param != ch.param {
			t.Errorf("%s: err = %v, want a QueryError naming %q", ch.name, ch.err, ch.param)
		}
	}
}

func testEmpty(t *testing.T, s analytics.Sink) {
	app := ids.New("app")
	sum, err := s.Summary(ctx(t), app, Base, Base.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if sum.SuccessRate != nil || sum.AvgLatencyMS != 0 || len(sum.Channels) != 0 || len(sum.Counts) != len(analytics.EventTypes) {
		t.Errorf("empty summary = %+v", sum)
	}
	pts, err := s.Series(ctx(t), app, Base, Base.Add(48*time.Hour), analytics.Day, "")
	if err != nil || len(pts) != 2 || pts[0].Count != 0 || pts[1].Count != 0 || !pts[1].Time.Equal(Base.Add(24*time.Hour)) {
		t.Errorf("empty series = %+v, %v; want two zero days", pts, err)
	}
}

package outbound

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/messages"
	"herald.dev/platform/sqldb/sqldbtest"
)

func testJob(p domain.Priority, id string) *job {
	n := &messages.Notification{ID: "n", Priority: p}
	return &job{st: &msgState{n: n}, d: &messages.Delivery{ID: id}}
}

func popAll(p *pool, n int) string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, p.pop().d.ID)
	}
	return strings.Join(out, " ")
}

func TestPoolStrictPriority(t *testing.T) {
	p := newPool(domain.ChannelBench, nil, 1, 1000, time.Hour, 4)
	for i := 0; i < 500; i++ {
		if err := p.push(testJob(domain.PriorityLow, fmt.Sprintf("l%d", i)), true); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		_ = p.push(testJob(domain.PriorityMedium, fmt.Sprintf("m%d", i)), true)
	}
	for i := 0; i < 2; i++ {
		_ = p.push(testJob(domain.PriorityHigh, fmt.Sprintf("h%d", i)), true)
	}
	if got := popAll(p, 6); got != "h0 h1 m0 m1 l0 l1" {
		t.Fatalf("order %q", got)
	}
	// a full sub-queue refuses a non-blocking push of its priority only
	for p.depth(2) < 1000 {
		_ = p.push(testJob(domain.PriorityLow, "x"), false)
	}
	if err := p.push(testJob(domain.PriorityLow, "x"), false); err != errPoolFull {
		t.Fatalf("full low sub-queue: %v", err)
	}
	if err := p.push(testJob(domain.PriorityHigh, "h9"), false); err != nil {
		t.Fatalf("high blocked by a full low sub-queue: %v", err)
	}
	if got := p.pop().d.ID; got != "h9" {
		t.Fatalf("next = %s", got)
	}
	p.close()
	if err := p.push(testJob(domain.PriorityHigh, "late"), true); err != errStopping {
		t.Fatalf("push after close: %v", err)
	}
	if n := len(p.discard()); n != 1000 {
		t.Fatalf("discarded %d", n)
	}
	if p.pop() != nil {
		t.Fatal("closed empty pool returned a job")
	}
}

// TestPoolAgeing: overdue lower work gets every 4th pick while high keeps
// flowing; fresh lower work waits.
func TestPoolAgeing(t *testing.T) {
	p := newPool(domain.ChannelBench, nil, 1, 100, time.Nanosecond, 4)
	for i := 0; i < 4; i++ {
		_ = p.push(testJob(domain.PriorityLow, fmt.Sprintf("l%d", i)), true)
	}
	time.Sleep(time.Millisecond) // make the low jobs overdue (ageLimit is 1ns)
	for i := 0; i < 8; i++ {
		_ = p.push(testJob(domain.PriorityHigh, fmt.Sprintf("h%d", i)), true)
	}
	if got := popAll(p, 12); got != "h0 h1 h2 l0 h3 h4 h5 l1 h6 h7 l2 l3" {
		t.Fatalf("ageing order %q", got)
	}
	fresh := newPool(domain.ChannelBench, nil, 1, 100, time.Hour, 4)
	_ = fresh.push(testJob(domain.PriorityLow, "l0"), true)
	for i := 0; i < 8; i++ {
		_ = fresh.push(testJob(domain.PriorityHigh, fmt.Sprintf("h%d", i)), true)
	}
	if got := popAll(fresh, 9); got != "h0 h1 h2 h3 h4 h5 h6 h7 l0" {
		t.Fatalf("fresh order %q", got)
	}
}

func TestBlockedProducerOnlyBlocksItsPriority(t *testing.T) {
	p := newPool(domain.ChannelBench, nil, 1, 2, time.Hour, 4)
	_ = p.push(testJob(domain.PriorityLow, "l0"), true)
	_ = p.push(testJob(domain.PriorityLow, "l1"), true)
	blocked := make(chan error, 1)
	go func() { blocked <- p.push(testJob(domain.PriorityLow, "l2"), true) }()
	if err := p.push(testJob(domain.PriorityHigh, "h0"), true); err != nil {
		t.Fatal(err)
	}
	if got := p.pop().d.ID; got != "h0" {
		t.Fatalf("next = %s", got)
	}
	select {
	case err := <-blocked:
		t.Fatalf("low producer returned (%v) with its sub-queue still full", err)
	default:
	}
	if got := p.pop().d.ID; got != "l0" {
		t.Fatalf("next = %s", got)
	}
	if err := <-blocked; err != nil { // room freed: the producer goes on
		t.Fatal(err)
	}
	go func() { blocked <- p.push(testJob(domain.PriorityLow, "l3"), true) }()
	p.abortPushes() // before or while l3 waits for room: it gives up either way
	if err := <-blocked; err != errStopping {
		t.Fatalf("aborted producer: %v", err)
	}
}

// TestHighNotStuckBehindLow runs the whole handler: low group fan-outs fill
// the low sub-queue, block on it, take every low fan-out slot and make the
// receiver wait; a high notification must still be the very next send.
func TestHighNotStuckBehindLow(t *testing.T) {
	db := sqldbtest.SQLite(t)
	e := newEnv(t, db, domain.ChannelInApp)
	e.deps.Config.Workers = 1
	e.deps.Tuning.SubQueue = 32
	e.deps.Tuning.FanoutSlots = [3]int{2, 1, 1}
	for _, g := range []string{"ga", "gb", "gc", "gd"} {
		e.dir.gen[g] = 300
	}
	e.dir.add(&contracts.Profile{UserID: "vip"})
	s := e.senders[domain.ChannelInApp]
	s.gate = make(chan struct{})
	h := e.start()
	var lows []*messages.Notification
	for _, g := range []string{"ga", "gb", "gc", "gd"} {
		lows = append(lows, e.accept([]domain.Recipient{{GroupID: g}}, withPriority(domain.PriorityLow), withChannels(domain.ChannelInApp)))
	}
	pool := h.pools[domain.ChannelInApp]
	waitFor(t, "the low tier to saturate", func() bool {
		st := h.Stats()
		return pool.depth(2) == 32 && st.Fanouts[domain.PriorityLow] == 1 && st.Waiting[domain.PriorityLow] == 1 &&
			st.Channels[domain.ChannelInApp].InFlight == 1 && e.q.InFlight() == 3 // one more lease waits in the receiver
	})
	high := e.accept(users("vip"), withPriority(domain.PriorityHigh), withChannels(domain.ChannelInApp))
	waitFor(t, "the high delivery to reach the pool", func() bool { return pool.depth(0) == 1 })
	s.gate <- struct{}{} // the low send in flight completes
	s.gate <- struct{}{} // the next send
	calls, _ := s.snapshot()
	if len(calls) != 2 || calls[1].d.NotificationID != high.ID {
		t.Fatalf("second send is %+v, want the high notification", calls[len(calls)-1].d)
	}
	close(s.gate)
	e.waitStatus(high.ID, domain.MessageDone)
	for _, n := range lows {
		e.waitStatus(n.ID, domain.MessageDone)
	}
	if c := s.count.Load(); c != 4*300+1 {
		t.Fatalf("sends = %d", c)
	}
}

func TestChunkRowsKeepsAtomicEntriesTogether(t *testing.T) {
	row := func(id string) *messages.Delivery { return &messages.Delivery{ID: id} }
	take := []recEntry{
		{rows: []*messages.Delivery{row("d5"), row("d1"), row("d9")}}, // a page: rows may be split
		{rows: []*messages.Delivery{row("d3"), row("d8"), row("d2")}, atomic: true},
		{rows: []*messages.Delivery{row("d4")}},
		{rows: []*messages.Delivery{row("l7"), row("l1"), row("l5"), row("l3"), row("l2")}, low: true}, // bulk: larger chunks, last
	}
	chunks, _ := chunkRows(take, 2, 4)
	var got []string
	for _, c := range chunks {
		var ids []string
		for _, d := range c {
			ids = append(ids, d.ID)
		}
		got = append(got, strings.Join(ids, ","))
	}
	if s := strings.Join(got, " | "); s != "d1,d3,d8,d2 | d4,d5 | d9 | l1,l2,l3,l5 | l7" {
		t.Fatalf("chunks %q", s)
	}
}

// TestPreemptWaitsOnlyForEarlierUrgentWrites: between low-priority chunks
// the recorder lets the urgent writes already begun finish first, and does
// not wait for ones that begin meanwhile.
func TestPreemptWaitsOnlyForEarlierUrgentWrites(t *testing.T) {
	e := newEnv(t, sqldbtest.SQLite(t), domain.ChannelInApp)
	h, err := New(e.deps)
	if err != nil {
		t.Fatal(err)
	}
	run := func() chan time.Duration {
		done := make(chan time.Duration, 1)
		go func() { start := time.Now(); h.rec.preempt(); done <- time.Since(start) }()
		return done
	}
	// Nothing urgent: no wait.
	if d := <-run(); d > 20*time.Millisecond {
		t.Fatalf("preempt waited %v with nothing urgent", d)
	}
	// Two urgent writes begun: wait until both finish.
	h.urgentIn.Add(2)
	done := run()
	time.Sleep(5 * time.Millisecond)
	h.urgentOut.Add(1)
	select {
	case d := <-done:
		t.Fatalf("preempt returned after %v with an earlier urgent write unfinished", d)
	case <-time.After(5 * time.Millisecond):
	}
	h.urgentIn.Add(10) // later arrivals do not extend the wait
	h.urgentOut.Add(1)
	select {
	case <-done:
	case <-time.After(30 * time.Millisecond):
		t.Fatal("preempt kept waiting for urgent writes begun after it")
	}
	// The wait is bounded.
	h.urgentIn.Add(1)
	if d := <-run(); d < 40*time.Millisecond || d > 500*time.Millisecond {
		t.Fatalf("preempt with an urgent write that never finishes waited %v, want about 50 ms", d)
	}
}

// TestLowChunksShrinkWhileHighWorkArrives: low-priority rows are written in
// RecordLowTxRowsBusy chunks for a second after an urgent write or
// high-priority rows, and in RecordLowTxRows chunks otherwise.
func TestLowChunksShrinkWhileHighWorkArrives(t *testing.T) {
	e := newEnv(t, sqldbtest.SQLite(t), domain.ChannelInApp)
	h, err := New(e.deps)
	if err != nil {
		t.Fatal(err)
	}
	r := h.rec
	full, busy := h.tun.RecordLowTxRows, h.tun.RecordLowTxRowsBusy
	if busy >= full {
		t.Fatalf("defaults: busy chunk %d not below %d", busy, full)
	}
	t0 := time.Now()
	for _, tc := range []struct {
		name   string
		at     time.Duration
		urgent bool // an urgent write begins just before
		high   bool // the write carries high-priority rows
		want   int
	}{
		{"quiet", 0, false, false, full},
		{"urgent write", time.Millisecond, true, false, busy},
		{"within a second", 900 * time.Millisecond, false, false, busy},
		{"a second after", 1100 * time.Millisecond, false, false, full},
		{"high rows", 2 * time.Second, false, true, busy},
		{"quiet again", 3100 * time.Millisecond, false, false, full},
	} {
		if tc.urgent {
			h.urgentIn.Add(1)
		}
		if got := r.lowRows(t0.Add(tc.at), tc.high); got != tc.want {
			t.Fatalf("%s: low chunk %d, want %d", tc.name, got, tc.want)
		}
	}
}

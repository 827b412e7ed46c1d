package server

import (
	"strconv"
	"testing"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

// TestBenchRecorderPerPriority checks the figures the priority scenario
// reads: hand-offs, end-to-end latency and the last hand-off, each per
// priority, so a high stream that runs on after a fan-out does not stretch
// the fan-out's duration.
func TestBenchRecorderPerPriority(t *testing.T) {
	r := NewBenchRecorder()
	base := time.Unix(1_800_000_000, 0)
	t0 := strconv.FormatInt(base.UnixNano(), 10)
	for _, h := range []struct {
		p     domain.Priority
		after time.Duration
	}{
		{domain.PriorityLow, 10 * time.Millisecond},
		{domain.PriorityLow, 20 * time.Millisecond},
		{domain.PriorityHigh, 5 * time.Millisecond},
		{domain.PriorityHigh, 90 * time.Millisecond}, // after the fan-out's end
	} {
		r.Record(&contracts.Delivery{Priority: h.p, Data: map[string]any{"t0": t0}}, base.Add(h.after))
	}
	st := r.Stats()
	for _, tc := range []struct {
		p        domain.Priority
		handoffs uint64
		last     time.Duration
		maxMS    float64
	}{
		{domain.PriorityHigh, 2, 90 * time.Millisecond, 90},
		{domain.PriorityMedium, 0, -1, 0},
		{domain.PriorityLow, 2, 20 * time.Millisecond, 20},
	} {
		p := string(tc.p)
		if got := st.Handoffs[p]; got != tc.handoffs {
			t.Errorf("%s: %d hand-offs, want %d", p, got, tc.handoffs)
		}
		if tc.last < 0 {
			if st.LastBy[p] != 0 {
				t.Errorf("%s: last hand-off %d, want none", p, st.LastBy[p])
			}
			continue
		}
		if got := time.Unix(0, st.LastBy[p]); !got.Equal(base.Add(tc.last)) {
			t.Errorf("%s: last hand-off at %v, want %v", p, got.Sub(base), tc.last)
		}
		if e := st.E2E[p]; e.Count != tc.handoffs || e.Max < tc.maxMS*0.9 || e.Max > tc.maxMS*1.1 {
			t.Errorf("%s: e2e %+v, want %d samples, max about %.0f ms", p, e, tc.handoffs, tc.maxMS)
		}
	}
	if got := time.Unix(0, st.Last); !got.Equal(base.Add(90 * time.Millisecond)) {
		t.Errorf("last hand-off of any lane at %v, want 90ms", got.Sub(base))
	}
}

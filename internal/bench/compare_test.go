package bench

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"
	"time"
)

func acceptReport(rate, cpu float64, e2eP99 float64) *Report {
	var h Histogram
	h.Record(10 * time.Millisecond)
	r := &Report{Accept: &Result{OK: 100, Rate: rate, Latency: &h}, CPUPerAcceptUS: cpu}
	if e2eP99 > 0 {
		r.E2E5k = map[string]Summary{"medium": {Count: 10, P99: e2eP99}}
	}
	return r
}

func TestSummarize(t *testing.T) {
	c := &Comparison{
		A: []*Report{acceptReport(1000, 200, 50), acceptReport(1200, 180, 40), acceptReport(900, 210, 0)},
		B: []*Report{acceptReport(1100, 190, 60), acceptReport(1300, 185, 30), acceptReport(1000, 200, 45)},
	}
	got := map[string]MetricSummary{}
	for _, s := range c.Summarize() {
		got[s.Name] = s
	}
	for _, tc := range []struct {
		name           string
		pairs, bBetter int
		ratio          float64
	}{
		// higher is better: B won all three pairs
		{"accepted/s", 3, 3, 1100.0 / 1000},
		// lower is better: B lower in pairs 1 and 3, higher in pair 2
		{"CPU µs per accept", 3, 2, 200.0 / 210}, // ratios 0.95, 1.028, 0.952
		// only pairs where both runs have the figure count (A's third has none)
		{"e2e5k p99 ms", 2, 1, (60.0/50 + 30.0/40) / 2},
	} {
		s, ok := got[tc.name]
		if !ok {
			t.Errorf("%s: missing from the summary", tc.name)
			continue
		}
		if s.Pairs != tc.pairs || s.BBetter != tc.bBetter || math.Abs(s.Ratio-tc.ratio) > 1e-9 {
			t.Errorf("%s: %d pairs, B better in %d, ratio %.4f; want %d, %d, %.4f", tc.name, s.Pairs, s.BBetter, s.Ratio, tc.pairs, tc.bBetter, tc.ratio)
		}
	}
	if _, ok := got["fan-out deliveries/s"]; ok {
		t.Error("a figure no run reported is in the summary")
	}
	var out bytes.Buffer
	c.Print(&out)
	if !strings.Contains(out.String(), "accepted/s") || !strings.Contains(out.String(), "3 of 3") {
		t.Errorf("printed summary:\n%s", out.String())
	}
}

func TestCompareErrors(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct {
		o     Options
		other string
		pairs int
	}{
		"no pairs":           {Options{Scenarios: []string{"accept"}}, "/bin/true", 0},
		"no other binary":    {Options{Scenarios: []string{"accept"}}, "", 1},
		"no server scenario": {Options{Scenarios: []string{"baseline"}}, "/bin/true", 1},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Compare(ctx, tc.o, tc.other, tc.pairs); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

// TestCompareRuns compares a build with itself: one pair, two fresh
// servers, both reports complete.
func TestCompareRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns servers")
	}
	bin := buildHerald(t)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := Compare(ctx, Options{Binary: bin, Scenarios: []string{"all"}, Duration: 500 * time.Millisecond,
		Concurrency: 8, GroupSize: 500, HighRate: 20, Users: 50, Out: &out}, bin, 1)
	if err != nil {
		t.Fatalf("compare: %v\n%s", err, out.String())
	}
	if len(c.A) != 1 || len(c.B) != 1 {
		t.Fatalf("%d A and %d B reports, want 1 each", len(c.A), len(c.B))
	}
	names := map[string]bool{}
	for _, s := range c.Summarize() {
		if s.Pairs != 1 {
			t.Errorf("%s: %d pairs", s.Name, s.Pairs)
		}
		names[s.Name] = true
	}
	for _, want := range []string{"accepted/s", "e2e5k p99 ms", "fan-out deliveries/s", "high e2e p99 ms during fan-out"} {
		if !names[want] {
			t.Errorf("%s missing from the comparison", want)
		}
	}
	if c.A[0].Baseline != nil {
		t.Error("the bare baseline ran in a comparison")
	}
	if !strings.Contains(out.String(), "pair 1 A:") || !strings.Contains(out.String(), "pair 1 B:") {
		t.Errorf("progress lines:\n%s", out.String())
	}
}

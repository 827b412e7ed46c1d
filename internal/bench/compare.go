package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// Comparison holds the reports of alternating runs of two herald builds
// under the same scenarios: A is Options.Binary (default this one), B the
// other. On a shared machine the same build moves by a third between
// runs, so a change is judged pair by pair (docs/benchmarks.md).
type Comparison struct {
	ABinary string    `json:"a_binary"`
	BBinary string    `json:"b_binary"`
	A       []*Report `json:"a"`
	B       []*Report `json:"b"`
}

// Metric is one figure of a report that two builds are compared on.
type Metric struct {
	Name string
	// Higher is true when a larger value is better (rates).
	Higher bool
	// Get returns the figure, and false when the report lacks it.
	Get func(*Report) (float64, bool)
}

// CompareMetrics are the figures Compare reports, when the scenarios run
// produce them.
var CompareMetrics = []Metric{
	{"accepted/s", true, func(r *Report) (float64, bool) { return resultOK(r.Accept, func(x *Result) float64 { return x.Rate }) }},
	{"CPU µs per accept", false, func(r *Report) (float64, bool) { return r.CPUPerAcceptUS, r.CPUPerAcceptUS > 0 }},
	{"database CPU µs per accept", false, func(r *Report) (float64, bool) { return r.DBCPUPerAcceptUS, r.DBCPUPerAcceptUS > 0 }},
	{"accept API p99 ms", false, func(r *Report) (float64, bool) {
		return resultOK(r.Accept, func(x *Result) float64 { return x.Latency.Summarize().P99 })
	}},
	{"rate10k API p99 ms", false, func(r *Report) (float64, bool) {
		return resultOK(r.Rate10k, func(x *Result) float64 { return x.Latency.Summarize().P99 })
	}},
	{"e2e5k p99 ms", false, func(r *Report) (float64, bool) {
		s, ok := r.E2E5k["medium"]
		return s.P99, ok && s.Count > 0
	}},
	{"e2e5k KiB written per notification", false, func(r *Report) (float64, bool) {
		v, ok := r.ServerWriteKB["e2e5k"]
		return v, ok && v > 0
	}},
	{"fan-out deliveries/s", true, func(r *Report) (float64, bool) {
		if r.Priority == nil || r.Priority.FanoutPerSecond <= 0 {
			return 0, false
		}
		return r.Priority.FanoutPerSecond, true
	}},
	{"high e2e p99 ms during fan-out", false, func(r *Report) (float64, bool) {
		if r.Priority == nil || r.Priority.High.Count == 0 {
			return 0, false
		}
		return r.Priority.High.P99, true
	}},
}

func resultOK(x *Result, f func(*Result) float64) (float64, bool) {
	if x == nil || x.OK == 0 || x.Latency == nil {
		return 0, false
	}
	return f(x), true
}

// Compare runs the scenarios of o pairs times on each of two builds, in
// alternating order (A then B, then B then A, ...) so that a drift of the
// machine during the session falls on both alike. Each run spawns a fresh
// server. The bare baseline does not depend on the build and is left out.
func Compare(ctx context.Context, o Options, other string, pairs int) (*Comparison, error) {
	if pairs <= 0 {
		return nil, fmt.Errorf("compare: %d pairs", pairs)
	}
	if other == "" {
		return nil, fmt.Errorf("compare: no second binary")
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		o.Binary = exe
	}
	var scen []string
	for _, s := range o.Scenarios {
		switch s {
		case "baseline":
		case "all":
			scen = append(scen, "accept", "rate10k", "e2e5k", "priority")
		default:
			scen = append(scen, s)
		}
	}
	if len(scen) == 0 {
		return nil, fmt.Errorf("compare: no server scenario among %v", o.Scenarios)
	}
	c := &Comparison{ABinary: o.Binary, BBinary: other}
	out := o.Out
	for i := 0; i < pairs; i++ {
		order := []string{"A", "B"}
		if i%2 == 1 {
			order = []string{"B", "A"}
		}
		for _, which := range order {
			run := o
			run.Scenarios = scen
			run.Out = io.Discard
			if which == "B" {
				run.Binary = other
			}
			rep, err := Run(ctx, run)
			if err != nil {
				return c, fmt.Errorf("compare: pair %d, %s: %w", i+1, which, err)
			}
			if which == "A" {
				c.A = append(c.A, rep)
			} else {
				c.B = append(c.B, rep)
			}
			fmt.Fprintf(out, "pair %d %s: %s\n", i+1, which, oneLine(rep))
		}
	}
	return c, nil
}

// oneLine is a report's compared figures on one line.
func oneLine(r *Report) string {
	var parts []string
	for _, m := range CompareMetrics {
		if v, ok := m.Get(r); ok {
			parts = append(parts, fmt.Sprintf("%s %.4g", m.Name, v))
		}
	}
	return strings.Join(parts, ", ")
}

// MetricSummary compares one figure over the pairs.
type MetricSummary struct {
	Name string
	A, B []float64
	// Ratio is the median over the pairs of B / A.
	Ratio float64
	// BBetter counts the pairs in which B did better; Pairs those in which
	// both runs have the figure.
	BBetter, Pairs int
}

// Summarize compares every metric that both builds reported, pair by pair.
func (c *Comparison) Summarize() []MetricSummary {
	var out []MetricSummary
	for _, m := range CompareMetrics {
		s := MetricSummary{Name: m.Name}
		var ratios []float64
		for i := 0; i < len(c.A) && i < len(c.B); i++ {
			a, aok := m.Get(c.A[i])
			b, bok := m.Get(c.B[i])
			if !aok || !bok || a == 0 {
				continue
			}
			s.A, s.B = append(s.A, a), append(s.B, b)
			ratios = append(ratios, b/a)
			s.Pairs++
			if (m.Higher && b > a) || (!m.Higher && b < a) {
				s.BBetter++
			}
		}
		if s.Pairs == 0 {
			continue
		}
		s.Ratio = median(ratios)
		out = append(out, s)
	}
	return out
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Print writes the summary as a table.
func (c *Comparison) Print(w io.Writer) {
	fmt.Fprintf(w, "\nA = %s\nB = %s\n", c.ABinary, c.BBinary)
	fmt.Fprintf(w, "%-36s %-28s %-28s %8s  %s\n", "figure", "A", "B", "B/A", "B better")
	for _, s := range c.Summarize() {
		fmt.Fprintf(w, "%-36s %-28s %-28s %8.3f  %d of %d\n", s.Name, join(s.A), join(s.B), s.Ratio, s.BBetter, s.Pairs)
	}
}

func join(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.4g", x)
	}
	return strings.Join(parts, " ")
}

// Package bench is Herald's load generator: open-loop (fixed rate, latency
// measured from each request's scheduled time, so a slow server cannot hide
// its queueing) and closed-loop (maximum rate at a concurrency), plus the
// scenarios recorded in docs/benchmarks.md.
package bench

import (
	"encoding/json"
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram is a lock-free log-linear latency histogram: 64 sub-buckets per
// power of two of nanoseconds, so every percentile is within ~1.6 % of the
// true value. Record is safe for concurrent use.
type Histogram struct {
	counts [64 * 64]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

func bucketOf(ns int64) int {
	if ns < 64 {
		if ns < 0 {
			ns = 0
		}
		return int(ns)
	}
	exp := 63 - bits.LeadingZeros64(uint64(ns)) // >= 6
	sub := int(ns>>(exp-6)) & 63
	return (exp-5)*64 + sub
}

func lowerOf(b int) int64 {
	if b < 64 {
		return int64(b)
	}
	exp := b/64 + 5
	sub := int64(b % 64)
	return (64 + sub) << (exp - 6)
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	ns := int64(d)
	b := bucketOf(ns)
	if b >= len(h.counts) {
		b = len(h.counts) - 1
	}
	h.counts[b].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			break
		}
	}
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Quantile returns the latency at q (0..1).
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	target := uint64(math.Ceil(q * float64(n)))
	if target == 0 {
		target = 1
	}
	var seen uint64
	for b := range h.counts {
		seen += h.counts[b].Load()
		if seen >= target {
			// midpoint of the bucket
			lo := lowerOf(b)
			hi := lowerOf(b + 1)
			v := time.Duration((lo + hi) / 2)
			if m := time.Duration(h.max.Load()); v > m {
				v = m
			}
			return v
		}
	}
	return time.Duration(h.max.Load())
}

// Summary is a printable view of a histogram.
type Summary struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Summarize returns the count and the p50/p99/p99.9/max in milliseconds.
func (h *Histogram) Summarize() Summary {
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
	return Summary{Count: h.Count(), P50: ms(h.Quantile(0.50)), P99: ms(h.Quantile(0.99)), P999: ms(h.Quantile(0.999)), Max: ms(time.Duration(h.max.Load()))}
}

// MarshalJSON renders the summary.
func (h *Histogram) MarshalJSON() ([]byte, error) { return json.Marshal(h.Summarize()) }

package bench

import (
	"math"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 100000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {0.999, 99900 * time.Microsecond}} {
		got := h.Quantile(tc.q)
		if rel := math.Abs(float64(got-tc.want)) / float64(tc.want); rel > 0.02 {
			t.Errorf("q%.3f = %v, want %v (±2%%)", tc.q, got, tc.want)
		}
	}
	if h.Count() != 100000 {
		t.Fatalf("count %d", h.Count())
	}
	if s := h.Summarize(); s.Max != 100 {
		t.Fatalf("max %v", s.Max)
	}
}

func TestBucketsMonotonic(t *testing.T) {
	prev := -1
	for ns := int64(0); ns < 1<<40; ns = ns*2 + 1 {
		b := bucketOf(ns)
		if b < prev {
			t.Fatalf("bucket of %d went down", ns)
		}
		if lowerOf(b) > ns {
			t.Fatalf("lower bound of bucket %d (%d) above %d", b, lowerOf(b), ns)
		}
		prev = b
	}
}

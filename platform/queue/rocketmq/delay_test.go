package rocketmq

import (
	"testing"
	"time"
)

func TestDelayLevel(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{-time.Second, 0},
		{0, 0},
		{time.Nanosecond, 1},
		{500 * time.Millisecond, 1},
		{time.Second, 1},
		{time.Second + time.Millisecond, 2},
		{5 * time.Second, 2},
		{6 * time.Second, 3},
		{30 * time.Second, 4},
		{45 * time.Second, 5},
		{90 * time.Second, 6},
		{10 * time.Minute, 14},
		{11 * time.Minute, 15},
		{25 * time.Minute, 16},
		{time.Hour, 17},
		{2 * time.Hour, 18},
		{3 * time.Hour, 18},
	} {
		if got := DelayLevel(tc.d); got != tc.want {
			t.Errorf("DelayLevel(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

// Every delay up to 2 h maps to the tightest level that is not early.
func TestDelayLevelNeverEarlyAndTight(t *testing.T) {
	for d := 100 * time.Millisecond; d <= 2*time.Hour; d += 7 * time.Second {
		l := DelayLevel(d)
		if l < 1 || l > MaxDelayLevel {
			t.Fatalf("DelayLevel(%v) = %d out of range", d, l)
		}
		if DelayLevels[l-1] < d {
			t.Fatalf("DelayLevel(%v) = %d (%v): earlier than asked", d, l, DelayLevels[l-1])
		}
		if l > 1 && DelayLevels[l-2] >= d {
			t.Fatalf("DelayLevel(%v) = %d: level %d (%v) would do", d, l, l-1, DelayLevels[l-2])
		}
	}
}

package queue_test

import (
	"testing"
	"time"

	"herald.dev/platform/queue"
)

func TestAgeingPick(t *testing.T) {
	const limit = time.Second
	var a queue.Ageing
	// strict priority while nothing is overdue
	if got := a.Pick([3]bool{true, true, true}, [3]time.Duration{0, 0, 500 * time.Millisecond}, limit); got != 0 {
		t.Fatalf("fresh lanes: picked %d", got)
	}
	// an overdue low lane behind a busy high lane gets exactly one pick in AgedShare
	picks := map[int]int{}
	for i := 0; i < 40; i++ {
		picks[a.Pick([3]bool{true, false, true}, [3]time.Duration{0, 0, 2 * time.Second}, limit)]++
	}
	if picks[2] != 40/queue.AgedShare || picks[0] != 40-40/queue.AgedShare {
		t.Fatalf("picks %v", picks)
	}
	// the overdue lane that waited longest is the aged candidate
	a = queue.Ageing{}
	var got []int
	for i := 0; i < queue.AgedShare; i++ {
		got = append(got, a.Pick([3]bool{true, true, true}, [3]time.Duration{0, 2 * time.Second, 3 * time.Second}, limit))
	}
	if got[queue.AgedShare-1] != 2 {
		t.Fatalf("aged pick %v", got)
	}
	// the highest lane is served at once when it is itself overdue
	if got := a.Pick([3]bool{true, false, true}, [3]time.Duration{2 * time.Second, 0, 3 * time.Second}, limit); got != 0 {
		t.Fatalf("overdue high lane: picked %d", got)
	}
	if got := a.Pick([3]bool{}, [3]time.Duration{}, limit); got != -1 {
		t.Fatalf("empty: %d", got)
	}
}

package rocketmq

import (
	"context"
	"errors"
	"testing"
	"time"

	"herald.dev/platform/queue"
)

func TestPickLane(t *testing.T) {
	const limit = 5 * time.Second
	now := time.Unix(1000, 0)
	at := func(ago time.Duration) *item { return &item{since: now.Add(-ago)} }
	for _, tc := range []struct {
		name        string
		heads       [3]*item
		first, aged int // the first pick, and the AgedShare-th
	}{
		{"all empty", [3]*item{}, -1, -1},
		{"strict priority when nothing is overdue", [3]*item{at(time.Second), at(2 * time.Second), at(4 * time.Second)}, 0, 0},
		{"medium when high is empty", [3]*item{nil, at(0), at(time.Second)}, 1, 1},
		{"overdue low gets one pick in AgedShare", [3]*item{at(0), nil, at(6 * time.Second)}, 0, 2},
		{"exactly at the limit counts", [3]*item{at(0), nil, at(limit)}, 0, 2},
		{"oldest overdue is the aged candidate", [3]*item{at(time.Second), at(9 * time.Second), at(7 * time.Second)}, 0, 1},
		{"overdue top lane is served at once", [3]*item{at(9 * time.Second), nil, at(7 * time.Second)}, 0, 0},
	} {
		var a queue.Ageing
		var picks []int
		for i := 0; i < queue.AgedShare; i++ {
			picks = append(picks, pickLane(&a, tc.heads, now, limit))
		}
		if picks[0] != tc.first || picks[queue.AgedShare-1] != tc.aged {
			t.Errorf("%s: picks %v, want first %d and aged %d", tc.name, picks, tc.first, tc.aged)
		}
	}
}

func takeNow(t *testing.T, b *buffers) *item {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	it, err := b.take(ctx)
	if err != nil {
		t.Fatalf("take: %v", err)
	}
	return it
}

func TestBuffersOrderByEntryTime(t *testing.T) {
	b := newBuffers(8, time.Hour)
	base := time.Unix(1000, 0)
	never := make(chan struct{})
	// Arrival order differs from the order the messages entered the topic.
	for _, x := range []struct {
		id    string
		at    time.Duration
		order int64
	}{{"c", 3, 0}, {"a", 1, 5}, {"e", 5, 0}, {"b", 1, 7}, {"d", 4, 0}} {
		if !b.put(&item{msg: queue.Message{ID: x.id}, lane: 1, since: base.Add(x.at * time.Millisecond), order: x.order}, never) {
			t.Fatal("put failed")
		}
	}
	if b.depth(1) != 5 || b.depth(0) != 0 {
		t.Fatalf("depths %d/%d", b.depth(1), b.depth(0))
	}
	for _, want := range []string{"a", "b", "c", "d", "e"} {
		if got := takeNow(t, b).msg.ID; got != want {
			t.Fatalf("took %s, want %s", got, want)
		}
	}
}

func TestBuffersBoundPerLane(t *testing.T) {
	const size = 3
	b := newBuffers(size, time.Hour)
	never, stopped := make(chan struct{}), make(chan struct{})
	close(stopped)
	for i := range size {
		if !b.put(&item{lane: 2, order: int64(i)}, never) {
			t.Fatal("put into a lane with room failed")
		}
	}
	// The lane is full: with stop closed, put must give up every time.
	for range 50 {
		if b.put(&item{lane: 2}, stopped) {
			t.Fatal("put into a full lane succeeded")
		}
	}
	if d := b.depth(2); d != size {
		t.Fatalf("depth %d, want %d", d, size)
	}
	// Another lane has its own room.
	if !b.put(&item{lane: 0}, never) {
		t.Fatal("put into the high lane failed")
	}
	takeNow(t, b) // the high one
	takeNow(t, b) // frees a low slot
	if !b.put(&item{lane: 2, order: 99}, never) {
		t.Fatal("put after a take failed")
	}
	if d := b.depth(2); d != size {
		t.Fatalf("depth %d, want %d", d, size)
	}
}

func TestBuffersTakeWaitsAndCloses(t *testing.T) {
	b := newBuffers(4, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.take(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("take on empty buffers: %v", err)
	}

	got := make(chan *item)
	go func() {
		it, _ := b.take(context.Background())
		got <- it
	}()
	b.put(&item{msg: queue.Message{ID: "x"}, lane: 1}, make(chan struct{}))
	if it := <-got; it == nil || it.msg.ID != "x" {
		t.Fatalf("blocked take got %+v", it)
	}

	errc := make(chan error)
	go func() {
		_, err := b.take(context.Background())
		errc <- err
	}()
	b.close()
	if err := <-errc; !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("take after close: %v", err)
	}
	b.close() // idempotent
	b.put(&item{lane: 0}, make(chan struct{}))
	if _, err := b.take(context.Background()); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("take on closed buffers with an item: %v", err)
	}
}

func TestBuffersAgeing(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBuffers(4, 5*time.Second)
	b.now = func() time.Time { return now }
	never := make(chan struct{})
	b.ageing = queue.Ageing{}
	for i := 0; i < queue.AgedShare-1; i++ { // the next pick is the aged one
		b.ageing.Pick([3]bool{true, false, true}, [3]time.Duration{0, 0, time.Hour}, time.Second)
	}
	b.put(&item{msg: queue.Message{ID: "fresh-high"}, lane: 0, since: now}, never)
	b.put(&item{msg: queue.Message{ID: "old-low"}, lane: 2, since: now.Add(-6 * time.Second)}, never)
	b.put(&item{msg: queue.Message{ID: "young-low"}, lane: 2, since: now.Add(-time.Second)}, never)
	for _, want := range []string{"old-low", "fresh-high", "young-low"} {
		if got := takeNow(t, b).msg.ID; got != want {
			t.Fatalf("took %s, want %s", got, want)
		}
	}
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"herald.dev/adapters/adaptertest"
	"herald.dev/adapters/registry"
	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{
		Channel: domain.ChannelBench,
		Setup: func(t *testing.T) *adaptertest.Env {
			rec := NewRecorder()
			var seen adaptertest.Log
			rec.OnSend = func(d *contracts.Delivery, _ time.Time) { seen.Add(d.ID) }
			senders, err := registry.Build(registry.Deps{Config: config.Defaults(), Observer: rec}, domain.ChannelBench)
			if err != nil {
				t.Fatal(err)
			}
			if senders[domain.ChannelBench].(*Adapter).Recorder() != rec {
				t.Fatal("factory did not use Deps.Observer")
			}
			return &adaptertest.Env{
				Sender:  senders[domain.ChannelBench],
				Address: func(*contracts.Delivery) {},
				Seen:    seen.IDs,
			}
		},
	})
}

func TestFactoryDefaultRecorder(t *testing.T) {
	senders, err := registry.Build(registry.Deps{Config: config.Defaults()}, domain.ChannelBench)
	if err != nil {
		t.Fatal(err)
	}
	a := senders[domain.ChannelBench].(*Adapter)
	if a.Recorder() == nil {
		t.Fatal("no recorder when Deps.Observer is nil")
	}
	if _, err := a.Send(context.Background(), &contracts.Delivery{ID: "d", NotificationID: "n"}); err != nil {
		t.Fatal(err)
	}
	if got := a.Recorder().Stats().Sends; got != 1 {
		t.Fatalf("Sends = %d", got)
	}
}

func TestRecorder(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	type send struct {
		ntf string
		pri domain.Priority
		at  time.Duration
	}
	tests := []struct {
		name  string
		sends []send
		first map[string]time.Duration
		stats Stats
	}{
		{"first hand-off wins",
			[]send{{"n1", domain.PriorityHigh, 5}, {"n1", domain.PriorityHigh, 2}, {"n2", domain.PriorityLow, 7}},
			map[string]time.Duration{"n1": 5, "n2": 7},
			Stats{Sends: 3, Notifications: 2, High: 2, Low: 1}},
		{"priorities, empty defaults to medium",
			[]send{{"a", domain.PriorityMedium, 1}, {"b", "", 1}, {"c", domain.PriorityLow, 1}},
			map[string]time.Duration{"a": 1, "b": 1, "c": 1},
			Stats{Sends: 3, Notifications: 3, Medium: 2, Low: 1}},
		{"no notification id is counted but not timed",
			[]send{{"", domain.PriorityHigh, 1}},
			map[string]time.Duration{},
			Stats{Sends: 1, High: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRecorder()
			for i, s := range tt.sends {
				r.Record(&contracts.Delivery{ID: fmt.Sprint(i), NotificationID: s.ntf, Priority: s.pri}, t0.Add(s.at))
			}
			if got := r.Stats(); got != tt.stats {
				t.Fatalf("Stats = %+v, want %+v", got, tt.stats)
			}
			all := r.FirstSeen()
			if len(all) != len(tt.first) {
				t.Fatalf("FirstSeen = %v, want %v", all, tt.first)
			}
			for id, off := range tt.first {
				got, ok := r.First(id)
				if !ok || !got.Equal(t0.Add(off)) || !all[id].Equal(t0.Add(off)) {
					t.Fatalf("First(%s) = %v %v, want %v", id, got, ok, t0.Add(off))
				}
			}
			if _, ok := r.First("missing"); ok {
				t.Fatal("First(missing) found")
			}
			r.Reset()
			if got := r.Stats(); got != (Stats{}) || len(r.FirstSeen()) != 0 {
				t.Fatalf("after Reset: %+v %v", got, r.FirstSeen())
			}
		})
	}
}

func TestRecorderConcurrent(t *testing.T) {
	r := NewRecorder()
	a := New(r)
	const workers, per = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				// every notification is handed off twice (two recipients)
				d := &contracts.Delivery{ID: fmt.Sprintf("d%d-%d", w, i), NotificationID: fmt.Sprintf("n%d", i%(per/2)+w*per), Priority: domain.PriorityHigh}
				if _, err := a.Send(context.Background(), d); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	want := Stats{Sends: workers * per, Notifications: workers * per / 2, High: workers * per}
	if got := r.Stats(); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
	if got := len(r.FirstSeen()); got != workers*per/2 {
		t.Fatalf("FirstSeen has %d ids", got)
	}
}

func TestWait(t *testing.T) {
	r := NewRecorder()
	done := make(chan error, 1)
	go func() { done <- r.Wait(context.Background(), 3) }()
	for i := range 3 {
		r.Record(&contracts.Delivery{NotificationID: fmt.Sprint(i)}, time.Now())
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := r.Wait(context.Background(), 2); err != nil {
		t.Fatalf("Wait for a reached count: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Wait(ctx, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on cancelled ctx = %v", err)
	}
	if n := r.waiters.Load(); n != 0 {
		t.Fatalf("%d waiters left registered", n)
	}
}

func TestCancelled(t *testing.T) {
	r := NewRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := New(r).Send(ctx, &contracts.Delivery{ID: "d", NotificationID: "n"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if r.Stats().Sends != 0 {
		t.Fatal("cancelled send was recorded")
	}
}

func BenchmarkSend(b *testing.B) {
	a := New(nil)
	ds := make([]*contracts.Delivery, 1<<16)
	for i := range ds {
		ds[i] = &contracts.Delivery{ID: fmt.Sprintf("dlv_%d", i), NotificationID: fmt.Sprintf("ntf_%d", i), Priority: domain.PriorityHigh}
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := a.Send(ctx, ds[i&(len(ds)-1)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

func BenchmarkRecordNewIDs(b *testing.B) {
	r := NewRecorder()
	ds := make([]*contracts.Delivery, b.N)
	for i := range ds {
		ds[i] = &contracts.Delivery{NotificationID: fmt.Sprintf("ntf_%d", i)}
	}
	at := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for _, d := range ds {
		r.Record(d, at)
	}
}

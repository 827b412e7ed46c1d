package inbox_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/sqldb/sqldbtest"
	"herald.dev/services/inbox"
)

type nopPusher struct{}

func (nopPusher) Push(inbox.Event) {}

// BenchmarkDeliver measures group-committed Deliver on embedded SQLite with
// 1024 concurrent callers (the in-app adapter's workers), reporting items/s.
func BenchmarkDeliver(b *testing.B) {
	db := sqldbtest.SQLite(b)
	s := inbox.NewStore(db, inbox.Options{Pusher: nopPusher{}, Tracker: contracts.NopTracker{}})
	b.Cleanup(s.Close)
	var seq atomic.Int64
	ctx := context.Background()
	b.SetParallelism(512)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			id := strconv.FormatInt(n, 10)
			err := s.Deliver(ctx, contracts.InboxItem{
				AppID: "app_bench", UserID: "u" + strconv.FormatInt(n%5000, 10), NotificationID: "ntf_" + id,
				DeliveryID: "dlv_" + id, Kind: domain.KindNotice, Category: "orders",
				Title: "Order shipped", Body: "Your order A-" + id + " has shipped.", Data: map[string]any{"order": id},
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "items/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/item")
}

// cpuTime is the CPU time this process used (user + system): on a shared
// machine it tells the cost per item when wall-clock throughput cannot.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

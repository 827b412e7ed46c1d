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
	"herald.dev/platform/ids"
	"herald.dev/platform/messages"
	"herald.dev/platform/sqldb/sqldbtest"
	"herald.dev/services/inbox"
)

type nopPusher struct{}

func (nopPusher) Push(inbox.Event) {}

// BenchmarkDeliver measures group-committed Deliver on embedded SQLite with
// 1024 concurrent callers (the in-app adapter's workers), reporting items/s,
// for notifications fanned out to users picked among 5000 and among 200.
func BenchmarkDeliver(b *testing.B) {
	for _, users := range []int64{5000, 200} {
		b.Run("users="+strconv.FormatInt(users, 10), func(b *testing.B) { benchDeliver(b, users) })
	}
}

func benchDeliver(b *testing.B, benchUsers int64) {
	db := sqldbtest.SQLite(b)
	s := inbox.NewStore(db, inbox.Options{Pusher: nopPusher{}, Tracker: contracts.NopTracker{}})
	b.Cleanup(s.Close)
	var seq atomic.Int64
	notifIDs := make([]string, b.N/20+1)
	for i := range notifIDs {
		notifIDs[i] = ids.New("ntf")
	}
	ctx := context.Background()
	b.SetParallelism(512)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			// Realistic keys: a notification fans out to 20 users picked
			// among 5000; delivery ids are the pipeline's hashed ids.
			n := seq.Add(1)
			ntf := notifIDs[(n/20)%int64(len(notifIDs))]
			user := "u" + strconv.FormatInt((n*7919)%benchUsers, 10)
			err := s.Deliver(ctx, contracts.InboxItem{
				AppID: "app_bench", UserID: user, NotificationID: ntf,
				DeliveryID: messages.DeliveryID(ntf, user+strconv.FormatInt(n, 10), domain.ChannelInApp), Kind: domain.KindNotice,
				Category: "orders", Title: "Order shipped", Body: "Your order A-" + strconv.FormatInt(n, 10) + " has shipped.",
				Data: map[string]any{"order": n},
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

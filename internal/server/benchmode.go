package server

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/pprof"

	"herald.dev/internal/bench"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

// BenchRecorder observes the hand-offs of the no-I/O "bench" adapter
// (registry.HandOffObserver): it measures end-to-end latency from the time
// the load generator scheduled the request (data.t0, Unix nanoseconds) to
// the hand-off, per priority, and counts hand-offs, in constant memory. It is
// enabled by HERALD_BENCH=1 and served at /debug/bench.
type BenchRecorder struct {
	state atomic.Pointer[benchState]
	// Busy reports the work the server still holds (notifications in
	// memory, unrecorded rows, unwritten tracker events); nil = unknown.
	Busy func() int
}

type benchState struct {
	e2e      [3]bench.Histogram
	handoffs [3]atomic.Uint64
	first    atomic.Int64
	lastBy   [3]atomic.Int64 // per priority rank; the last of any lane is their maximum
}

// NewBenchRecorder returns a recorder with empty statistics.
func NewBenchRecorder() *BenchRecorder {
	r := &BenchRecorder{}
	r.state.Store(&benchState{})
	return r
}

// Record implements registry.HandOffObserver.
func (r *BenchRecorder) Record(d *contracts.Delivery, now time.Time) {
	s := r.state.Load()
	rank := d.Priority.Rank()
	s.handoffs[rank].Add(1)
	s.first.CompareAndSwap(0, now.UnixNano())
	s.lastBy[rank].Store(now.UnixNano())
	if v, ok := d.Data["t0"].(string); ok {
		if t0, err := strconv.ParseInt(v, 10, 64); err == nil {
			s.e2e[rank].Record(now.Sub(time.Unix(0, t0)))
		}
	}
}

// BenchStats is the JSON served at /debug/bench.
type BenchStats struct {
	Handoffs map[string]uint64        `json:"handoffs"`
	E2E      map[string]bench.Summary `json:"e2e"`
	First    int64                    `json:"first_unix_nano"`
	Last     int64                    `json:"last_unix_nano"`
	// LastBy is the last hand-off per priority, Unix nanoseconds: the
	// fan-out's end is the low lane's, whatever the high stream did after.
	LastBy map[string]int64 `json:"last_by_priority_unix_nano"`
	// Busy is the work still held after the hand-offs (-1 = unknown): a
	// phase starts once the previous one left nothing behind.
	Busy int `json:"busy"`
}

// Stats returns the current statistics.
func (r *BenchRecorder) Stats() BenchStats {
	s := r.state.Load()
	out := BenchStats{Handoffs: map[string]uint64{}, E2E: map[string]bench.Summary{}, LastBy: map[string]int64{}, First: s.first.Load(), Busy: -1}
	if r.Busy != nil {
		out.Busy = r.Busy()
	}
	for _, p := range domain.Priorities {
		out.Handoffs[string(p)] = s.handoffs[p.Rank()].Load()
		out.E2E[string(p)] = s.e2e[p.Rank()].Summarize()
		out.LastBy[string(p)] = s.lastBy[p.Rank()].Load()
		out.Last = max(out.Last, out.LastBy[string(p)])
	}
	return out
}

// Mount serves GET /debug/bench, POST /debug/bench/reset and the Go
// profiler under /debug/pprof (bench mode only).
func (r *BenchRecorder) Mount(app fiber.Router) {
	app.Use(pprof.New())
	app.Get("/debug/bench", func(c *fiber.Ctx) error { return c.JSON(r.Stats()) })
	app.Post("/debug/bench/reset", func(c *fiber.Ctx) error {
		r.state.Store(&benchState{})
		return c.SendStatus(fiber.StatusNoContent)
	})
}

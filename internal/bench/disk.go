package bench

import (
	"context"
	"fmt"
	"os"
	"time"
)

const (
	// diskRounds is how many write-and-sync rounds the idle probe makes.
	diskRounds = 200
	// diskPause spaces the rounds of the probe that runs during the
	// e2e5k phase, so that it adds 50 small syncs a second to the load.
	diskPause = 20 * time.Millisecond
)

// DiskResult is a disk probe of a run: how long the file system under the
// bench's data directory takes to make a small write durable.
type DiskResult struct {
	Dir   string  `json:"dir"`
	Fsync Summary `json:"fsync"`
}

func (r *DiskResult) String() string {
	f := r.Fsync
	return fmt.Sprintf("4 KiB write + fsync p50 %.2f ms p99 %.2f ms max %.2f ms (%d rounds)", f.P50, f.P99, f.Max, f.Count)
}

// DiskSync measures the disk under dir the way a write-ahead log commit
// uses it: n rounds of a 4 KiB write into a file that already has its
// blocks (as SQLite reuses its WAL) followed by an fsync. Every durable
// commit on that disk waits for such a sync, so its figures bound the
// latency of a durable accept (docs/benchmarks.md, "the disk under the
// writer"). The bench runs it once before the server starts, and once
// during the e2e5k phase, where the server's own writes lengthen the tail.
// pause spaces the rounds; ctx ends the probe early (the rounds so far are
// summarized).
func DiskSync(ctx context.Context, dir string, n int, pause time.Duration) (Summary, error) {
	if n <= 0 {
		return Summary{}, fmt.Errorf("disk probe: %d rounds", n)
	}
	f, err := os.CreateTemp(dir, "herald-bench-fsync-")
	if err != nil {
		return Summary{}, fmt.Errorf("disk probe: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	const page, span = 4096, 256 // cycle through 1 MiB
	if _, err := f.Write(make([]byte, page*span)); err != nil {
		return Summary{}, fmt.Errorf("disk probe: %w", err)
	}
	if err := f.Sync(); err != nil {
		return Summary{}, fmt.Errorf("disk probe: %w", err)
	}
	buf := make([]byte, page)
	var h Histogram
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if pause > 0 && i > 0 {
			select {
			case <-ctx.Done():
				return h.Summarize(), nil
			case <-time.After(pause):
			}
		}
		buf[0] = byte(i)
		if _, err := f.WriteAt(buf, int64(i%span)*page); err != nil {
			return Summary{}, fmt.Errorf("disk probe: %w", err)
		}
		t := time.Now()
		if err := f.Sync(); err != nil {
			return Summary{}, fmt.Errorf("disk probe: %w", err)
		}
		h.Record(time.Since(t))
	}
	return h.Summarize(), nil
}

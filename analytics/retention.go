package analytics

import (
	"context"
	"time"
)

// RunRetention deletes raw events older than keep every interval until ctx
// ends (the first sweep runs at once). Errors go to logf and the loop goes
// on. keep <= 0 disables it.
func RunRetention(ctx context.Context, s Sweeper, keep, every time.Duration, logf func(string, ...any)) {
	if keep <= 0 || s == nil {
		return
	}
	if every <= 0 {
		every = time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := s.Sweep(ctx, time.Now().Add(-keep))
		if logf != nil {
			if err != nil && ctx.Err() == nil {
				logf("analytics retention sweep: %v", err)
			} else if n > 0 {
				logf("analytics retention sweep: deleted %d events older than %s", n, keep)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

package bench

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestDiskSync(t *testing.T) {
	dir := t.TempDir()
	s, err := DiskSync(context.Background(), dir, 300, 0) // more rounds than the file's 256 pages: it wraps
	if err != nil {
		t.Fatal(err)
	}
	if s.Count != 300 {
		t.Fatalf("count %d, want 300", s.Count)
	}
	if s.P50 <= 0 || s.P99 < s.P50 || s.Max < s.P99 {
		t.Fatalf("quantiles out of order: %+v", s)
	}
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("probe left %d files behind", len(left))
	}
}

func TestDiskSyncStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	s, err := DiskSync(ctx, t.TempDir(), 1000, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// 1,000 rounds 20 ms apart would take 20 s; the context ends it after
	// about eight.
	if s.Count == 0 || s.Count >= 1000 {
		t.Fatalf("count %d, want a few rounds", s.Count)
	}
}

func TestDiskSyncErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		dir    string
		rounds int
	}{
		"missing directory": {filepath.Join(t.TempDir(), "absent"), 10},
		"no rounds":         {t.TempDir(), 0},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := DiskSync(context.Background(), tc.dir, tc.rounds, 0); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

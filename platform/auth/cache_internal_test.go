package auth

import (
	"context"
	"strings"
	"testing"
	"time"
	"unsafe"

	"herald.dev/platform/sqldb/sqldbtest"
)

// TestCacheKeepsItsOwnKeyIDs: the middleware passes header values that
// point into fiber's request buffer, which the next request overwrites. A
// cache key sharing those bytes changed under the map, and the next app's
// key could find the previous app's entry and be refused (a 401 seen about
// once in a hundred runs of the analytics API tests).
func TestCacheKeepsItsOwnKeyIDs(t *testing.T) {
	db := sqldbtest.SQLite(t, Migrations)
	s := NewStore(db, time.Minute)
	ctx := context.Background()
	_, keyA, err := s.CreateApp(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	b, keyB, err := s.CreateApp(ctx, "B")
	if err != nil {
		t.Fatal(err)
	}
	if len(keyA) != len(keyB) {
		t.Fatalf("keys of different lengths: %q %q", keyA, keyB)
	}
	buf := []byte(keyA)
	if _, err := s.Authenticate(ctx, unsafe.String(&buf[0], len(buf))); err != nil {
		t.Fatal(err)
	}
	copy(buf, keyB) // the request buffer now holds the next request
	kidA := strings.TrimPrefix(keyA[:strings.IndexByte(keyA, '.')], "hk_")
	s.mu.RLock()
	_, kept := s.cache[kidA]
	for k := range s.cache {
		if k != kidA {
			t.Errorf("the cache holds %q, want only %q", k, kidA)
		}
	}
	s.mu.RUnlock()
	if !kept {
		t.Errorf("the cache lost the entry of %q", kidA)
	}
	if id, err := s.Authenticate(ctx, keyB); err != nil || id != b.ID {
		t.Fatalf("key B = %q, %v", id, err)
	}
}

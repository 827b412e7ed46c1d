package profilesvc

import (
	"fmt"
	"testing"
	"time"

	"herald.dev/platform/contracts"
)

func TestProfileCacheBoundAndFence(t *testing.T) {
	c := newProfileCache(320, time.Minute)
	now := time.Now().UnixNano()
	for i := 0; i < 5000; i++ {
		g := c.generations()
		c.put("a", fmt.Sprint(i), &contracts.Profile{UserID: fmt.Sprint(i)}, &g, now)
	}
	if n := c.len(); n > 320 || n == 0 {
		t.Fatalf("cache holds %d entries, bound 320", n)
	}
	// a fill that started before an invalidation is dropped
	g := c.generations()
	c.invalidate("a", "u")
	c.put("a", "u", &contracts.Profile{UserID: "u", Name: "stale"}, &g, now)
	if _, ok := c.get("a", "u", now); ok {
		t.Fatal("stale fill was cached after invalidation")
	}
	g = c.generations()
	c.put("a", "u", &contracts.Profile{UserID: "u", Name: "fresh"}, &g, now)
	if p, ok := c.get("a", "u", now); !ok || p.Name != "fresh" {
		t.Fatalf("fresh fill: %v %v", p, ok)
	}
	// expiry, and tenancy in the key
	if _, ok := c.get("a", "u", now+int64(2*time.Minute)); ok {
		t.Fatal("expired entry served")
	}
	if _, ok := c.get("b", "u", now); ok {
		t.Fatal("another app's entry served")
	}
	// misses are cached for a fifth of the TTL
	g = c.generations()
	c.put("a", "ghost", nil, &g, now)
	if p, ok := c.get("a", "ghost", now+int64(10*time.Second)); !ok || p != nil {
		t.Fatal("miss not cached")
	}
	if _, ok := c.get("a", "ghost", now+int64(13*time.Second)); ok {
		t.Fatal("miss cached too long")
	}
}

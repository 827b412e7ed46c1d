package profilesvc

import (
	"hash/maphash"
	"sync"
	"time"

	"herald.dev/platform/contracts"
)

const cacheShards = 32

// profileCache is a bounded, sharded cache of profiles keyed by (app, user).
// Entries expire after ttl (so writes made by other instances are seen within
// ttl); writes made through this process invalidate at once. A fill that
// raced with an invalidation of its shard is dropped (generation check), so a
// stale read can never overwrite a newer invalidation.
type profileCache struct {
	ttl    time.Duration
	perCap int
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu  sync.Mutex
	gen uint64
	m   map[string]cacheEntry
}

type cacheEntry struct {
	p   *contracts.Profile // nil records a known-missing user
	exp int64              // unix nanoseconds
}

func newProfileCache(size int, ttl time.Duration) *profileCache {
	c := &profileCache{ttl: ttl, perCap: max(1, size/cacheShards), seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cacheEntry)
	}
	return c
}

func cacheKey(appID, userID string) string { return appID + "\x00" + userID }

func (c *profileCache) shard(key string) *cacheShard {
	return &c.shards[maphash.String(c.seed, key)%cacheShards]
}

// generations snapshots every shard's generation before a database read.
func (c *profileCache) generations() (g [cacheShards]uint64) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		g[i] = sh.gen
		sh.mu.Unlock()
	}
	return g
}

// get returns the cached profile; ok is false on a miss (or expiry).
func (c *profileCache) get(appID, userID string, now int64) (p *contracts.Profile, ok bool) {
	key := cacheKey(appID, userID)
	sh := c.shard(key)
	sh.mu.Lock()
	e, hit := sh.m[key]
	sh.mu.Unlock()
	if !hit || now > e.exp {
		return nil, false
	}
	return e.p, true
}

// put stores p (nil = missing) unless the shard was invalidated since gens was taken.
func (c *profileCache) put(appID, userID string, p *contracts.Profile, gens *[cacheShards]uint64, now int64) {
	key := cacheKey(appID, userID)
	idx := maphash.String(c.seed, key) % cacheShards
	sh := &c.shards[idx]
	ttl := c.ttl
	if p == nil {
		ttl /= 5 // a user created elsewhere shows up sooner
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen != gens[idx] {
		return
	}
	if _, present := sh.m[key]; !present && len(sh.m) >= c.perCap {
		// evict expired entries first, then arbitrary ones (map order is random)
		evicted := 0
		for k, e := range sh.m {
			if now > e.exp || evicted < c.perCap/8+1 {
				delete(sh.m, k)
				evicted++
			}
			if evicted >= c.perCap/4+1 {
				break
			}
		}
	}
	sh.m[key] = cacheEntry{p: p, exp: now + int64(ttl)}
}

// invalidate drops users of an app and fences in-flight fills of their shards.
func (c *profileCache) invalidate(appID string, userIDs ...string) {
	for _, u := range userIDs {
		key := cacheKey(appID, u)
		sh := c.shard(key)
		sh.mu.Lock()
		sh.gen++
		delete(sh.m, key)
		sh.mu.Unlock()
	}
}

func (c *profileCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

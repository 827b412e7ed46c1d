package templatesvc

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// clockCache is a bounded, sharded cache with CLOCK (second-chance)
// eviction, an approximation of LRU whose hits take only a read lock and
// touch an atomic flag, so parallel readers do not serialise.
type clockCache[K comparable, V any] struct {
	shards [cacheShards]clockShard[K, V]
	hash   func(K) uint64
}

const cacheShards = 16

type clockEntry[K comparable, V any] struct {
	key K
	val V
	ref atomic.Bool
	at  int // index in ring
}

type clockShard[K comparable, V any] struct {
	mu   sync.RWMutex
	m    map[K]*clockEntry[K, V]
	ring []*clockEntry[K, V] // nil slots are free
	free []int
	hand int
	cap  int
}

func newClockCache[K comparable, V any](capacity int, hash func(K) uint64) *clockCache[K, V] {
	per := capacity / cacheShards
	if per < 1 {
		per = 1
	}
	c := &clockCache[K, V]{hash: hash}
	for i := range c.shards {
		c.shards[i].m = make(map[K]*clockEntry[K, V])
		c.shards[i].cap = per
	}
	return c
}

func (c *clockCache[K, V]) shard(k K) *clockShard[K, V] {
	return &c.shards[c.hash(k)%cacheShards]
}

// Get returns the cached value of k.
func (c *clockCache[K, V]) Get(k K) (V, bool) {
	s := c.shard(k)
	s.mu.RLock()
	e := s.m[k]
	if e == nil {
		s.mu.RUnlock()
		var zero V
		return zero, false
	}
	v := e.val
	s.mu.RUnlock()
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	return v, true
}

// Put stores v under k, evicting an entry not used since the hand last
// passed it when the shard is full.
func (c *clockCache[K, V]) Put(k K, v V) {
	s := c.shard(k)
	s.mu.Lock()
	s.put(k, v)
	s.mu.Unlock()
}

// PutIf stores v under k only when ok() holds, checked under the shard lock.
func (c *clockCache[K, V]) PutIf(k K, v V, ok func() bool) {
	s := c.shard(k)
	s.mu.Lock()
	if ok() {
		s.put(k, v)
	}
	s.mu.Unlock()
}

func (s *clockShard[K, V]) put(k K, v V) {
	if e := s.m[k]; e != nil {
		e.val = v
		e.ref.Store(true)
		return
	}
	e := &clockEntry[K, V]{key: k, val: v}
	switch {
	case len(s.free) > 0:
		e.at = s.free[len(s.free)-1]
		s.free = s.free[:len(s.free)-1]
	case len(s.ring) < s.cap:
		e.at = len(s.ring)
		s.ring = append(s.ring, nil)
	default:
		for {
			old := s.ring[s.hand]
			if old.ref.Load() {
				old.ref.Store(false)
				s.hand = (s.hand + 1) % len(s.ring)
				continue
			}
			delete(s.m, old.key)
			e.at = s.hand
			s.hand = (s.hand + 1) % len(s.ring)
			break
		}
	}
	s.ring[e.at] = e
	s.m[k] = e
}

// Delete removes k.
func (c *clockCache[K, V]) Delete(k K) {
	s := c.shard(k)
	s.mu.Lock()
	if e := s.m[k]; e != nil {
		delete(s.m, k)
		s.ring[e.at] = nil
		s.free = append(s.free, e.at)
	}
	s.mu.Unlock()
}

// Len returns the number of entries.
func (c *clockCache[K, V]) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// flight collapses concurrent loads of one key into a single call.
type flight[K comparable, V any] struct {
	mu    sync.Mutex
	calls map[K]*flightCall[V]
}

type flightCall[V any] struct {
	done chan struct{}
	val  V
	err  error
}

func (f *flight[K, V]) do(k K, fn func() (V, error)) (V, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[K]*flightCall[V]{}
	}
	if c, ok := f.calls[k]; ok {
		f.mu.Unlock()
		<-c.done
		return c.val, c.err
	}
	c := &flightCall[V]{done: make(chan struct{})}
	f.calls[k] = c
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.calls, k)
		f.mu.Unlock()
		close(c.done)
	}()
	c.val, c.err = fn()
	return c.val, c.err
}

var hashSeed = maphash.MakeSeed()

type codeKey struct{ app, code string }

type versionKey struct {
	app, code string
	version   int
}

// hashCode picks a shard; it hashes the code only (apps have few codes in
// common, and one string hash is half the cost of two).
func hashCode(k codeKey) uint64 {
	return maphash.String(hashSeed, k.code) + uint64(len(k.app))
}

func hashVersion(k versionKey) uint64 {
	return hashCode(codeKey{k.app, k.code}) + uint64(k.version)*0x9E3779B97F4A7C15
}

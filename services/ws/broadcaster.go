package ws

import "sync"

// Frame is one message for a user's live connections.
type Frame struct {
	// Type is "item" (a new inbox item) or "state" (an item changed state).
	Type string `json:"type"`
	// ID is the item id; connections resuming from last_id use it to drop
	// items they already replayed.
	ID string `json:"id"`
	// Data is the JSON text sent to the client as one WebSocket message.
	Data []byte `json:"data"`
}

// Broadcaster fans frames out to every connection of a user. The default,
// Local, reaches the connections of this process. In a cluster a broadcaster
// publishes each frame to a broadcast topic (for example a RocketMQ topic
// consumed in BROADCASTING mode by every instance) and each instance hands
// what it consumes to its own Local; Subscribe stays local either way.
type Broadcaster interface {
	// Publish sends f to every subscriber of userKey. It must not block on
	// slow subscribers.
	Publish(userKey string, f Frame) error
	// Subscribe registers fn for userKey's frames until cancel is called.
	// fn is called from the publisher's goroutine and must not block.
	Subscribe(userKey string, fn func(Frame)) (cancel func())
}

// Listening is an optional Broadcaster method: whether anyone here listens to
// userKey. When it reports false the gateway skips encoding the frame.
// Broadcasters that forward to other instances must not implement it.
type Listening interface {
	Listening(userKey string) bool
}

// UserKey is the broadcast key of a user of an app.
func UserKey(appID, userID string) string { return appID + "/" + userID }

// Local is the in-process Broadcaster.
type Local struct {
	mu   sync.RWMutex
	subs map[string][]*subscription // copy on write: Publish reads without holding the lock
}

type subscription struct{ fn func(Frame) }

// NewLocal returns an empty in-process broadcaster.
func NewLocal() *Local { return &Local{subs: map[string][]*subscription{}} }

// Publish implements Broadcaster.
func (l *Local) Publish(userKey string, f Frame) error {
	l.mu.RLock()
	subs := l.subs[userKey]
	l.mu.RUnlock()
	for _, s := range subs {
		s.fn(f)
	}
	return nil
}

// Listening implements Listening.
func (l *Local) Listening(userKey string) bool {
	l.mu.RLock()
	n := len(l.subs[userKey])
	l.mu.RUnlock()
	return n > 0
}

// Subscribe implements Broadcaster.
func (l *Local) Subscribe(userKey string, fn func(Frame)) func() {
	s := &subscription{fn: fn}
	l.mu.Lock()
	old := l.subs[userKey]
	next := make([]*subscription, len(old), len(old)+1)
	copy(next, old)
	l.subs[userKey] = append(next, s)
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			cur := l.subs[userKey]
			keep := make([]*subscription, 0, len(cur))
			for _, x := range cur {
				if x != s {
					keep = append(keep, x)
				}
			}
			if len(keep) == 0 {
				delete(l.subs, userKey)
			} else {
				l.subs[userKey] = keep
			}
		})
	}
}

// Subscribers counts the subscriptions of userKey (tests, metrics).
func (l *Local) Subscribers(userKey string) int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.subs[userKey])
}

package memqueue

import (
	"context"
	"errors"
	"time"

	"herald.dev/platform/queue"
)

const (
	stateLeased uint8 = iota
	stateSettled
	stateExpired
	stateDropped // the queue was closed while the lease was out
)

var errDropped = errors.New("lease dropped by Close")

// lease is one received message. It sits on the queue's in-flight list,
// ordered by deadline (every lease gets now+visibility, so appending keeps
// the order), until it is settled or expires. All fields but msg are guarded
// by the queue's mutex.
type lease struct {
	q          *Queue
	msg        queue.Message
	deadline   int64
	prev, next *lease
	state      uint8
}

func (l *lease) Message() queue.Message { return l.msg }

// settle moves the lease out of flight. It reports whether this call did
// so; err is ErrLeaseExpired when the lease had already expired.
func (l *lease) settle() (bool, error) {
	q := l.q
	q.mu.Lock()
	defer q.mu.Unlock()
	switch l.state {
	case stateLeased:
		q.inflight.remove(l)
		l.state = stateSettled
		return true, nil
	case stateExpired:
		return false, ErrLeaseExpired
	case stateDropped:
		return false, errDropped
	default: // settled before: harmless
		return false, nil
	}
}

// Ack removes the message for good. Acking twice is harmless; acking after
// the visibility timeout returns ErrLeaseExpired (the message was
// redelivered and the consumer must deduplicate).
func (l *lease) Ack(context.Context) error {
	if _, err := l.settle(); err != nil && err != errDropped {
		return err
	}
	return nil
}

// Nack returns the message to its lane after delay (0 = at once). A lease
// already settled is left alone; an expired one returns ErrLeaseExpired.
func (l *lease) Nack(_ context.Context, delay time.Duration) error {
	ok, err := l.settle()
	if err == errDropped {
		return queue.ErrClosed
	}
	if !ok {
		return err
	}
	return l.q.requeue(l.msg, delay)
}

// leaseList is an intrusive doubly-linked list of leases in deadline order.
type leaseList struct {
	head, tail *lease
	n          int
}

func (ll *leaseList) pushBack(l *lease) {
	l.prev, l.next = ll.tail, nil
	if ll.tail != nil {
		ll.tail.next = l
	} else {
		ll.head = l
	}
	ll.tail = l
	ll.n++
}

func (ll *leaseList) remove(l *lease) {
	if l.prev != nil {
		l.prev.next = l.next
	} else {
		ll.head = l.next
	}
	if l.next != nil {
		l.next.prev = l.prev
	} else {
		ll.tail = l.prev
	}
	l.prev, l.next = nil, nil
	ll.n--
}

// Package queue is the contract of Herald's priority lanes. Three lanes
// (high, medium, low) carry references to accepted notifications from the
// API to the outbound handler. Delivery is at least once: a message that is
// received and neither acked nor nacked within the visibility timeout is
// delivered again, and consumers deduplicate (outbound does so with its
// unique delivery rows). The contract is small enough to map onto RocketMQ:
// one topic per lane and a consumer group for the outbound handlers.
//
// Receive serves lanes in strict priority order with one exception, the
// ageing rule: when the oldest message of a lower lane has waited longer than
// the configured age limit, it is served before fresher higher-priority
// messages, so low priority can be slowed but never starved.
package queue

import (
	"context"
	"errors"
	"time"

	"herald.dev/platform/domain"
)

var (
	// ErrClosed is returned by a closed queue.
	ErrClosed = errors.New("queue closed")
	// ErrFull means the lane is at capacity; the message stays in the outbox
	// and the outbox sweeper publishes it later.
	ErrFull = errors.New("queue lane full")
)

// Message references one notification on a lane.
type Message struct {
	// ID is the notification id; it is also the deduplication key.
	ID       string          `json:"id"`
	AppID    string          `json:"app_id"`
	Priority domain.Priority `json:"priority"`
	// EnqueuedAt is set by Publish when zero.
	EnqueuedAt time.Time `json:"enqueued_at"`
	// Deliveries counts how many times this message has been handed to a
	// consumer (1 on first receipt).
	Deliveries int `json:"deliveries"`
}

// Lease is a received message that must be settled with Ack or Nack.
type Lease interface {
	Message() Message
	// Ack removes the message for good.
	Ack(ctx context.Context) error
	// Nack returns the message to its lane after delay (0 = at once).
	Nack(ctx context.Context, delay time.Duration) error
}

// Queue is the priority-lane contract.
type Queue interface {
	// Publish puts messages on their lanes (by Message.Priority).
	Publish(ctx context.Context, msgs ...Message) error
	// Receive blocks until a message is available (highest priority first,
	// subject to the ageing rule) or ctx ends.
	Receive(ctx context.Context) (Lease, error)
	// Close stops the queue; blocked Receive calls return ErrClosed.
	Close() error
}

// Stats reports lane depths, for metrics and tests.
type Stats interface {
	Depth(p domain.Priority) int
}

// Package rocketmq implements Herald's priority lanes (queue.Queue) on
// Apache RocketMQ with github.com/apache/rocketmq-client-go/v2.
//
// Each lane is a topic, <prefix>_high, <prefix>_medium and <prefix>_low.
// One producer publishes; one push consumer in the consumer group
// (config queue.rocketmq.group, clustering mode, so each message goes to one
// Herald instance) subscribes to the three topics. The client runs a consume
// callback per message, with a goroutine budget per topic, so a busy lane
// never holds up another. The callback decodes the message, places it in a
// small bounded local buffer for its lane and blocks until the lease is
// settled:
//
//   - Ack: the callback returns ConsumeSuccess.
//   - Nack(0) and an expired lease (visibility timeout): the message goes
//     back into the local buffer at once, Deliveries incremented.
//   - Nack(d>0): a copy is sent to the same topic with the smallest delay
//     level >= d (DelayLevel) and a not-before property, then the callback
//     returns ConsumeSuccess. If that send fails it returns
//     ConsumeRetryLater with DelayLevelWhenNextConsume = DelayLevel(d), and
//     the broker redelivers through the group's retry topic.
//
// Receive picks among the three buffers by priority with the ageing rule,
// measuring a message's wait from when it was stored on its topic.
//
// Topics must exist before New (the consumer refuses to start otherwise):
// create them with `mqadmin updateTopic -t <prefix>_high -c DefaultCluster`
// and so on, or enable autoCreateTopicEnable on the broker and send once.
package rocketmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	rmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"

	"herald.dev/platform/config"
	"herald.dev/platform/domain"
	"herald.dev/platform/queue"
)

// Defaults used for zero Options fields.
const (
	DefaultAgeLimit    = 5 * time.Second
	DefaultVisibility  = 30 * time.Second
	DefaultBuffer      = 16
	DefaultMaxInFlight = 64
	// publishBatch caps the messages sent in one batch request.
	publishBatch = 128
)

// Options tunes a Queue beyond config.RocketMQ.
type Options struct {
	// AgeLimit is the ageing rule's limit (config queue.age_limit).
	AgeLimit time.Duration
	// Visibility is how long a received message may stay unsettled before
	// it is handed out again.
	Visibility time.Duration
	// Buffer bounds each lane's local buffer of received, not yet leased
	// messages.
	Buffer int
	// MaxInFlight is how many leases per lane may be out at once; with
	// Buffer it sets the consumer's goroutines per topic.
	MaxInFlight int
	// InstanceName names the client instance (default: the client's, one per
	// process). Queues in one process that must not share a connection pool
	// use different names.
	InstanceName string
}

// Queue is queue.Queue on RocketMQ. It also implements queue.Stats over its
// local buffers.
type Queue struct {
	topics [3]string
	vis    time.Duration
	// goroutines is the consumer's callback budget per topic.
	goroutines int
	producer   rmq.Producer
	consumer   rmq.PushConsumer
	buf        *buffers
	log        *slog.Logger

	closing   atomic.Bool
	released  chan struct{} // closed after the consumer stopped: callbacks return
	closeOnce sync.Once
}

var (
	_ queue.Queue = (*Queue)(nil)
	_ queue.Stats = (*Queue)(nil)
)

// Topics returns the three lane topics for prefix, high first.
func Topics(prefix string) [3]string {
	var t [3]string
	for r, p := range domain.Priorities {
		t[r] = prefix + "_" + string(p)
	}
	return t
}

// New connects to RocketMQ with cfg and starts consuming.
func New(cfg config.RocketMQ, ageLimit time.Duration) (*Queue, error) {
	return NewWithOptions(cfg, Options{AgeLimit: ageLimit})
}

// NewWithOptions is New with every knob.
func NewWithOptions(cfg config.RocketMQ, o Options) (*Queue, error) {
	if len(cfg.NameServers) == 0 {
		return nil, errors.New("rocketmq: no name servers (queue.rocketmq.name_servers, HERALD_ROCKETMQ_NAMESRV)")
	}
	if cfg.Group == "" {
		return nil, errors.New("rocketmq: empty consumer group (queue.rocketmq.group)")
	}
	if cfg.TopicPrefix == "" {
		return nil, errors.New("rocketmq: empty topic prefix (queue.rocketmq.topic_prefix)")
	}
	q := newQueue(cfg.TopicPrefix, o)

	ns := primitive.NamesrvAddr(cfg.NameServers)
	popts := []producer.Option{
		producer.WithNameServer(ns),
		producer.WithGroupName(cfg.Group),
		producer.WithRetry(2),
	}
	copts := []consumer.Option{
		consumer.WithNameServer(ns),
		consumer.WithGroupName(cfg.Group),
		consumer.WithConsumerModel(consumer.Clustering),
		consumer.WithConsumeMessageBatchMaxSize(1),
		consumer.WithConsumeGoroutineNums(q.goroutines),
	}
	if cfg.AccessKey != "" {
		creds := primitive.Credentials{AccessKey: cfg.AccessKey, SecretKey: cfg.SecretKey}
		popts = append(popts, producer.WithCredentials(creds))
		copts = append(copts, consumer.WithCredentials(creds))
	}
	if o.InstanceName != "" {
		popts = append(popts, producer.WithInstanceName(o.InstanceName))
		copts = append(copts, consumer.WithInstance(o.InstanceName))
	}

	p, err := rmq.NewProducer(popts...)
	if err != nil {
		return nil, fmt.Errorf("rocketmq: new producer: %w", err)
	}
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("rocketmq: start producer: %w", err)
	}
	q.producer = p // before the consumer starts: callbacks re-send through it
	c, err := rmq.NewPushConsumer(copts...)
	if err != nil {
		_ = p.Shutdown()
		return nil, fmt.Errorf("rocketmq: new push consumer: %w", err)
	}
	q.consumer = c
	for r, topic := range q.topics {
		if err := c.Subscribe(topic, consumer.MessageSelector{}, q.consume(r)); err != nil {
			_ = p.Shutdown()
			return nil, fmt.Errorf("rocketmq: subscribe %s: %w", topic, err)
		}
	}
	if err := c.Start(); err != nil {
		_ = c.Shutdown()
		_ = p.Shutdown()
		return nil, fmt.Errorf("rocketmq: start consumer group %s on %v (do the topics exist?): %w", cfg.Group, q.topics, err)
	}
	return q, nil
}

// newQueue builds the queue around its buffers; the caller attaches the
// producer and consumer.
func newQueue(prefix string, o Options) *Queue {
	if o.AgeLimit <= 0 {
		o.AgeLimit = DefaultAgeLimit
	}
	if o.Visibility <= 0 {
		o.Visibility = DefaultVisibility
	}
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	return &Queue{
		topics:     Topics(prefix),
		vis:        o.Visibility,
		goroutines: o.Buffer + o.MaxInFlight,
		buf:        newBuffers(o.Buffer, o.AgeLimit),
		log:        slog.Default().With("component", "queue.rocketmq"),
		released:   make(chan struct{}),
	}
}

// Publish sends msgs to their lane topics, one batch request per lane. It
// validates the whole batch first (nothing is sent if a message has an
// empty id or an unknown priority). EnqueuedAt is set to now when zero. If
// a send fails after another lane's batch went out, those messages stay
// published; the outbox re-publishes the rest and consumers deduplicate.
func (q *Queue) Publish(ctx context.Context, msgs ...queue.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	for i := range msgs {
		if msgs[i].ID == "" {
			return fmt.Errorf("publish: message %d has an empty id", i)
		}
		if !msgs[i].Priority.Valid() {
			return fmt.Errorf("publish %s: invalid priority %q", msgs[i].ID, msgs[i].Priority)
		}
	}
	if q.closing.Load() {
		return queue.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now().Round(0)
	var lanes [3][]*primitive.Message
	for _, m := range msgs {
		if m.EnqueuedAt.IsZero() {
			m.EnqueuedAt = now
		}
		r := m.Priority.Rank()
		pm, err := encode(q.topics[r], m)
		if err != nil {
			return err
		}
		lanes[r] = append(lanes[r], pm)
	}
	for r, pms := range lanes {
		for len(pms) > 0 {
			n := min(len(pms), publishBatch)
			if err := q.send(ctx, pms[:n]...); err != nil {
				if q.closing.Load() {
					return queue.ErrClosed
				}
				return fmt.Errorf("publish to %s: %w", q.topics[r], err)
			}
			pms = pms[n:]
		}
	}
	return nil
}

func (q *Queue) send(ctx context.Context, pms ...*primitive.Message) error {
	res, err := q.producer.SendSync(ctx, pms...)
	if err != nil {
		return err
	}
	if res.Status != primitive.SendOK {
		return fmt.Errorf("send status %d: %s", res.Status, res.String())
	}
	return nil
}

// Receive returns the next message from the local buffers by priority and
// the ageing rule.
func (q *Queue) Receive(ctx context.Context) (queue.Lease, error) {
	it, err := q.buf.take(ctx)
	if err != nil {
		return nil, err
	}
	l := &lease{q: q, it: it, msg: it.msg}
	l.msg.Deliveries++
	l.timer = time.AfterFunc(q.vis, l.expire)
	return l, nil
}

// consume is the push-consumer callback for lane r.
func (q *Queue) consume(r int) func(context.Context, ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
	return func(ctx context.Context, exts ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		// The client hands over one message per call (ConsumeMessageBatchMaxSize 1);
		// a larger batch is handled in order, and retried whole if any part fails.
		for _, ext := range exts {
			if res := q.consumeOne(ctx, r, ext); res != consumer.ConsumeSuccess {
				return res, nil
			}
		}
		return consumer.ConsumeSuccess, nil
	}
}

func (q *Queue) consumeOne(ctx context.Context, r int, ext *primitive.MessageExt) consumer.ConsumeResult {
	arrived := time.Now()
	m, err := decode(ext)
	if err != nil {
		// A body that cannot be decoded can never be processed: drop it.
		q.log.Error("dropping undecodable message", "topic", q.topics[r], "msg_id", ext.MsgId, "err", err)
		return consumer.ConsumeSuccess
	}
	m.Priority = domain.Priorities[r]
	if nb := notBefore(ext); arrived.Before(nb) {
		// Back too early (a delay beyond the level table, a broker with a
		// shorter table, or clock skew): send it round again.
		return q.resend(ctx, r, m, nb.Sub(arrived))
	}
	it := &item{
		msg:    m,
		lane:   r,
		since:  enteredLane(ext, arrived),
		order:  ext.CommitLogOffset,
		settle: make(chan settlement, 1),
	}
	for {
		if !q.buf.put(it, q.released) {
			return consumer.ConsumeRetryLater // ignored: the consumer has stopped
		}
		var s settlement
		select {
		case s = <-it.settle:
		case <-q.released:
			return consumer.ConsumeRetryLater
		}
		it.msg.Deliveries++ // the delivery that was just settled
		switch {
		case s.kind == settleAck:
			return consumer.ConsumeSuccess
		case s.kind == settleNack && s.delay > 0:
			return q.resend(ctx, r, it.msg, s.delay)
		default: // Nack(0) or visibility timeout: hand it out again here
			it.since, it.order = time.Now(), 0
		}
	}
}

// resend re-publishes m on its lane after delay and acknowledges the
// original. If the send fails the broker's retry path takes over.
func (q *Queue) resend(ctx context.Context, r int, m queue.Message, delay time.Duration) consumer.ConsumeResult {
	pm, err := encodeRetry(q.topics[r], m, delay, time.Now())
	if err == nil {
		err = q.send(ctx, pm)
	}
	if err == nil {
		return consumer.ConsumeSuccess
	}
	q.log.Warn("re-send of delayed message failed; using the broker's retry topic", "id", m.ID, "topic", q.topics[r], "err", err)
	if cc, ok := primitive.GetConcurrentlyCtx(ctx); ok {
		cc.DelayLevelWhenNextConsume = max(1, DelayLevel(delay))
	}
	return consumer.ConsumeRetryLater
}

// Close stops consuming and publishing. Blocked Receive calls return
// queue.ErrClosed. Messages buffered or leased but not acked are not
// acknowledged: the consumer's committed offsets stop before them, so the
// group consumes them again (at least once). Close is idempotent.
func (q *Queue) Close() error {
	var err error
	q.closeOnce.Do(func() {
		q.closing.Store(true)
		q.buf.close()
		// Shut the consumer down before releasing the callbacks: it drops
		// its process queues first, so their results are ignored instead of
		// sending every unsettled message to the retry topic.
		err = q.consumer.Shutdown()
		close(q.released)
		if perr := q.producer.Shutdown(); err == nil {
			err = perr
		}
	})
	return err
}

// Depth reports how many messages of lane p wait in the local buffer.
func (q *Queue) Depth(p domain.Priority) int {
	if !p.Valid() {
		return 0
	}
	return q.buf.depth(p.Rank())
}

// lease is a received message; the consume callback holding it waits for
// its settlement.
type lease struct {
	q     *Queue
	it    *item
	msg   queue.Message
	timer *time.Timer
	state atomic.Uint32 // 0 open, 1 settled, 2 expired
}

// ErrLeaseExpired is returned when a lease is settled after its visibility
// timeout: the message has already been handed out again.
var ErrLeaseExpired = errors.New("rocketmq: lease expired before it was settled; the message was redelivered")

func (l *lease) Message() queue.Message { return l.msg }

func (l *lease) settle(s settlement) error {
	if l.q.closing.Load() {
		// The consumer is stopping or stopped: the settlement would not
		// reach the broker, and the group consumes the message again.
		return queue.ErrClosed
	}
	if !l.state.CompareAndSwap(0, 1) {
		if l.state.Load() == 2 {
			return ErrLeaseExpired
		}
		return nil // settled before: harmless
	}
	l.timer.Stop()
	l.it.settle <- s // room for one, and only this CAS winner sends
	return nil
}

func (l *lease) expire() {
	if l.state.CompareAndSwap(0, 2) {
		l.it.settle <- settlement{kind: settleExpired}
	}
}

// Ack acknowledges the message: its consume callback returns ConsumeSuccess.
func (l *lease) Ack(context.Context) error { return l.settle(settlement{kind: settleAck}) }

// Nack hands the message out again after delay (see the package comment).
func (l *lease) Nack(_ context.Context, delay time.Duration) error {
	return l.settle(settlement{kind: settleNack, delay: delay})
}

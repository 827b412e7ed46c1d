package rocketmq

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"

	"herald.dev/platform/config"
	"herald.dev/platform/domain"
	"herald.dev/platform/queue"
	"herald.dev/platform/queue/queuetest"
)

// fakeBroker stands in for the name server, the broker and the client's
// push machinery, so the queue's own logic (callbacks, leases, buffers,
// re-sends, not-before, retry fallback) runs without RocketMQ. It stores
// what the producer sends, honours delay levels with the real durations,
// and drives the consume callbacks the way the push consumer does: per
// topic, in store order, one goroutine per message within a per-topic
// budget, with ConsumeRetryLater sent round again after
// DelayLevelWhenNextConsume. Results that come back after Shutdown are
// ignored, as the client ignores results for dropped process queues.
type fakeBroker struct {
	q      *Queue
	lanes  map[string]chan *primitive.MessageExt
	budget int
	stop   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	offset  int64
	stopped bool

	sends       atomic.Int64 // successful sends
	failSends   atomic.Int32 // fail this many of the next sends
	retryLevels chan int     // levels of ConsumeRetryLater results
}

type fakeProducer struct {
	rmq.Producer // only the methods below are used
	b            *fakeBroker
}

type fakeConsumer struct {
	rmq.PushConsumer // only Shutdown is used
	b                *fakeBroker
}

func (p fakeProducer) Start() error    { return nil }
func (p fakeProducer) Shutdown() error { return nil }

func (p fakeProducer) SendSync(_ context.Context, msgs ...*primitive.Message) (*primitive.SendResult, error) {
	b := p.b
	if b.failSends.Load() > 0 && b.failSends.Add(-1) >= 0 {
		return nil, errors.New("fake broker: send refused")
	}
	for _, m := range msgs {
		if _, ok := b.lanes[m.Topic]; !ok {
			return nil, errors.New("fake broker: no route for topic " + m.Topic)
		}
	}
	for _, m := range msgs {
		var delay time.Duration
		if lv, _ := strconv.Atoi(m.GetProperty(primitive.PropertyDelayTimeLevel)); lv > 0 {
			delay = DelayLevels[min(lv, MaxDelayLevel)-1]
		}
		b.store(m.Topic, m.Body, m.GetProperties(), 0, delay)
	}
	b.sends.Add(int64(len(msgs)))
	return &primitive.SendResult{Status: primitive.SendOK}, nil
}

func (c fakeConsumer) Shutdown() error {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	if !c.b.stopped {
		c.b.stopped = true
		close(c.b.stop)
	}
	return nil
}

// loopback builds a Queue on a fake broker.
func loopback(t *testing.T, o Options) (*Queue, *fakeBroker) {
	t.Helper()
	q := newQueue("herald", o)
	b := &fakeBroker{
		q:           q,
		lanes:       map[string]chan *primitive.MessageExt{},
		budget:      q.goroutines,
		stop:        make(chan struct{}),
		retryLevels: make(chan int, 64),
	}
	for _, topic := range q.topics {
		b.lanes[topic] = make(chan *primitive.MessageExt, 1<<16)
	}
	q.producer, q.consumer = fakeProducer{b: b}, fakeConsumer{b: b}
	for r, topic := range q.topics {
		b.wg.Add(1)
		go b.dispatch(b.lanes[topic], q.consume(r))
	}
	t.Cleanup(func() {
		_ = q.Close()
		b.wg.Wait() // every callback returned: none is stuck after Close
	})
	return q, b
}

// store makes a message visible on its topic after delay, stamped with the
// store time and a commit-log offset like a broker does.
func (b *fakeBroker) store(topic string, body []byte, props map[string]string, reconsume int32, delay time.Duration) {
	put := func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.stopped {
			return
		}
		b.offset++
		ext := &primitive.MessageExt{Message: primitive.Message{Topic: topic, Body: body}}
		ext.WithProperties(props)
		ext.MsgId = "fake-" + strconv.FormatInt(b.offset, 10)
		ext.CommitLogOffset = b.offset
		ext.StoreTimestamp = time.Now().UnixMilli()
		ext.ReconsumeTimes = reconsume
		b.lanes[topic] <- ext
	}
	if delay > 0 {
		time.AfterFunc(delay, put)
		return
	}
	put()
}

func (b *fakeBroker) dispatch(lane chan *primitive.MessageExt, cb func(context.Context, ...*primitive.MessageExt) (consumer.ConsumeResult, error)) {
	defer b.wg.Done()
	sem := make(chan struct{}, b.budget)
	for {
		var ext *primitive.MessageExt
		select {
		case <-b.stop:
			return
		case ext = <-lane:
		}
		select {
		case <-b.stop:
			return
		case sem <- struct{}{}:
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer func() { <-sem }()
			cc := primitive.NewConsumeConcurrentlyContext()
			ctx := primitive.WithConcurrentlyCtx(context.Background(), cc)
			res, _ := cb(ctx, ext)
			b.mu.Lock()
			stopped := b.stopped
			b.mu.Unlock()
			if stopped || res == consumer.ConsumeSuccess {
				return
			}
			level := cc.DelayLevelWhenNextConsume
			if level <= 0 {
				level = 3 + int(ext.ReconsumeTimes)
			}
			select {
			case b.retryLevels <- level:
			default:
			}
			b.store(ext.Topic, ext.Body, ext.GetProperties(), ext.ReconsumeTimes+1, DelayLevels[min(level, MaxDelayLevel)-1])
		}()
	}
}

func TestLoopbackConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T, ageLimit time.Duration) queue.Queue {
		q, _ := loopback(t, Options{AgeLimit: ageLimit, Visibility: 300 * time.Millisecond})
		return q
	})
}

func receiveWithin(t *testing.T, q *Queue) queue.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	l, err := q.Receive(ctx)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return l
}

func TestNackFallsBackToBrokerRetry(t *testing.T) {
	q, b := loopback(t, Options{AgeLimit: time.Hour})
	ctx := context.Background()
	if err := q.Publish(ctx, queue.Message{ID: "ntf_1", AppID: "app", Priority: domain.PriorityMedium}); err != nil {
		t.Fatal(err)
	}
	l := receiveWithin(t, q)
	b.failSends.Store(1) // the re-send with a delay level fails
	start := time.Now()
	if err := l.Nack(ctx, 700*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	again := receiveWithin(t, q)
	if waited := time.Since(start); waited < 700*time.Millisecond {
		t.Fatalf("redelivered after %v, before the delay", waited)
	}
	if lv := <-b.retryLevels; lv != DelayLevel(700*time.Millisecond) {
		t.Fatalf("DelayLevelWhenNextConsume = %d, want %d", lv, DelayLevel(700*time.Millisecond))
	}
	if m := again.Message(); m.ID != "ntf_1" || m.Deliveries != 2 {
		t.Fatalf("redelivered %+v, want ntf_1 with Deliveries 2", m)
	}
	if err := again.Ack(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNackResendsWithDelayLevel(t *testing.T) {
	q, b := loopback(t, Options{AgeLimit: time.Hour})
	ctx := context.Background()
	if err := q.Publish(ctx, queue.Message{ID: "ntf_2", AppID: "app", Priority: domain.PriorityHigh}); err != nil {
		t.Fatal(err)
	}
	for want := 1; want <= 2; want++ {
		l := receiveWithin(t, q)
		if d := l.Message().Deliveries; d != want {
			t.Fatalf("Deliveries = %d, want %d", d, want)
		}
		if want == 2 {
			l.Ack(ctx)
			break
		}
		if err := l.Nack(ctx, 10*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.sends.Load(); n != 2 {
		t.Fatalf("%d sends, want 2 (the publish and the delayed copy)", n)
	}
	select {
	case lv := <-b.retryLevels:
		t.Fatalf("broker retry used (level %d); the copy should have been re-sent", lv)
	default:
	}
}

// A copy that comes back before its not-before time (a broker with a
// shorter delay table, a delay beyond 2 h, clock skew) is sent round again
// rather than handed out early.
func TestNotBeforeIsHonoured(t *testing.T) {
	q, b := loopback(t, Options{AgeLimit: time.Hour})
	const delay = 1300 * time.Millisecond
	start := time.Now()
	pm, err := encodeRetry(q.topics[1], queue.Message{ID: "ntf_3", Priority: domain.PriorityMedium, Deliveries: 1}, delay, start)
	if err != nil {
		t.Fatal(err)
	}
	pm.WithDelayTimeLevel(1) // 1 s: earlier than the not-before time
	if _, err := (fakeProducer{b: b}).SendSync(context.Background(), pm); err != nil {
		t.Fatal(err)
	}
	l := receiveWithin(t, q)
	if waited := time.Since(start); waited < delay {
		t.Fatalf("handed out after %v, before its not-before time (%v)", waited, delay)
	}
	if m := l.Message(); m.ID != "ntf_3" || m.Deliveries != 2 {
		t.Fatalf("got %+v", m)
	}
	if n := b.sends.Load(); n != 2 {
		t.Fatalf("%d sends, want 2 (the early copy went round once more)", n)
	}
	l.Ack(context.Background())
}

func TestUndecodableMessageIsDropped(t *testing.T) {
	q, b := loopback(t, Options{AgeLimit: time.Hour})
	ctx := context.Background()
	if _, err := (fakeProducer{b: b}).SendSync(ctx, primitive.NewMessage(q.topics[0], []byte("not json"))); err != nil {
		t.Fatal(err)
	}
	if err := q.Publish(ctx, queue.Message{ID: "ok", Priority: domain.PriorityHigh}); err != nil {
		t.Fatal(err)
	}
	l := receiveWithin(t, q)
	if l.Message().ID != "ok" {
		t.Fatalf("got %q", l.Message().ID)
	}
	l.Ack(ctx)
	select {
	case lv := <-b.retryLevels:
		t.Fatalf("undecodable message retried (level %d)", lv)
	default:
	}
}

func TestCloseReleasesCallbacks(t *testing.T) {
	q, _ := loopback(t, Options{AgeLimit: time.Hour, Buffer: 2})
	ctx := context.Background()
	var msgs []queue.Message
	for i := range 10 {
		msgs = append(msgs, queue.Message{ID: "m" + strconv.Itoa(i), Priority: domain.PriorityLow})
	}
	if err := q.Publish(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	l := receiveWithin(t, q) // leased and never settled; others wait in or for the buffer
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Ack(ctx); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("ack after close: %v, want queue.ErrClosed (the group will redeliver it)", err)
	}
	// The cleanup waits for every callback to return.
}

func TestNewRejectsIncompleteConfig(t *testing.T) {
	for name, o := range map[string]func(*config.RocketMQ){
		"no name servers": func(c *config.RocketMQ) { c.NameServers = nil },
		"no group":        func(c *config.RocketMQ) { c.Group = "" },
		"no topic prefix": func(c *config.RocketMQ) { c.TopicPrefix = "" },
	} {
		cfg := config.RocketMQ{NameServers: []string{"127.0.0.1:9876"}, Group: "g", TopicPrefix: "herald"}
		o(&cfg)
		if _, err := New(cfg, time.Second); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

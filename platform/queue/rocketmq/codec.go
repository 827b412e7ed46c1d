package rocketmq

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"herald.dev/platform/queue"
)

// propNotBefore is a user property carrying the earliest time (Unix ms) a
// nacked message may be handed to a consumer again.
const propNotBefore = "HERALD_NOT_BEFORE"

// encode builds the RocketMQ message for m on topic: the body is the JSON of
// queue.Message and the key is the notification id (so `mqadmin
// queryMsgByKey` finds it).
func encode(topic string, m queue.Message) (*primitive.Message, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode message %s: %w", m.ID, err)
	}
	return primitive.NewMessage(topic, body).WithKeys([]string{m.ID}), nil
}

// encodeRetry builds the re-sent copy of a nacked message: delivered after
// the broker delay level for delay, and not handed out before notBefore.
func encodeRetry(topic string, m queue.Message, delay time.Duration, now time.Time) (*primitive.Message, error) {
	pm, err := encode(topic, m)
	if err != nil {
		return nil, err
	}
	if level := DelayLevel(delay); level > 0 {
		pm.WithDelayTimeLevel(level)
	}
	pm.WithProperty(propNotBefore, strconv.FormatInt(now.Add(delay).UnixMilli(), 10))
	return pm, nil
}

// decode reads a received message. Deliveries in the result counts the
// deliveries before this one: the count carried in the body (re-sent
// copies) plus the broker's reconsume count (ConsumeRetryLater).
func decode(ext *primitive.MessageExt) (queue.Message, error) {
	var m queue.Message
	if err := json.Unmarshal(ext.Body, &m); err != nil {
		return m, fmt.Errorf("decode message %s: %w", ext.MsgId, err)
	}
	if m.ID == "" {
		return m, fmt.Errorf("decode message %s: empty notification id", ext.MsgId)
	}
	m.Deliveries += int(ext.ReconsumeTimes)
	return m, nil
}

// notBefore returns the earliest hand-out time recorded on ext (zero if
// none).
func notBefore(ext *primitive.MessageExt) time.Time {
	v := ext.GetProperty(propNotBefore)
	if v == "" {
		return time.Time{}
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// enteredLane is when ext became visible on its topic: the broker's store
// time (a delayed message is stored again when its delay expires), but never
// later than the local arrival time, so a broker clock ahead of ours cannot
// postpone ageing.
func enteredLane(ext *primitive.MessageExt, arrived time.Time) time.Time {
	if ext.StoreTimestamp > 0 {
		if st := time.UnixMilli(ext.StoreTimestamp); st.Before(arrived) {
			return st
		}
	}
	return arrived
}

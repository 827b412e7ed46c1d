package rocketmq

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"herald.dev/platform/domain"
	"herald.dev/platform/queue"
)

// received turns a sent message into what a consumer would see.
func received(pm *primitive.Message, reconsume int32, stored time.Time) *primitive.MessageExt {
	ext := &primitive.MessageExt{Message: primitive.Message{Topic: pm.Topic, Body: pm.Body}}
	ext.WithProperties(pm.GetProperties())
	ext.MsgId = "MSG1"
	ext.ReconsumeTimes = reconsume
	ext.StoreTimestamp = stored.UnixMilli()
	return ext
}

func TestEncodeDecode(t *testing.T) {
	m := queue.Message{
		ID: "ntf_01J", AppID: "app_1", Priority: domain.PriorityLow,
		EnqueuedAt: time.Date(2024, 1, 2, 3, 4, 5, 600_000_000, time.UTC), Deliveries: 2,
	}
	pm, err := encode("herald_low", m)
	if err != nil {
		t.Fatal(err)
	}
	if pm.Topic != "herald_low" || pm.GetKeys() != "ntf_01J" {
		t.Fatalf("topic %q keys %q, want herald_low and the notification id", pm.Topic, pm.GetKeys())
	}
	var body map[string]any
	if err := json.Unmarshal(pm.Body, &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": "ntf_01J", "app_id": "app_1", "priority": "low", "enqueued_at": "2024-01-02T03:04:05.6Z", "deliveries": 2.0}
	for k, v := range want {
		if body[k] != v {
			t.Fatalf("body[%s] = %v, want %v (body %s)", k, body[k], v, pm.Body)
		}
	}
	if pm.GetProperty(primitive.PropertyDelayTimeLevel) != "" || pm.GetProperty(propNotBefore) != "" {
		t.Fatal("a fresh message must carry no delay")
	}

	got, err := decode(received(pm, 3, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	want2 := m
	want2.Deliveries = 2 + 3 // body count plus the broker's reconsume count
	if got.ID != want2.ID || got.AppID != want2.AppID || got.Priority != want2.Priority ||
		!got.EnqueuedAt.Equal(want2.EnqueuedAt) || got.Deliveries != want2.Deliveries {
		t.Fatalf("decoded %+v, want %+v", got, want2)
	}
}

func TestDecodeRejects(t *testing.T) {
	for name, body := range map[string]string{
		"not json":   "hello",
		"no id":      `{"app_id":"a","priority":"high"}`,
		"wrong type": `{"id":42}`,
	} {
		ext := &primitive.MessageExt{Message: primitive.Message{Body: []byte(body)}, MsgId: "M"}
		if _, err := decode(ext); err == nil {
			t.Errorf("%s: decode succeeded", name)
		}
	}
}

func TestEncodeRetry(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	m := queue.Message{ID: "ntf_2", Priority: domain.PriorityHigh, Deliveries: 1}
	pm, err := encodeRetry("herald_high", m, 45*time.Second, now)
	if err != nil {
		t.Fatal(err)
	}
	if lv := pm.GetProperty(primitive.PropertyDelayTimeLevel); lv != "5" {
		t.Fatalf("delay level %q, want 5 (1m, the first level >= 45s)", lv)
	}
	if pm.GetKeys() != "ntf_2" {
		t.Fatalf("keys %q", pm.GetKeys())
	}
	ext := received(pm, 0, now)
	if nb := notBefore(ext); !nb.Equal(now.Add(45 * time.Second)) {
		t.Fatalf("not-before %v, want %v", nb, now.Add(45*time.Second))
	}
	got, err := decode(ext)
	if err != nil || got.Deliveries != 1 {
		t.Fatalf("decode = %+v, %v; want the delivery count carried in the body", got, err)
	}

	ext.WithProperty(propNotBefore, "garbage")
	if nb := notBefore(ext); !nb.IsZero() {
		t.Fatalf("garbage not-before parsed as %v", nb)
	}
	if nb := notBefore(&primitive.MessageExt{}); !nb.IsZero() {
		t.Fatal("missing not-before must be zero")
	}
}

func TestEnteredLane(t *testing.T) {
	arrived := time.UnixMilli(1_700_000_000_000)
	for _, tc := range []struct {
		name   string
		stored int64
		want   time.Time
	}{
		{"store time when earlier", arrived.Add(-3 * time.Second).UnixMilli(), arrived.Add(-3 * time.Second)},
		{"arrival when the broker clock is ahead", arrived.Add(time.Second).UnixMilli(), arrived},
		{"arrival without a store time", 0, arrived},
	} {
		ext := &primitive.MessageExt{StoreTimestamp: tc.stored}
		if got := enteredLane(ext, arrived); !got.Equal(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestReceiverOutage: a webhook receiver that answers 500, then times out,
// then answers 429 with Retry-After, gets everything once it recovers; a
// permanently refusing address ends as failed with the reason, not retried.
func TestReceiverOutage(t *testing.T) {
	recv := startReceiver(t)
	cfg := testConfig(t, "")
	cfg.Webhook.Timeout = 300 * time.Millisecond
	cfg.Outbound.MaxAttempts = 30
	h := startHerald(t, cfg)
	recv.setSecret(h.secret)

	var mode atomic.Value
	mode.Store("500")
	var refused, throttled, timedOut, failed500 atomic.Int64
	recv.mu.Lock()
	recv.respond = func(hk hook) (int, http.Header) {
		if hk.UserID == "gone" {
			refused.Add(1)
			return 410, nil
		}
		switch mode.Load().(string) {
		case "500":
			failed500.Add(1)
			return 500, nil
		case "timeout":
			timedOut.Add(1)
			time.Sleep(500 * time.Millisecond)
			return 200, nil // too late: Herald gave up on this attempt
		case "429":
			throttled.Add(1)
			return 429, http.Header{"Retry-After": []string{"1"}}
		}
		return 200, nil
	}
	recv.mu.Unlock()

	for _, u := range []string{"u1", "u2", "u3", "gone"} {
		st, m := call(t, h.base, h.key, "PUT", "/v1/users/"+u, map[string]any{"name": u, "webhook_url": recv.URL + "/" + u})
		must(t, st, m, 200, 201)
	}
	var ids []string
	for i := 0; i < 15; i++ {
		st, m := call(t, h.base, h.key, "POST", "/v1/notifications", map[string]any{
			"content":    map[string]any{"*": map[string]any{"title": fmt.Sprintf("n%d", i), "body": "outage"}},
			"recipients": []any{map[string]any{"user_id": fmt.Sprintf("u%d", i%3+1)}},
			"channels":   []string{"webhook"},
		})
		must(t, st, m, 202)
		ids = append(ids, m["id"].(string))
	}
	st, m := call(t, h.base, h.key, "POST", "/v1/notifications", map[string]any{
		"content": map[string]any{"*": map[string]any{"title": "x", "body": "y"}}, "recipients": []any{map[string]any{"user_id": "gone"}}, "channels": []string{"webhook"},
	})
	must(t, st, m, 202)
	goneID := m["id"].(string)

	eventually(t, 10*time.Second, "500s to be seen", func() bool { return failed500.Load() > 5 })
	mode.Store("timeout")
	eventually(t, 10*time.Second, "timeouts to be seen", func() bool { return timedOut.Load() > 0 })
	mode.Store("429")
	eventually(t, 10*time.Second, "429s to be seen", func() bool { return throttled.Load() > 0 })
	time.Sleep(300 * time.Millisecond)
	mode.Store("ok")

	eventually(t, 60*time.Second, "every notification at the recovered receiver", func() bool { return recv.count() == len(ids) })
	for _, id := range ids {
		eventually(t, 10*time.Second, "delivery recorded as sent", func() bool {
			_, m := call(t, h.base, h.key, "GET", "/v1/notifications/"+id, nil)
			ds, _ := m["deliveries"].([]any)
			return len(ds) == 1 && ds[0].(map[string]any)["status"] == "sent"
		})
	}
	_, m = call(t, h.base, h.key, "GET", "/v1/notifications/"+ids[0], nil)
	d := m["deliveries"].([]any)[0].(map[string]any)
	if d["attempts"].(float64) < 2 {
		t.Fatalf("first notification was not retried: %v", d)
	}

	eventually(t, 10*time.Second, "the refused delivery to fail", func() bool {
		_, m = call(t, h.base, h.key, "GET", "/v1/notifications/"+goneID, nil)
		ds, _ := m["deliveries"].([]any)
		return len(ds) == 1 && ds[0].(map[string]any)["status"] == "failed"
	})
	d = m["deliveries"].([]any)[0].(map[string]any)
	if d["attempts"].(float64) != 1 || !strings.Contains(fmt.Sprint(d["error"]), "410") {
		t.Fatalf("permanent failure: %v", d)
	}
	if refused.Load() != 1 {
		t.Fatalf("a permanent failure was retried: %d requests", refused.Load())
	}
}

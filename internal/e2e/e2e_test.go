package e2e

import (
	"encoding/json"
	"fmt"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"herald.dev/platform/sqldb/sqldbtest"
)

// TestEndToEnd: an app, a template, a user with an email address and a
// webhook; one send; the email arrives at a real SMTP server, the webhook
// receives a correctly signed POST, the in-app item appears in the inbox and
// on an open WebSocket, and the query API shows every delivery as sent.
func TestEndToEnd(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { endToEnd(t, "") })
	t.Run("mysql", func(t *testing.T) { endToEnd(t, sqldbtest.MySQLURL(t)) })
}

func endToEnd(t *testing.T, dbURL string) {
	smtpAddr, sink := startSMTP(t)
	recv := startReceiver(t)
	cfg := testConfig(t, dbURL)
	host, port, _ := strings.Cut(smtpAddr, ":")
	cfg.SMTP.Host = host
	fmt.Sscan(port, &cfg.SMTP.Port)
	h := startHerald(t, cfg)
	recv.setSecret(h.secret)

	st, m := call(t, h.base, h.key, "POST", "/v1/templates", map[string]any{
		"code": "order_shipped", "name": "Order shipped", "category": "orders",
		"variants": map[string]any{
			"email":   map[string]any{"subject": "订单 {{.order}} 已发货", "text": "Hi {{.name}}, order {{.order}} shipped.", "html": "<p>Hi {{.name}}, order <b>{{.order}}</b> shipped.</p>"},
			"inapp":   map[string]any{"title": "Order {{.order}} shipped", "body": "Track it with {{.carrier}}."},
			"webhook": map[string]any{"body": "order {{.order}} shipped"},
		},
	})
	must(t, st, m, 201)
	st, m = call(t, h.base, h.key, "PUT", "/v1/users/ada", map[string]any{
		"name": "Ada", "email": "ada@example.com", "timezone": "Asia/Shanghai", "locale": "zh-CN", "webhook_url": recv.URL + "/hook",
	})
	must(t, st, m, 200, 201)

	// live connection first
	st, m = call(t, h.base, h.key, "POST", "/v1/users/ada/tokens", nil)
	must(t, st, m, 200, 201)
	wsURL := strings.Replace(h.base, "http://", "ws://", 1) + "/v1/ws?token=" + m["token"].(string)
	conn, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	defer conn.Close()
	frames := make(chan map[string]any, 16)
	go func() {
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				close(frames)
				return
			}
			var f map[string]any
			if json.Unmarshal(b, &f) == nil {
				frames <- f
			}
		}
	}()

	st, m = call(t, h.base, h.key, "POST", "/v1/notifications", map[string]any{
		"template": "order_shipped", "data": map[string]any{"name": "Ada", "order": "A-1001", "carrier": "SF Express"},
		"recipients": []any{map[string]any{"user_id": "ada"}}, "channels": []string{"email", "webhook", "inapp"},
		"priority": "high", "kind": "reminder", "category": "orders",
	})
	must(t, st, m, 202)
	if m["status"] != "accepted" {
		t.Fatalf("answer %v", m)
	}
	id := m["id"].(string)

	// email at the SMTP server
	select {
	case got := <-sink.ch:
		if len(got.To) != 1 || got.To[0] != "ada@example.com" {
			t.Fatalf("mail to %v", got.To)
		}
		msg, err := mail.ReadMessage(strings.NewReader(string(got.Data)))
		if err != nil {
			t.Fatal(err)
		}
		subject, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		if subject != "订单 A-1001 已发货" {
			t.Fatalf("subject %q", subject)
		}
		mt, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
		if mt != "multipart/alternative" {
			t.Fatalf("content type %s", mt)
		}
		mr := multipart.NewReader(msg.Body, params["boundary"])
		var types []string
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			types = append(types, strings.Split(p.Header.Get("Content-Type"), ";")[0])
		}
		if strings.Join(types, ",") != "text/plain,text/html" {
			t.Fatalf("parts %v", types)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no email arrived")
	}

	// signed webhook
	eventually(t, 15*time.Second, "the webhook", func() bool { return recv.count() == 1 })
	recv.mu.Lock()
	hk := recv.hooks[0]
	bad := recv.badSig
	recv.mu.Unlock()
	if bad != 0 || hk.NotificationID != id || hk.UserID != "ada" || !strings.HasPrefix(hk.DeliveryID, "dlv_") {
		t.Fatalf("webhook %+v (bad signatures %d)", hk, bad)
	}

	// live push
	select {
	case f, ok := <-frames:
		if !ok {
			t.Fatal("websocket closed")
		}
		item, _ := f["item"].(map[string]any)
		if f["type"] != "item" || item["title"] != "Order A-1001 shipped" || item["notification_id"] != id {
			t.Fatalf("frame %v", f)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no websocket frame")
	}

	// inbox
	st, m = call(t, h.base, h.key, "GET", "/v1/users/ada/inbox", nil)
	must(t, st, m, 200)
	items, _ := m["items"].([]any)
	if len(items) != 1 || items[0].(map[string]any)["body"] != "Track it with SF Express." || items[0].(map[string]any)["state"] != "unread" {
		t.Fatalf("inbox %v", m)
	}

	// query: every delivery sent with timestamps
	eventually(t, 15*time.Second, "all deliveries final", func() bool {
		_, m = call(t, h.base, h.key, "GET", "/v1/notifications/"+id, nil)
		ds, _ := m["deliveries"].([]any)
		if len(ds) != 3 {
			return false
		}
		for _, d := range ds {
			s := d.(map[string]any)["status"]
			if s != "sent" && s != "delivered" {
				return false
			}
		}
		return true
	})
	for _, d := range m["deliveries"].([]any) {
		dm := d.(map[string]any)
		if dm["sent_at"] == nil || dm["created_at"] == nil || dm["user_id"] != "ada" {
			t.Fatalf("delivery without timestamps: %v", dm)
		}
	}
	if m["priority"] != "high" || m["template_version"] == nil {
		t.Fatalf("notification %v", m)
	}
}

package services_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/messages"
	"herald.dev/platform/queue"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
	"herald.dev/services/notify"
)

func welcome(extra map[string]any) map[string]any {
	body := map[string]any{
		"template":   "welcome",
		"data":       map[string]any{"name": "Ada", "order": 9007199254740993},
		"recipients": []any{map[string]any{"user_id": "u1"}, map[string]any{"email": "ada@example.com"}, map[string]any{"phone": "+8613800138000"}},
		"channels":   []string{"inapp", "email"},
	}
	for k, v := range extra {
		if v == nil {
			delete(body, k)
		} else {
			body[k] = v
		}
	}
	return body
}

func TestSendAcceptThenPublish(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		// The lane must only ever see committed rows: Publish looks the row up.
		var checked sync.WaitGroup
		checked.Add(1)
		e.q.setCheck(func(m queue.Message) {
			defer checked.Done()
			n, err := e.store.Load(context.Background(), m.ID)
			if err != nil {
				t.Errorf("published %s before it was committed: %v", m.ID, err)
				return
			}
			if n.Status != domain.MessageAccepted || m.AppID != e.appA || m.Priority != domain.PriorityHigh {
				t.Errorf("published %+v for row %+v", m, n)
			}
		})
		before := time.Now()
		id, status := e.send(welcome(map[string]any{"priority": "high", "category": "", "meta": map[string]string{"order": "42"}}))
		checked.Wait()
		if status != "accepted" || !strings.HasPrefix(id, "ntf_") {
			t.Fatalf("answer %s %s", id, status)
		}
		if got := e.q.published(); len(got) != 1 || got[0].ID != id {
			t.Fatalf("published %+v", got)
		}
		n, err := e.store.Get(context.Background(), e.appA, id)
		if err != nil {
			t.Fatal(err)
		}
		if n.TemplateCode != "welcome" || n.TemplateVersion != 3 || n.Category != "account" || n.Kind != domain.KindNotice {
			t.Fatalf("stored %+v", n)
		}
		if d := n.NextAt.Sub(before); d < 29*time.Second || d > 31*time.Second+time.Since(before) {
			t.Fatalf("next_at %v is not accept time + 30s (accepted at ~%v)", n.NextAt, before)
		}
		var payload string
		if err := db.R.QueryRow(`SELECT payload FROM notifications WHERE id = ?`, id).Scan(&payload); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(payload, `"order":9007199254740993`) {
			t.Fatalf("large number lost precision: %s", payload)
		}
		if n.Payload.Meta["order"] != "42" || len(n.Payload.Recipients) != 3 {
			t.Fatalf("payload %+v", n.Payload)
		}
		if got := e.tr.types(id); !slices.Equal(got, []string{contracts.EventAccepted}) {
			t.Fatalf("events %v", got)
		}
	})
}

func TestSendScheduledAndExpiry(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		sendAt := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Millisecond)
		expires := sendAt.Add(24 * time.Hour)
		id, status := e.send(map[string]any{
			"content":    map[string]any{"*": map[string]any{"title": "Exam", "body": "Room 101"}},
			"recipients": []any{map[string]any{"group_id": "class-1"}},
			"kind":       "todo", "todo_key": "exam-42", "locale": "zh-CN", "fallback": []string{"sms"},
			"send_at": sendAt.Format(time.RFC3339Nano), "expires_at": expires.Format(time.RFC3339),
		})
		if status != "scheduled" {
			t.Fatalf("status %s, want scheduled", status)
		}
		if got := e.q.published(); len(got) != 0 {
			t.Fatalf("a scheduled send was published: %+v", got)
		}
		n, err := e.store.Get(context.Background(), e.appA, id)
		if err != nil {
			t.Fatal(err)
		}
		if n.Status != domain.MessageScheduled || !n.SendAt.Equal(sendAt) || !n.NextAt.Equal(sendAt) || !n.ExpiresAt.Equal(expires.Truncate(time.Second)) {
			t.Fatalf("stored status %s send_at %v next_at %v expires_at %v", n.Status, n.SendAt, n.NextAt, n.ExpiresAt)
		}
		if n.Kind != domain.KindTodo || n.Payload.TodoKey != "exam-42" || n.Payload.Locale != "zh-CN" || n.Payload.Content["*"].Title != "Exam" ||
			!slices.Equal(n.Payload.Fallback, []domain.Channel{domain.ChannelSMS}) {
			t.Fatalf("stored %+v", n)
		}
		if got := e.tr.types(id); !slices.Equal(got, []string{contracts.EventAccepted, contracts.EventScheduled}) {
			t.Fatalf("events %v", got)
		}
		// send_at in the past is an immediate send.
		_, status = e.send(welcome(map[string]any{"send_at": time.Now().Add(-time.Minute).Format(time.RFC3339)}))
		if status != "accepted" {
			t.Fatalf("past send_at: status %s", status)
		}
	})
}

func TestSendPublishFailureKeepsOutbox(t *testing.T) {
	e := newEnv(t, sqldbtest.SQLite(t))
	e.q.setErr(queue.ErrFull)
	id, status := e.send(welcome(nil))
	if status != "accepted" {
		t.Fatalf("status %s", status)
	}
	n, err := e.store.Get(context.Background(), e.appA, id)
	if err != nil {
		t.Fatal(err)
	}
	if n.Status != domain.MessageAccepted || n.NextAt.IsZero() {
		t.Fatalf("row %s next_at %v: the sweeper would not find it", n.Status, n.NextAt)
	}
	due, err := e.store.Due(context.Background(), time.Now().Add(31*time.Second), 10, domain.MessageAccepted)
	if err != nil || len(due) != 1 || due[0].ID != id {
		t.Fatalf("due = %v, %v", due, err)
	}
}

func TestSendValidation(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		past := time.Now().Add(-time.Hour).Format(time.RFC3339)
		soon := time.Now().Add(time.Hour).Format(time.RFC3339)
		later := time.Now().Add(2 * time.Hour).Format(time.RFC3339)
		many := make([]any, 1001)
		for i := range many {
			many[i] = map[string]any{"user_id": fmt.Sprint("u", i)}
		}
		cases := []struct {
			name    string
			body    any
			headers []string
			status  int
			fields  []string
			reason  string
		}{
			{"malformed json", `{"template":`, nil, 400, nil, ""},
			{"empty body", ``, nil, 400, nil, ""},
			{"not an object", `[1,2]`, nil, 422, []string{"(body)"}, ""},
			{"unknown field", welcome(map[string]any{"bogus": 1}), nil, 422, []string{"bogus"}, ""},
			{"oversized body", oversized{welcome(map[string]any{"data": map[string]any{"name": strings.Repeat("x", testBodyLimit)}})}, nil, 413, nil, ""},
			{"wrong type", welcome(map[string]any{"recipients": "u1"}), nil, 422, []string{"recipients"}, ""},
			{"bad priority", welcome(map[string]any{"priority": "urgent"}), nil, 422, []string{"priority"}, ""},
			{"bad kind", welcome(map[string]any{"kind": "memo"}), nil, 422, []string{"kind"}, ""},
			{"bad channel", welcome(map[string]any{"channels": []string{"inapp", "pigeon"}}), nil, 422, []string{"channels[1]"}, ""},
			{"bad fallback", welcome(map[string]any{"fallback": []string{"fax"}}), nil, 422, []string{"fallback[0]"}, ""},
			{"template and content", welcome(map[string]any{"content": map[string]any{"*": map[string]any{"text": "hi"}}}), nil, 422, []string{"content"}, ""},
			{"neither template nor content", welcome(map[string]any{"template": nil}), nil, 422, []string{"template"}, ""},
			{"content for unknown channel", welcome(map[string]any{"template": nil, "content": map[string]any{"pigeon": map[string]any{"text": "hi"}}}), nil, 422, []string{"content.pigeon"}, ""},
			{"empty content", welcome(map[string]any{"template": nil, "content": map[string]any{"*": map[string]any{}}}), nil, 422, []string{"content.*"}, ""},
			{"todo without key", welcome(map[string]any{"kind": "todo"}), nil, 422, []string{"todo_key"}, ""},
			{"todo key on a notice", welcome(map[string]any{"todo_key": "k"}), nil, 422, []string{"todo_key"}, ""},
			{"bad email", welcome(map[string]any{"recipients": []any{map[string]any{"email": "ada@"}}}), nil, 422, []string{"recipients[0].email"}, ""},
			{"bad phone", welcome(map[string]any{"recipients": []any{map[string]any{"user_id": "u1"}, map[string]any{"phone": "13800138000"}}}), nil, 422, []string{"recipients[1].phone"}, ""},
			{"two fields in a recipient", welcome(map[string]any{"recipients": []any{map[string]any{"user_id": "u1", "email": "a@b.co"}}}), nil, 422, []string{"recipients[0]"}, ""},
			{"empty recipient", welcome(map[string]any{"recipients": []any{map[string]any{}}}), nil, 422, []string{"recipients[0]"}, ""},
			{"no recipients", welcome(map[string]any{"recipients": []any{}}), nil, 422, []string{"recipients"}, ""},
			{"too many recipients", welcome(map[string]any{"recipients": many}), nil, 422, []string{"recipients"}, "at most 1000"},
			{"expires in the past", welcome(map[string]any{"expires_at": past}), nil, 422, []string{"expires_at"}, "future"},
			{"expires before send", welcome(map[string]any{"send_at": later, "expires_at": soon}), nil, 422, []string{"expires_at"}, "after send_at"},
			{"bad send_at", welcome(map[string]any{"send_at": "tomorrow"}), nil, 422, []string{"send_at"}, "RFC 3339"},
			{"bad locale", welcome(map[string]any{"locale": "zh CN"}), nil, 422, []string{"locale"}, ""},
			{"several bad fields", welcome(map[string]any{"priority": "x", "kind": "y"}), nil, 422, []string{"priority", "kind"}, ""},
			{"unknown template", welcome(map[string]any{"template": "nope"}), nil, 422, []string{"template"}, "unknown template"},
			{"missing variable", welcome(map[string]any{"data": map[string]any{"other": 1}}), nil, 422, []string{"data"}, "name"},
			{"long idempotency key", welcome(nil), []string{"Idempotency-Key", strings.Repeat("k", 256)}, 422, []string{"Idempotency-Key"}, ""},
			{"wrong content type", welcome(nil), []string{"Content-Type", "text/plain"}, 415, nil, ""},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do("POST", "/v1/notifications", e.keyA, tc.body, tc.headers...)
				if r.status != tc.status {
					t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
				}
				p := r.problem(t)
				var named []string
				for _, fe := range p.Errors {
					named = append(named, fe.Field)
					if tc.reason != "" && !strings.Contains(fe.Reason, tc.reason) {
						t.Errorf("reason %q does not mention %q", fe.Reason, tc.reason)
					}
				}
				for _, f := range tc.fields {
					if !slices.Contains(named, f) {
						t.Fatalf("field %q not named in %+v", f, p.Errors)
					}
				}
			})
		}
		if n := e.countNotifications(); n != 0 {
			t.Fatalf("%d notifications stored by invalid requests", n)
		}
		if got := e.q.published(); len(got) != 0 {
			t.Fatalf("invalid requests published %+v", got)
		}
		if r := e.do("POST", "/v1/notifications", "", welcome(nil)); r.status != http.StatusUnauthorized {
			t.Fatalf("no key: %d", r.status)
		}
	})
}

func TestSendIdempotency(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		body := welcome(nil)
		first := e.do("POST", "/v1/notifications", e.keyA, body, "Idempotency-Key", "order-1")
		var a struct{ ID, Status string }
		first.json(t, &a)
		if first.status != 202 || first.header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("first: %d %v", first.status, first.header)
		}
		// The same request, formatted differently, replays the first answer.
		again := e.do("POST", "/v1/notifications", e.keyA, `{ "channels":["inapp","email"], "template":"welcome",
			"recipients":[{"user_id":"u1"},{"email":"ada@example.com"},{"phone":"+8613800138000"}],
			"data":{"order":9007199254740993,"name":"Ada"} }`, "Idempotency-Key", "order-1")
		var b struct{ ID, Status string }
		again.json(t, &b)
		if again.status != 202 || b.ID != a.ID || b.Status != a.Status || again.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay: %d %s %v, want %s", again.status, again.body, again.header, a.ID)
		}
		conflict := e.do("POST", "/v1/notifications", e.keyA, welcome(map[string]any{"priority": "low"}), "Idempotency-Key", "order-1")
		if conflict.status != 409 || conflict.problem(t).Code != "conflict" {
			t.Fatalf("conflict: %d %s", conflict.status, conflict.body)
		}
		// Another app has its own key space.
		if r := e.do("POST", "/v1/notifications", e.keyB, welcome(nil), "Idempotency-Key", "order-1"); r.status != 202 || r.header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("app B: %d %v", r.status, r.header)
		}
		if got := len(e.q.published()); got != 2 {
			t.Fatalf("%d publishes, want 2 (replays are not published)", got)
		}

		// A scheduled send replays as scheduled.
		sched := welcome(map[string]any{"send_at": time.Now().Add(time.Hour).Format(time.RFC3339)})
		_, st1 := e.send(sched, "Idempotency-Key", "sched-1")
		_, st2 := e.send(sched, "Idempotency-Key", "sched-1")
		if st1 != "scheduled" || st2 != "scheduled" {
			t.Fatalf("scheduled replay: %s then %s", st1, st2)
		}

		// Concurrent requests with one key make one notification.
		before := e.countNotifications()
		const n = 16
		idsSeen := make([]string, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				r := e.do("POST", "/v1/notifications", e.keyA, body, "Idempotency-Key", "burst")
				var out struct{ ID string }
				if r.status != 202 {
					t.Errorf("burst %d: %d %s", i, r.status, r.body)
					return
				}
				r.json(t, &out)
				idsSeen[i] = out.ID
			}(i)
		}
		wg.Wait()
		for _, id := range idsSeen {
			if id != idsSeen[0] {
				t.Fatalf("concurrent same-key requests answered different ids: %v", idsSeen)
			}
		}
		if got := e.countNotifications() - before; got != 1 {
			t.Fatalf("%d notifications for one key", got)
		}
	})
}

func TestQueryAndResend(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		ctx := context.Background()
		id1, _ := e.send(welcome(map[string]any{"priority": "high"}))
		id2, _ := e.send(map[string]any{"template": "plain", "category": "billing", "recipients": []any{map[string]any{"user_id": "u2"}}})
		id3, _ := e.send(map[string]any{"template": "plain", "category": "billing", "recipients": []any{map[string]any{"user_id": "u2"}}, "priority": "low"})
		now := time.Now()
		ds := []*messages.Delivery{
			{AppID: e.appA, NotificationID: id1, Recipient: "u1", UserID: "u1", Channel: domain.ChannelInApp, Address: "u1", Status: domain.DeliveryDelivered, Attempts: 1, SentAt: now},
			{AppID: e.appA, NotificationID: id1, Recipient: "email:ada@example.com", Channel: domain.ChannelEmail, Address: "ada@example.com", Status: domain.DeliveryFailed, Attempts: 8, Error: "550 mailbox unavailable"},
			{AppID: e.appA, NotificationID: id2, Recipient: "u2", UserID: "u2", Channel: domain.ChannelEmail, Status: domain.DeliverySent, Attempts: 1},
		}
		if err := e.store.SaveDeliveries(ctx, ds); err != nil {
			t.Fatal(err)
		}

		var got notify.NotificationView
		r := e.do("GET", "/v1/notifications/"+id1, e.keyA, nil)
		if r.status != 200 {
			t.Fatalf("get: %d %s", r.status, r.body)
		}
		r.json(t, &got)
		if got.ID != id1 || got.Status != domain.MessageAccepted || got.Priority != domain.PriorityHigh || got.Template != "welcome" ||
			got.TemplateVersion != 3 || got.Data["name"] != "Ada" || len(got.Recipients) != 3 || got.Deliveries == nil || len(*got.Deliveries) != 2 {
			t.Fatalf("get: %s", r.body)
		}
		if _, err := time.Parse(time.RFC3339, got.CreatedAt); err != nil || got.DispatchedAt != "" || got.SendAt != "" {
			t.Fatalf("times: created %q dispatched %q send %q", got.CreatedAt, got.DispatchedAt, got.SendAt)
		}
		var failed notify.DeliveryView
		for _, d := range *got.Deliveries {
			if d.Status == domain.DeliveryFailed {
				failed = d
			}
		}
		if failed.Error != "550 mailbox unavailable" || failed.Attempts != 8 || failed.Channel != domain.ChannelEmail || failed.SentAt != "" {
			t.Fatalf("failed delivery view %+v", failed)
		}
		if r := e.do("GET", "/v1/notifications/"+id1, e.keyB, nil); r.status != 404 || r.problem(t).Code != "not_found" {
			t.Fatalf("app B reads app A's notification: %d", r.status)
		}

		list := func(key, q string) (notify.ListResponse, response) {
			r := e.do("GET", "/v1/notifications"+q, key, nil)
			var out notify.ListResponse
			if r.status == 200 {
				r.json(t, &out)
			}
			return out, r
		}
		ids := func(l notify.ListResponse) []string {
			var out []string
			for _, n := range l.Items {
				if n.Deliveries != nil {
					t.Fatalf("list items carry deliveries")
				}
				out = append(out, n.ID)
			}
			return out
		}
		for _, tc := range []struct {
			q    string
			want []string
		}{
			{"", []string{id3, id2, id1}},
			{"?category=billing", []string{id3, id2}},
			{"?priority=high", []string{id1}},
			{"?user_id=u2", []string{id2}},
			{"?channel=email", []string{id2, id1}},
			{"?user_id=u1&channel=inapp", []string{id1}},
			{"?status=done", nil},
			{"?from=" + now.Add(-time.Hour).UTC().Format(time.RFC3339) + "&to=" + now.Add(time.Hour).UTC().Format(time.RFC3339), []string{id3, id2, id1}},
		} {
			l, r := list(e.keyA, tc.q)
			if r.status != 200 || !slices.Equal(ids(l), tc.want) {
				t.Fatalf("list %q = %d %v, want %v", tc.q, r.status, ids(l), tc.want)
			}
		}
		page1, _ := list(e.keyA, "?limit=2")
		if len(page1.Items) != 2 || page1.NextCursor != id2 {
			t.Fatalf("page 1: %v next %q", ids(page1), page1.NextCursor)
		}
		page2, _ := list(e.keyA, "?limit=2&cursor="+page1.NextCursor)
		if !slices.Equal(ids(page2), []string{id1}) || page2.NextCursor != "" {
			t.Fatalf("page 2: %v next %q", ids(page2), page2.NextCursor)
		}
		if l, _ := list(e.keyB, ""); len(l.Items) != 0 {
			t.Fatalf("app B lists app A's notifications: %v", ids(l))
		}
		for q, field := range map[string]string{"?status=lost": "status", "?priority=urgent": "priority", "?channel=pigeon": "channel",
			"?from=yesterday": "from", "?limit=0": "limit", "?limit=x": "limit", "?stauts=done": "stauts"} {
			_, r := list(e.keyA, q)
			if r.status != 422 || len(r.problem(t).Errors) == 0 || r.problem(t).Errors[0].Field != field {
				t.Fatalf("list %q: %d %s, want 422 naming %s", q, r.status, r.body, field)
			}
		}

		// Resend: app B cannot, nothing-failed is a conflict, a failure is reset and republished.
		if r := e.do("POST", "/v1/notifications/"+id1+"/resend", e.keyB, nil); r.status != 404 {
			t.Fatalf("app B resend: %d", r.status)
		}
		if r := e.do("POST", "/v1/notifications/"+id2+"/resend", e.keyA, nil); r.status != 409 {
			t.Fatalf("resend without failures: %d %s", r.status, r.body)
		}
		published := len(e.q.published())
		r = e.do("POST", "/v1/notifications/"+id1+"/resend", e.keyA, nil)
		var rs struct {
			ID     string
			Resent int
		}
		r.json(t, &rs)
		if r.status != 202 || rs.ID != id1 || rs.Resent != 1 {
			t.Fatalf("resend: %d %s", r.status, r.body)
		}
		pub := e.q.published()
		if len(pub) != published+1 || pub[len(pub)-1].ID != id1 || pub[len(pub)-1].Priority != domain.PriorityHigh {
			t.Fatalf("resend published %+v", pub)
		}
		dl, err := e.store.DeliveriesOfApp(ctx, e.appA, id1)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dl {
			if d.Channel == domain.ChannelEmail && (d.Status != domain.DeliveryPending || d.Attempts != 0) {
				t.Fatalf("failed delivery not reset: %+v", d)
			}
		}
		if n, _ := e.store.Get(ctx, e.appA, id1); n.Status != domain.MessageProcessing {
			t.Fatalf("notification status %s after resend", n.Status)
		}
		if r := e.do("POST", "/v1/notifications/"+id1+"/resend", e.keyA, nil); r.status != 409 {
			t.Fatalf("second resend: %d", r.status)
		}
		if r := e.do("GET", "/v1/notifications/ntf_nope", e.keyA, nil); r.status != 404 {
			t.Fatalf("unknown id: %d", r.status)
		}
	})
}

// TestListWithoutUserIndex: with the per-user delivery index off, a user
// filter is a 422 naming user_id; the other filters still answer.
func TestListWithoutUserIndex(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		if err := e.store.SetUserIndex(context.Background(), false); err != nil {
			t.Fatal(err)
		}
		r := e.do("GET", "/v1/notifications?user_id=u1", e.keyA, nil)
		if r.status != 422 {
			t.Fatalf("list by user without the index: %d %s, want 422", r.status, r.body)
		}
		if p := r.problem(t); len(p.Errors) != 1 || p.Errors[0].Field != "user_id" || !strings.Contains(p.Errors[0].Reason, "user_index") {
			t.Fatalf("problem %+v, want one error naming user_id and the setting", p)
		}
		if r := e.do("GET", "/v1/notifications?channel=email", e.keyA, nil); r.status != 200 {
			t.Fatalf("list by channel without the index: %d %s", r.status, r.body)
		}
	})
}

package otp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/auth"
	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
	"herald.dev/platform/messages"
	"herald.dev/platform/queue"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
	"herald.dev/services/otp"
)

type fakeQueue struct {
	mu  sync.Mutex
	got []queue.Message
}

func (q *fakeQueue) Publish(_ context.Context, msgs ...queue.Message) error {
	q.mu.Lock()
	q.got = append(q.got, msgs...)
	q.mu.Unlock()
	return nil
}
func (q *fakeQueue) Receive(ctx context.Context) (queue.Lease, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (q *fakeQueue) Close() error { return nil }

type env struct {
	app        *fiber.App
	keyA, keyB string
	store      *messages.Store
	queue      *fakeQueue
	now        *time.Time
}

func setup(t *testing.T, db *sqldb.DB, o otp.Options) *env {
	ctx := context.Background()
	as := auth.NewStore(db, 0)
	_, keyA, _ := as.CreateApp(ctx, "a")
	_, keyB, _ := as.CreateApp(ctx, "b")
	st := messages.New(db, messages.Options{})
	t.Cleanup(st.Close)
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	e := &env{keyA: keyA, keyB: keyB, store: st, queue: &fakeQueue{}, now: &now}
	o.Now = func() time.Time { return *e.now }
	svc, err := otp.New(otp.Deps{DB: db, Store: st, Queue: e.queue, Secret: []byte(strings.Repeat("s", 32))}, o)
	if err != nil {
		t.Fatal(err)
	}
	e.app = httpx.NewApp(0, nil)
	svc.Mount(e.app.Group("/v1", auth.Middleware(as)))
	return e
}

func (e *env) do(t *testing.T, key, path, body string) (int, map[string]any, string) {
	t.Helper()
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m, resp.Header.Get("Retry-After")
}

// code reads the code the pipeline would deliver, from the stored payload.
func (e *env) code(t *testing.T, notifID string) string {
	t.Helper()
	n, err := e.store.Load(context.Background(), notifID)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := n.Payload.Data["code"].(string)
	return c
}

func TestOTP(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := setup(t, db, otp.Options{})
		status, sent, _ := e.do(t, e.keyA, "/v1/otp", `{"phone":"+8613800138000","purpose":"login"}`)
		if status != 202 {
			t.Fatalf("send: %d %v", status, sent)
		}
		notifID := sent["notification_id"].(string)
		n, err := e.store.Load(context.Background(), notifID)
		if err != nil {
			t.Fatal(err)
		}
		if n.Priority != domain.PriorityHigh || len(n.Payload.Channels) != 1 || n.Payload.Channels[0] != domain.ChannelSMS || len(n.Payload.Fallback) != 0 {
			t.Fatalf("otp notification: priority %s channels %v fallback %v", n.Priority, n.Payload.Channels, n.Payload.Fallback)
		}
		if len(e.queue.got) != 1 || e.queue.got[0].Priority != domain.PriorityHigh {
			t.Fatalf("published %v", e.queue.got)
		}
		code := e.code(t, notifID)
		if len(code) != 6 {
			t.Fatalf("code %q", code)
		}
		var stored []byte
		if err := db.R.QueryRow(`SELECT code_hash FROM otp_codes WHERE id = ?`, sent["id"]).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(stored), code) || len(stored) != 32 {
			t.Fatal("code not stored as a hash")
		}

		// cooldown
		if status, _, ra := e.do(t, e.keyA, "/v1/otp", `{"phone":"+8613800138000","purpose":"login"}`); status != 429 || ra == "" {
			t.Fatalf("resend inside cooldown: %d retry-after %q", status, ra)
		}
		// other app cannot verify it
		if status, _, _ := e.do(t, e.keyB, "/v1/otp/verify", fmt.Sprintf(`{"id":%q,"code":%q}`, sent["id"], code)); status != 404 {
			t.Fatalf("other app verify: %d", status)
		}
		// wrong code, then the right one
		wrong := "000000"
		if code == wrong {
			wrong = "111111"
		}
		status, p, _ := e.do(t, e.keyA, "/v1/otp/verify", `{"phone":"+8613800138000","purpose":"login","code":"`+wrong+`"}`)
		if status != 422 || p["code"] != "otp_invalid" {
			t.Fatalf("wrong code: %d %v", status, p)
		}
		if status, p, _ := e.do(t, e.keyA, "/v1/otp/verify", `{"phone":"+8613800138000","purpose":"login","code":"`+code+`"}`); status != 200 || p["verified"] != true {
			t.Fatalf("right code: %d %v", status, p)
		}
		// single use, and the payload no longer holds the code
		if status, p, _ := e.do(t, e.keyA, "/v1/otp/verify", `{"phone":"+8613800138000","purpose":"login","code":"`+code+`"}`); status != 422 || p["code"] != "otp_used" {
			t.Fatalf("reuse: %d %v", status, p)
		}
		if c := e.code(t, notifID); c != "" {
			t.Fatalf("payload still holds the code %q after use", c)
		}

		// brute force: the attempt limit kills the code, even for the right guess afterwards
		*e.now = e.now.Add(2 * time.Minute)
		_, sent2, _ := e.do(t, e.keyA, "/v1/otp", `{"email":"a@example.com"}`)
		code2 := e.code(t, sent2["notification_id"].(string))
		for i := 0; i < 5; i++ {
			guess := fmt.Sprintf("%06d", i)
			if guess == code2 {
				guess = "999999x"
			}
			e.do(t, e.keyA, "/v1/otp/verify", `{"email":"a@example.com","code":"`+guess+`"}`)
		}
		if status, p, _ := e.do(t, e.keyA, "/v1/otp/verify", `{"email":"a@example.com","code":"`+code2+`"}`); status != 429 || p["code"] != "otp_locked" {
			t.Fatalf("after 5 wrong attempts: %d %v", status, p)
		}

		// expiry
		_, sent3, _ := e.do(t, e.keyA, "/v1/otp", `{"user_id":"u1","ttl":"2m"}`)
		code3 := e.code(t, sent3["notification_id"].(string))
		*e.now = e.now.Add(3 * time.Minute)
		if status, p, _ := e.do(t, e.keyA, "/v1/otp/verify", `{"user_id":"u1","code":"`+code3+`"}`); status != 422 || p["code"] != "otp_expired" {
			t.Fatalf("expired: %d %v", status, p)
		}
	})
}

func TestLimitsAndValidation(t *testing.T) {
	db := sqldbtest.SQLite(t)
	e := setup(t, db, otp.Options{PerHour: 3, Cooldown: time.Second, AppRate: 1000, AppBurst: 1000})
	for i := 0; i < 3; i++ {
		if status, p, _ := e.do(t, e.keyA, "/v1/otp", `{"phone":"+15550001111"}`); status != 202 {
			t.Fatalf("send %d: %d %v", i, status, p)
		}
		*e.now = e.now.Add(2 * time.Second)
	}
	if status, p, ra := e.do(t, e.keyA, "/v1/otp", `{"phone":"+15550001111"}`); status != 429 || ra == "" || p["code"] != "rate_limited" {
		t.Fatalf("hourly cap: %d %v", status, p)
	}

	e2 := setup(t, sqldbtest.SQLite(t), otp.Options{AppRate: 1, AppBurst: 2})
	codes := []int{}
	for i := 0; i < 3; i++ {
		status, _, _ := e2.do(t, e2.keyA, "/v1/otp", fmt.Sprintf(`{"phone":"+1555000%04d"}`, i))
		codes = append(codes, status)
	}
	if codes[0] != 202 || codes[1] != 202 || codes[2] != 429 {
		t.Fatalf("per-app limit: %v", codes)
	}

	for _, tc := range []struct{ body, field string }{
		{`{"phone":"+15550001111","email":"a@b.co"}`, "user_id"},
		{`{}`, "user_id"},
		{`{"phone":"12345"}`, "phone"},
		{`{"email":"nope"}`, "email"},
		{`{"phone":"+15550001112","channel":"wechat"}`, "channel"},
		{`{"phone":"+15550001113","channel":"email"}`, "channel"},
		{`{"phone":"+15550001114","ttl":"2h"}`, "ttl"},
		{`{"phone":"+15550001115","length":2}`, "length"},
		{`{"phone":"+15550001116","bogus":1}`, "bogus"},
	} {
		status, p, _ := e.do(t, e.keyA, "/v1/otp", tc.body)
		errs, _ := p["errors"].([]any)
		if status != 422 || len(errs) == 0 || errs[0].(map[string]any)["field"] != tc.field {
			t.Errorf("%s: %d %v, want 422 naming %s", tc.body, status, p, tc.field)
		}
	}
	var n int
	db.R.QueryRow(`SELECT COUNT(*) FROM otp_codes`).Scan(&n)
	if n != 3 {
		t.Fatalf("bad requests wrote codes: %d rows", n)
	}
}

package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald.dev/adapters/adaptertest"
	"herald.dev/adapters/registry"
	"herald.dev/platform/auth"
	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

const secret = "whsec_test_secret"

type fakeApps struct {
	mu    sync.Mutex
	apps  map[string]auth.App
	calls atomic.Int32
	err   error
	block chan struct{}
}

func (f *fakeApps) GetApp(ctx context.Context, id string) (auth.App, error) {
	f.calls.Add(1)
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return auth.App{}, f.err
	}
	a, ok := f.apps[id]
	if !ok {
		return auth.App{}, auth.ErrNotFound
	}
	return a, nil
}

func (f *fakeApps) set(id, url, secret string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.apps == nil {
		f.apps = map[string]auth.App{}
	}
	f.apps[id] = auth.App{ID: id, Settings: auth.AppSettings{WebhookURL: url, WebhookSecret: secret}}
}

// receiver is a webhook endpoint that checks what Herald promises.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	seen   adaptertest.Log
	fail   adaptertest.Failer
	gate   adaptertest.Gate
	mu     sync.Mutex
	last   *http.Request
	body   []byte
	status int           // answer with this status when set
	header http.Header   // extra response headers
	delay  time.Duration // delay before answering
	now    func() time.Time
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, now: time.Now}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	rc.gate.Wait(r.Context())
	if r.Context().Err() != nil {
		return
	}
	rc.mu.Lock()
	rc.last, rc.body = r, body
	status, hdr, delay, now := rc.status, rc.header, rc.delay, rc.now
	rc.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if rc.fail.Take() {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	for k, v := range hdr {
		w.Header()[k] = v
	}
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "want POST application/json", 400)
		return
	}
	if err := verifyAt(now(), secret, r.Header.Get(HeaderTimestamp), body, r.Header.Get(HeaderSignature), 5*time.Minute); err != nil {
		http.Error(w, err.Error(), 401)
		return
	}
	var p Payload
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	if p.ID != r.Header.Get(HeaderDeliveryID) {
		http.Error(w, "body id and header differ", 400)
		return
	}
	rc.seen.Add(p.ID)
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) set(status int, hdr http.Header) {
	rc.mu.Lock()
	rc.status, rc.header = status, hdr
	rc.mu.Unlock()
}

func build(t *testing.T, cfg config.Webhook, apps registry.AppLookup) *Adapter {
	t.Helper()
	c := config.Defaults()
	c.Webhook = cfg
	senders, err := registry.Build(registry.Deps{Config: c, Apps: apps}, domain.ChannelWebhook)
	if err != nil {
		t.Fatal(err)
	}
	a := senders[domain.ChannelWebhook].(*Adapter)
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{
		Channel: domain.ChannelWebhook,
		Setup: func(t *testing.T) *adaptertest.Env {
			rc := newReceiver(t)
			apps := &fakeApps{}
			apps.set("app_conformance", rc.srv.URL+"/hook", secret)
			a := build(t, config.Webhook{Timeout: 10 * time.Second, AllowPrivate: true}, apps)
			return &adaptertest.Env{
				Sender:     a,
				Address:    func(d *contracts.Delivery) { d.Address = "" }, // the app's URL
				Seen:       rc.seen.IDs,
				FailNext:   rc.fail.Arm,
				BadAddress: func(d *contracts.Delivery) { d.Address = "ftp://" + rc.srv.Listener.Addr().String() + "/hook" },
				Stall:      rc.gate.Arm,
			}
		},
	})
}

func TestFactoryNeedsApps(t *testing.T) {
	_, err := registry.Build(registry.Deps{Config: config.Defaults()}, domain.ChannelWebhook)
	if !errors.Is(err, registry.ErrNotConfigured) {
		t.Fatalf("err = %v, want ErrNotConfigured", err)
	}
}

func TestRequest(t *testing.T) {
	rc := newReceiver(t)
	apps := &fakeApps{}
	apps.set("app1", rc.srv.URL+"/app-hook", secret)
	fixed := time.Unix(1_700_000_000, 0)
	rc.now = func() time.Time { return fixed }
	a := New(config.Webhook{AllowPrivate: true}, apps, func() time.Time { return fixed })
	created := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
	d := &contracts.Delivery{ID: "dlv_1", AppID: "app1", NotificationID: "ntf_1", UserID: "u1", Channel: domain.ChannelWebhook,
		Address: rc.srv.URL + "/user-hook?token=abc", Priority: domain.PriorityHigh, Kind: domain.KindTodo, Category: "approval",
		TodoKey: "leave-7", Attempt: 3, CreatedAt: created,
		Content: domain.Content{Subject: "审批 <请求>", Text: "text & more", URL: "https://example.com/x"},
		Data:    map[string]any{"amount": 12.5}}
	if _, err := a.Send(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	req, body := rc.last, rc.body
	rc.mu.Unlock()
	if req.URL.Path != "/user-hook" || req.URL.Query().Get("token") != "abc" {
		t.Fatalf("posted to %s, want the user's URL", req.URL)
	}
	for k, want := range map[string]string{
		HeaderDeliveryID: "dlv_1",
		HeaderTimestamp:  "1700000000",
		HeaderAttempt:    "3",
		HeaderSignature:  Sign(secret, 1_700_000_000, body),
		"Content-Type":   "application/json",
	} {
		if got := req.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": "dlv_1", "notification_id": "ntf_1", "app_id": "app1", "user_id": "u1", "channel": "webhook",
		"kind": "todo", "category": "approval", "priority": "high", "title": "审批 <请求>", "body": "text & more", "text": "text & more",
		"url": "https://example.com/x", "todo_key": "leave-7", "data": map[string]any{"amount": 12.5}, "created_at": "2025-03-01T08:00:00Z"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("body = %v\nwant   %v", got, want)
	}
	if !strings.Contains(string(body), "<请求>") {
		t.Errorf("HTML characters escaped in %s", body)
	}

	// Without a user URL the app's URL is used; a retry carries the same id.
	d.Address = ""
	d.Attempt = 4
	if _, err := a.Send(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	req = rc.last
	rc.mu.Unlock()
	if req.URL.Path != "/app-hook" || req.Header.Get(HeaderDeliveryID) != "dlv_1" {
		t.Fatalf("retry went to %s with id %q", req.URL, req.Header.Get(HeaderDeliveryID))
	}
}

func TestClassification(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name       string
		status     int
		header     http.Header
		address    string // "" = the receiver; "-" = none configured
		retry      bool
		retryAfter time.Duration
		reason     string
	}{
		{"503 retryable", 503, nil, "", true, 0, "server error 503"},
		{"500 retryable", 500, nil, "", true, 0, "server error 500"},
		{"503 with Retry-After", 503, http.Header{"Retry-After": {"7"}}, "", true, 7 * time.Second, "server error"},
		{"429 seconds", 429, http.Header{"Retry-After": {"120"}}, "", true, 2 * time.Minute, "rate limited"},
		{"429 without Retry-After", 429, nil, "", true, 0, "rate limited"},
		{"408 retryable", 408, nil, "", true, 0, "request timeout"},
		{"400 permanent", 400, nil, "", false, 0, "rejected (400)"},
		{"401 permanent", 401, nil, "", false, 0, "rejected (401)"},
		{"404 permanent", 404, nil, "", false, 0, "rejected (404)"},
		{"410 permanent", 410, nil, "", false, 0, "rejected (410)"},
		{"redirect permanent", 302, http.Header{"Location": {"/elsewhere"}}, "", false, 0, "redirected (302)"},
		{"ftp URL permanent", 0, nil, "ftp://example.com/x", false, 0, "invalid webhook URL"},
		{"file URL permanent", 0, nil, "file:///etc/passwd", false, 0, "invalid webhook URL"},
		{"relative URL permanent", 0, nil, "/just/a/path", false, 0, "invalid webhook URL"},
		{"no URL permanent", 0, nil, "-", false, 0, "no webhook URL configured"},
		{"connection refused retryable", 0, nil, "http://127.0.0.1:1/hook", true, 0, "connection failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t)
			rc.set(tt.status, tt.header)
			apps := &fakeApps{}
			appURL := rc.srv.URL
			if tt.address == "-" {
				appURL = ""
			}
			apps.set("app1", appURL, secret)
			a := New(config.Webhook{AllowPrivate: true}, apps, func() time.Time { return now })
			d := &contracts.Delivery{ID: "dlv_c", AppID: "app1"}
			if tt.address != "-" {
				d.Address = tt.address
			}
			_, err := a.Send(context.Background(), d)
			var se *contracts.SendError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v (%T), want *contracts.SendError", err, err)
			}
			if se.Retryable != tt.retry || se.RetryAfter != tt.retryAfter || !strings.Contains(se.Reason, tt.reason) {
				t.Fatalf("got retry=%v after=%s reason=%q (%v), want %v %s %q", se.Retryable, se.RetryAfter, se.Reason, err, tt.retry, tt.retryAfter, tt.reason)
			}
		})
	}
}

func TestStatusErrorCarriesBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "signature rejected by receiver", 401)
	}))
	defer srv.Close()
	apps := &fakeApps{}
	apps.set("app1", srv.URL+"/hook?token=secret-token", secret)
	_, err := New(config.Webhook{AllowPrivate: true}, apps, nil).Send(context.Background(), &contracts.Delivery{ID: "d", AppID: "app1"})
	var st *StatusError
	if !errors.As(err, &st) || st.Status != 401 || !strings.Contains(st.Body, "signature rejected") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "secret-token") {
		t.Fatalf("error leaks the URL query: %v", err)
	}
}

func TestTimeoutRetryable(t *testing.T) {
	rc := newReceiver(t)
	rc.mu.Lock()
	rc.delay = 5 * time.Second
	rc.mu.Unlock()
	apps := &fakeApps{}
	apps.set("app1", rc.srv.URL, secret)
	a := New(config.Webhook{Timeout: 50 * time.Millisecond, AllowPrivate: true}, apps, nil)
	_, err := a.Send(context.Background(), &contracts.Delivery{ID: "d", AppID: "app1"})
	var se *contracts.SendError
	if !errors.As(err, &se) || !se.Retryable || se.Reason != "webhook timed out" {
		t.Fatalf("err = %v, want retryable timeout", err)
	}
	if errors.Is(err, context.Canceled) {
		t.Fatal("a timeout must not look like a cancellation")
	}
}

func TestPrivateDestinationRefused(t *testing.T) {
	rc := newReceiver(t)
	port := rc.srv.Listener.Addr().(interface{ String() string }).String()
	_, p, _ := strings.Cut(port, ":")
	apps := &fakeApps{}
	apps.set("app1", "", secret)
	a := New(config.Webhook{AllowPrivate: false}, apps, nil)
	defer a.Close()
	for _, target := range []string{
		rc.srv.URL + "/hook",                 // 127.0.0.1 literal
		"http://localhost:" + p + "/hook",    // resolved at dial time
		"http://[::ffff:127.0.0.1]:" + p,     // IPv4-mapped loopback
		"http://0.0.0.0:" + p + "/hook",      // "this host"
		"http://169.254.169.254/latest/meta", // cloud metadata
	} {
		t.Run(target, func(t *testing.T) {
			_, err := a.Send(context.Background(), &contracts.Delivery{ID: "dlv_ssrf", AppID: "app1", Address: target})
			if !errors.Is(err, ErrDestinationNotAllowed) {
				t.Fatalf("err = %v, want ErrDestinationNotAllowed", err)
			}
			if retry, _ := contracts.Classify(err); retry {
				t.Fatalf("refused destination classified retryable: %v", err)
			}
		})
	}
	if got := rc.seen.IDs(); len(got) != 0 {
		t.Fatalf("receiver was reached: %v", got)
	}
}

func TestPublicAddr(t *testing.T) {
	tests := []struct {
		ip   string
		want bool
	}{
		{"8.8.8.8", true},
		{"93.184.216.34", true},
		{"2606:4700:4700::1111", true},
		{"127.0.0.1", false},
		{"127.1.2.3", false},
		{"::1", false},
		{"10.0.0.1", false},
		{"172.16.5.4", false},
		{"172.31.255.255", false},
		{"172.32.0.1", true},
		{"192.168.1.1", false},
		{"169.254.169.254", false},
		{"100.64.0.1", false},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"255.255.255.255", false},
		{"224.0.0.1", false},
		{"198.18.0.1", false},
		{"fe80::1", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"ff02::1", false},
		{"::", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.1.1.1", false},
		{"::ffff:8.8.8.8", true},
		{"64:ff9b::a00:1", false},  // NAT64 of 10.0.0.1
		{"64:ff9b::808:808", true}, // NAT64 of 8.8.8.8
		{"2002:7f00:1::1", false},  // 6to4 of 127.0.0.1
		{"2002:808:808::1", true},  // 6to4 of 8.8.8.8
		{"2001:db8::1", false},
		{"fe80::1%eth0", false},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			if got := PublicAddr(netip.MustParseAddr(tt.ip)); got != tt.want {
				t.Fatalf("PublicAddr(%s) = %v, want %v", tt.ip, got, tt.want)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"30", 30 * time.Second},
		{" 5 ", 5 * time.Second},
		{"0", 0},
		{"-3", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"Wed, 01 Jan 2025 12:02:00 GMT", 2 * time.Minute},
		{"99999999", 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := ParseRetryAfter(tt.in, now); got != tt.want {
				t.Fatalf("ParseRetryAfter(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestAppCache(t *testing.T) {
	rc := newReceiver(t)
	apps := &fakeApps{}
	apps.set("app1", rc.srv.URL, secret)
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	rc.now = clock
	a := New(config.Webhook{AllowPrivate: true}, apps, clock)
	send := func() {
		t.Helper()
		if _, err := a.Send(context.Background(), &contracts.Delivery{ID: "d", AppID: "app1"}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() { defer wg.Done(); send() }()
	}
	wg.Wait()
	if n := apps.calls.Load(); n != 1 {
		t.Fatalf("GetApp called %d times for 20 sends, want 1", n)
	}
	mu.Lock()
	now = now.Add(AppCacheTTL + time.Second)
	mu.Unlock()
	send()
	if n := apps.calls.Load(); n != 2 {
		t.Fatalf("GetApp called %d times after expiry, want 2", n)
	}

	// lookup errors: not found is permanent, other failures retryable and not cached
	tests := []struct {
		name  string
		app   string
		err   error
		retry bool
	}{
		{"unknown app", "nope", nil, false},
		{"store down", "app2", errors.New("db down"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			apps.mu.Lock()
			apps.err = tt.err
			apps.mu.Unlock()
			defer func() { apps.mu.Lock(); apps.err = nil; apps.mu.Unlock() }()
			_, err := a.Send(context.Background(), &contracts.Delivery{ID: "d", AppID: tt.app})
			var se *contracts.SendError
			if !errors.As(err, &se) || se.Retryable != tt.retry {
				t.Fatalf("err = %v, want retry=%v", err, tt.retry)
			}
		})
	}
	apps.set("app2", rc.srv.URL, secret)
	before := apps.calls.Load()
	if _, err := a.Send(context.Background(), &contracts.Delivery{ID: "d", AppID: "app2"}); err != nil {
		t.Fatalf("failed lookup was cached: %v", err)
	}
	if apps.calls.Load() != before+1 {
		t.Fatal("expected a fresh lookup after a failed one")
	}
}

func TestUnsignedWhenNoSecret(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	defer srv.Close()
	apps := &fakeApps{}
	apps.set("app1", srv.URL, "")
	if _, err := New(config.Webhook{AllowPrivate: true}, apps, nil).Send(context.Background(), &contracts.Delivery{ID: "d", AppID: "app1"}); err != nil {
		t.Fatal(err)
	}
	if got.Get(HeaderSignature) != "" || got.Get(HeaderDeliveryID) != "d" {
		t.Fatalf("headers = %v", got)
	}
}

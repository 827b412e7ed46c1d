package wechat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald.dev/adapters/adaptertest"
	"herald.dev/adapters/protect"
	"herald.dev/adapters/providers/vendor"
	"herald.dev/adapters/registry"
	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

const openid = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"

// fakeWeChat mimics api.weixin.qq.com: it issues tokens, accepts only the
// current one and records each accepted message's client_msg_id.
type fakeWeChat struct {
	*httptest.Server
	t         *testing.T
	mu        sync.Mutex
	valid     string
	fetches   atomic.Int32
	tokenGate chan struct{} // when set, token requests wait for it
	log       adaptertest.Log
	msgs      []Message
	fail      adaptertest.Failer
	gate      adaptertest.Gate
	sendErr   atomic.Int32 // errcode to answer sends with (0 = ok)
	tokenErr  atomic.Int32
	sendCalls atomic.Int32
}

func newFake(t *testing.T) *fakeWeChat {
	f := &fakeWeChat{t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cgi-bin/token", func(w http.ResponseWriter, r *http.Request) {
		if g := f.tokenGate; g != nil {
			<-g
		}
		q := r.URL.Query()
		if q.Get("grant_type") != "client_credential" || q.Get("appid") != "wx-app" || q.Get("secret") != "wx-secret" || len(q) != 3 {
			fmt.Fprint(w, `{"errcode":40125,"errmsg":"invalid appsecret"}`)
			return
		}
		if code := f.tokenErr.Load(); code != 0 {
			fmt.Fprintf(w, `{"errcode":%d,"errmsg":"refused"}`, code)
			return
		}
		n := f.fetches.Add(1)
		tok := fmt.Sprintf("ACCESS_TOKEN_%d", n)
		f.mu.Lock()
		f.valid = tok
		f.mu.Unlock()
		fmt.Fprintf(w, `{"access_token":%q,"expires_in":7200}`, tok)
	})
	mux.HandleFunc("POST /cgi-bin/message/template/send", func(w http.ResponseWriter, r *http.Request) {
		f.sendCalls.Add(1)
		f.gate.Wait(r.Context())
		if f.fail.Take() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		f.mu.Lock()
		valid := f.valid
		f.mu.Unlock()
		if q := r.URL.Query(); len(q) != 1 || q.Get("access_token") != valid {
			fmt.Fprint(w, `{"errcode":42001,"errmsg":"access_token expired rid: 1"}`)
			return
		}
		var m Message
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			t.Errorf("body: %v", err)
		}
		if code := f.sendErr.Load(); code != 0 {
			fmt.Fprintf(w, `{"errcode":%d,"errmsg":"refused"}`, code)
			return
		}
		f.mu.Lock()
		f.msgs = append(f.msgs, m)
		f.mu.Unlock()
		f.log.Add(m.ClientMsgID)
		fmt.Fprint(w, `{"errcode":0,"errmsg":"ok","msgid":200228332}`)
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

// expire makes the server reject the current token (as after a refresh
// elsewhere, or its 7200 s running out).
func (f *fakeWeChat) expire() { f.mu.Lock(); f.valid = "none"; f.mu.Unlock() }

func settings(f *fakeWeChat) map[string]string {
	return map[string]string{"type": Type, "app_id": "wx-app", "app_secret": "wx-secret", "template_id": "TPL_DEFAULT", "endpoint": f.URL, "rate": "0"}
}

func newSender(t *testing.T, f *fakeWeChat) contracts.Sender {
	t.Helper()
	cfg := config.Defaults()
	cfg.Providers = map[string]map[string]string{"oa": settings(f)}
	tr := &http.Transport{MaxConnsPerHost: 64, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	s, err := vendor.NewRouter(domain.ChannelWeChat, registry.Deps{Config: cfg, HTTPClient: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, vendor.RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func delivery(id string) *contracts.Delivery {
	return &contracts.Delivery{ID: id, AppID: "app1", Channel: domain.ChannelWeChat, Address: openid,
		Content: domain.Content{VendorTemplate: "ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY", URL: "https://example.com/order/1",
			Params: map[string]string{"keyword1": "巧克力", "keyword2": "39.8元"}}}
}

func TestSendRequestShape(t *testing.T) {
	f := newFake(t)
	res, err := newSender(t, f).Send(context.Background(), delivery("dlv_1"))
	if err != nil {
		t.Fatal(err)
	}
	if res.ProviderID != "oa/200228332" {
		t.Fatalf("ProviderID %q", res.ProviderID)
	}
	want := Message{ToUser: openid, TemplateID: "ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY", URL: "https://example.com/order/1",
		Data: map[string]map[string]string{"keyword1": {"value": "巧克力"}, "keyword2": {"value": "39.8元"}}, ClientMsgID: "dlv_1"}
	if got := f.msgs[0]; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("message %+v\nwant %+v", got, want)
	}
}

func TestTextWithoutParams(t *testing.T) {
	f := newFake(t)
	c, err := NewClient(vendor.Provider{Type: Type, Settings: map[string]string{"app_id": "wx-app", "app_secret": "wx-secret", "template_id": "T", "title_key": "first", "endpoint": f.URL}}, vendor.Env{HTTP: f.Client()})
	if err != nil {
		t.Fatal(err)
	}
	d := delivery("d")
	d.Content = domain.Content{Subject: "Order shipped", Text: "Your order A-1 is on its way"}
	if _, err := c.Send(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	got := f.msgs[0]
	if got.TemplateID != "T" || got.Data["content"]["value"] != "Your order A-1 is on its way" || got.Data["first"]["value"] != "Order shipped" || got.URL != "" {
		t.Fatalf("message %+v", got)
	}
}

func TestThousandConcurrentSendsFetchOneToken(t *testing.T) {
	f := newFake(t)
	f.tokenGate = make(chan struct{})
	s := newSender(t, f)
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Send(context.Background(), delivery(fmt.Sprint("c", i))); err != nil {
				errs <- err
			}
		}()
	}
	close(f.tokenGate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := f.fetches.Load(); got != 1 {
		t.Fatalf("%d token fetches for %d concurrent sends, want 1", got, n)
	}
	if got := len(f.log.IDs()); got != n {
		t.Fatalf("%d messages delivered, want %d", got, n)
	}
}

func TestExpiredTokenRefreshedOnceAndRetried(t *testing.T) {
	f := newFake(t)
	s := newSender(t, f)
	if _, err := s.Send(context.Background(), delivery("d1")); err != nil {
		t.Fatal(err)
	}
	f.expire()
	before := f.sendCalls.Load()
	if _, err := s.Send(context.Background(), delivery("d2")); err != nil {
		t.Fatalf("send after expiry: %v", err)
	}
	if f.fetches.Load() != 2 {
		t.Fatalf("%d token fetches, want 2 (one refresh)", f.fetches.Load())
	}
	if calls := f.sendCalls.Load() - before; calls != 2 {
		t.Fatalf("%d send calls, want 2 (rejected + retried)", calls)
	}
	if got := f.log.IDs(); fmt.Sprint(got) != "[d1 d2]" {
		t.Fatalf("delivered %v", got)
	}
	// Many workers hitting the expiry together still refresh once.
	f.expire()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Send(context.Background(), delivery(fmt.Sprint("e", i))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if f.fetches.Load() != 3 {
		t.Fatalf("%d token fetches after a shared expiry, want 3", f.fetches.Load())
	}
}

func TestErrorMapping(t *testing.T) {
	cases := []struct {
		code  int32
		check func(error) bool
	}{
		{43004, func(err error) bool { r, _ := contracts.Classify(err); return !r && !protect.IsProviderFault(err) }},
		{40003, func(err error) bool { r, _ := contracts.Classify(err); return !r }},
		{40037, protect.IsProviderFault},
		{45009, func(err error) bool {
			_, a := contracts.Classify(err)
			return errors.Is(err, protect.ErrThrottled) && a == time.Hour
		}},
		{-1, func(err error) bool { r, _ := contracts.Classify(err); return r }},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			f := newFake(t)
			f.sendErr.Store(tc.code)
			_, err := newSender(t, f).Send(context.Background(), delivery("d"))
			if err == nil || !tc.check(err) || !strings.Contains(err.Error(), fmt.Sprint(tc.code)) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestBadCredentialsAreProviderFault(t *testing.T) {
	f := newFake(t)
	f.tokenErr.Store(40164)
	_, err := newSender(t, f).Send(context.Background(), delivery("d"))
	if !protect.IsProviderFault(err) || !strings.Contains(err.Error(), "40164") {
		t.Fatalf("err = %v", err)
	}
	if f.sendCalls.Load() != 0 {
		t.Fatal("sent without a token")
	}
}

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{
		Channel: domain.ChannelWeChat,
		Setup: func(t *testing.T) *adaptertest.Env {
			f := newFake(t)
			return &adaptertest.Env{
				Sender:     newSender(t, f),
				Address:    func(d *contracts.Delivery) { d.Address = openid },
				Seen:       f.log.IDs,
				FailNext:   f.fail.Arm,
				BadAddress: func(d *contracts.Delivery) { d.Address = "not an openid!" },
				Stall:      f.gate.Arm,
			}
		},
	})
}

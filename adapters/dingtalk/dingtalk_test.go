package dingtalk

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
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

// DingTalk's robot documentation gives the algorithm (and the example
// secret "this is secret") but no fixed timestamp; the expected values were
// computed independently (openssl dgst -sha256 -hmac, and the document's
// own Python snippet with urllib.parse.quote_plus).
func TestSignVectors(t *testing.T) {
	cases := []struct {
		secret  string
		ts      int64
		base64  string
		encoded string
	}{
		{"this is secret", 1700000000000, "sSFWELbV2YwjdDQhWZwTcWlX5BWUx5J6TPpsZmuPii0=", "sSFWELbV2YwjdDQhWZwTcWlX5BWUx5J6TPpsZmuPii0%3D"},
		{"SEC1234567890abcdef", 1577262236757, "f7qQ1A8KagEZ45y1gasTtKsEq5ERTeDXP9T+WkIqzDk=", "f7qQ1A8KagEZ45y1gasTtKsEq5ERTeDXP9T%2BWkIqzDk%3D"},
	}
	for _, tc := range cases {
		if got := Sign(tc.secret, tc.ts); got != tc.base64 {
			t.Errorf("Sign(%q, %d) = %s, want %s", tc.secret, tc.ts, got, tc.base64)
		}
		r := &Robot{AccessToken: "tok", Secret: tc.secret, Endpoint: "https://oapi.dingtalk.com"}
		want := fmt.Sprintf("https://oapi.dingtalk.com/robot/send?access_token=tok&sign=%s&timestamp=%d", tc.encoded, tc.ts)
		if got := r.RobotURL(tc.ts); got != want {
			t.Errorf("RobotURL =\n%s\nwant\n%s", got, want)
		}
	}
	unsigned := &Robot{AccessToken: "tok", Endpoint: "https://oapi.dingtalk.com"}
	if got := unsigned.RobotURL(1); got != "https://oapi.dingtalk.com/robot/send?access_token=tok" {
		t.Errorf("unsigned URL %s", got)
	}
}

var idRE = regexp.MustCompile(`\b(dlv_\w+|d[A-Z0-9]\w*)\b`)

type fakeDingTalk struct {
	*httptest.Server
	now       time.Time
	mu        sync.Mutex
	valid     string
	fetches   atomic.Int32
	tokenGate chan struct{}
	robotLog  adaptertest.Log
	workLog   adaptertest.Log
	robotMsgs []string
	workMsgs  []string
	fail      adaptertest.Failer
	gate      adaptertest.Gate
	sendErr   atomic.Value // string JSON error body
	expireAs  string       // body answered to a stale token
}

func newFake(t *testing.T) *fakeDingTalk {
	f := &fakeDingTalk{now: time.UnixMilli(1700000000000), expireAs: `{"errcode":88,"sub_code":"40014","errmsg":"不合法的access_token"}`}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /robot/send", func(w http.ResponseWriter, r *http.Request) {
		f.gate.Wait(r.Context())
		if f.fail.Take() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		q := r.URL.Query()
		ts, _ := strconv.ParseInt(q.Get("timestamp"), 10, 64)
		mac := hmac.New(sha256.New, []byte("SECrobot"))
		fmt.Fprintf(mac, "%d\nSECrobot", ts)
		if q.Get("access_token") != "robot-token" || q.Get("sign") != base64.StdEncoding.EncodeToString(mac.Sum(nil)) || ts != f.now.UnixMilli() {
			fmt.Fprint(w, `{"errcode":310000,"errmsg":"sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}`)
			return
		}
		if e, _ := f.sendErr.Load().(string); e != "" {
			fmt.Fprint(w, e)
			return
		}
		body := readJSON(t, r)
		f.mu.Lock()
		f.robotMsgs = append(f.robotMsgs, body)
		f.mu.Unlock()
		f.robotLog.Add(idRE.FindString(body))
		fmt.Fprint(w, `{"errcode":0,"errmsg":"ok"}`)
	})
	mux.HandleFunc("GET /gettoken", func(w http.ResponseWriter, r *http.Request) {
		if g := f.tokenGate; g != nil {
			<-g
		}
		q := r.URL.Query()
		if q.Get("appkey") != "ding-key" || q.Get("appsecret") != "ding-secret" || len(q) != 2 {
			fmt.Fprint(w, `{"errcode":40089,"errmsg":"不合法的corpid或corpsecret"}`)
			return
		}
		tok := fmt.Sprintf("APP_TOKEN_%d", f.fetches.Add(1))
		f.mu.Lock()
		f.valid = tok
		f.mu.Unlock()
		fmt.Fprintf(w, `{"errcode":0,"access_token":%q,"errmsg":"ok","expires_in":7200}`, tok)
	})
	mux.HandleFunc("POST /topapi/message/corpconversation/asyncsend_v2", func(w http.ResponseWriter, r *http.Request) {
		f.gate.Wait(r.Context())
		if f.fail.Take() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		f.mu.Lock()
		valid, expired := f.valid, f.expireAs
		f.mu.Unlock()
		if r.URL.Query().Get("access_token") != valid {
			fmt.Fprint(w, expired)
			return
		}
		if e, _ := f.sendErr.Load().(string); e != "" {
			fmt.Fprint(w, e)
			return
		}
		body := readJSON(t, r)
		f.mu.Lock()
		f.workMsgs = append(f.workMsgs, body)
		f.mu.Unlock()
		var m WorkMessage
		json.Unmarshal([]byte(body), &m)
		text := ""
		switch {
		case m.Msg.Text != nil:
			text = m.Msg.Text.Content
		case m.Msg.Markdown != nil:
			text = m.Msg.Markdown.Text
		case m.Msg.ActionCard != nil:
			text = m.Msg.ActionCard.Markdown
		}
		f.workLog.Add(idRE.FindString(text))
		fmt.Fprint(w, `{"errcode":0,"errmsg":"ok","task_id":256271667526,"request_id":"4jzllmte0wau"}`)
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func readJSON(t *testing.T, r *http.Request) string {
	if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	var raw json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&raw); err != nil {
		t.Errorf("body: %v", err)
	}
	return string(raw)
}

func robotSettings(f *fakeDingTalk) map[string]string {
	return map[string]string{"type": TypeRobot, "access_token": "robot-token", "secret": "SECrobot", "at_mobiles": "13800138000", "endpoint": f.URL, "rate": "0"}
}

func workSettings(f *fakeDingTalk) map[string]string {
	return map[string]string{"type": TypeWork, "app_key": "ding-key", "app_secret": "ding-secret", "agent_id": "2468", "endpoint": f.URL, "rate": "0"}
}

func newSender(t *testing.T, f *fakeDingTalk, providers map[string]map[string]string) contracts.Sender {
	t.Helper()
	cfg := config.Defaults()
	cfg.Providers = providers
	tr := &http.Transport{MaxConnsPerHost: 64, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	s, err := vendor.NewRouter(domain.ChannelDingTalk, registry.Deps{Config: cfg, HTTPClient: &http.Client{Transport: tr}, Now: func() time.Time { return f.now }}, vendor.RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func delivery(id, addr string, c domain.Content) *contracts.Delivery {
	return &contracts.Delivery{ID: id, AppID: "app1", Channel: domain.ChannelDingTalk, Address: addr, Content: c}
}

func TestRobotMessages(t *testing.T) {
	f := newFake(t)
	s := newSender(t, f, map[string]map[string]string{"bot": robotSettings(f)})
	if _, err := s.Send(context.Background(), delivery("d1", "", domain.Content{Subject: "告警", Text: "d1 磁盘已满"})); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Send(context.Background(), delivery("d2", "", domain.Content{Subject: "杭州天气", Markdown: "#### d2 杭州天气\n> 9度"})); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"msgtype":"text","text":{"content":"告警\nd1 磁盘已满"},"at":{"atMobiles":["13800138000"],"isAtAll":false}}`,
		`{"msgtype":"markdown","markdown":{"title":"杭州天气","text":"#### d2 杭州天气\n\u003e 9度"},"at":{"atMobiles":["13800138000"],"isAtAll":false}}`,
	}
	for i := range want {
		if f.robotMsgs[i] != want[i] {
			t.Errorf("message %d\n got %s\nwant %s", i, f.robotMsgs[i], want[i])
		}
	}
	// A wrong secret is the provider's fault (310000 sign not match).
	bad := robotSettings(f)
	bad["secret"] = "SECwrong"
	_, err := newSender(t, f, map[string]map[string]string{"bot": bad}).Send(context.Background(), delivery("d3", "", domain.Content{Text: "x"}))
	if !protect.IsProviderFault(err) {
		t.Fatalf("wrong secret: %v", err)
	}
	// Throttled robots pause for the announced 10 minutes.
	f.sendErr.Store(`{"errcode":410100,"errmsg":"send too fast"}`)
	_, err = s.Send(context.Background(), delivery("d4", "", domain.Content{Text: "x"}))
	if _, after := contracts.Classify(err); !errors.Is(err, protect.ErrThrottled) || after != 10*time.Minute {
		t.Fatalf("410100: %v", err)
	}
}

func TestWorkNotifications(t *testing.T) {
	f := newFake(t)
	s := newSender(t, f, map[string]map[string]string{"work": workSettings(f)})
	res, err := s.Send(context.Background(), delivery("d1", "manager4220", domain.Content{Subject: "审批", Text: "d1 待审批"}))
	if err != nil {
		t.Fatal(err)
	}
	if res.ProviderID != "work/256271667526" {
		t.Fatalf("ProviderID %q", res.ProviderID)
	}
	if _, err := s.Send(context.Background(), delivery("d2", "manager4220", domain.Content{Subject: "报销", Text: "d2", URL: "https://example.com/x"})); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"agent_id":2468,"userid_list":"manager4220","msg":{"msgtype":"text","text":{"content":"审批\nd1 待审批"}}}`,
		`{"agent_id":2468,"userid_list":"manager4220","msg":{"msgtype":"action_card","action_card":{"title":"报销","markdown":"报销\nd2","single_title":"查看详情","single_url":"https://example.com/x"}}}`,
	}
	for i := range want {
		if f.workMsgs[i] != want[i] {
			t.Errorf("message %d\n got %s\nwant %s", i, f.workMsgs[i], want[i])
		}
	}
	for _, addr := range []string{"", "a,b", "名字"} {
		if _, err := s.Send(context.Background(), delivery("d", addr, domain.Content{Text: "x"})); err == nil {
			t.Errorf("address %q accepted", addr)
		}
	}
}

func TestWorkTokenCachedAndRefreshed(t *testing.T) {
	f := newFake(t)
	f.tokenGate = make(chan struct{})
	s := newSender(t, f, map[string]map[string]string{"work": workSettings(f)})
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Send(context.Background(), delivery(fmt.Sprint("c", i), "u1", domain.Content{Text: "x"})); err != nil {
				failed.Add(1)
			}
		}()
	}
	close(f.tokenGate)
	wg.Wait()
	if failed.Load() != 0 || f.fetches.Load() != 1 {
		t.Fatalf("%d failed, %d token fetches; want 0 and 1", failed.Load(), f.fetches.Load())
	}
	for i, stale := range []string{`{"errcode":88,"sub_code":"40014","errmsg":"不合法的access_token"}`, `{"errcode":42001,"errmsg":"access_token超时"}`} {
		f.mu.Lock()
		f.valid = "rotated"
		f.expireAs = stale
		f.mu.Unlock()
		if _, err := s.Send(context.Background(), delivery("dX", "u1", domain.Content{Text: "dX"})); err != nil {
			t.Fatalf("after %s: %v", stale, err)
		}
		if got := f.fetches.Load(); got != int32(i+2) {
			t.Fatalf("%d token fetches, want %d", got, i+2)
		}
	}
	bad := workSettings(f)
	bad["app_secret"] = "nope"
	_, err := newSender(t, f, map[string]map[string]string{"work": bad}).Send(context.Background(), delivery("d", "u1", domain.Content{Text: "x"}))
	if !protect.IsProviderFault(err) {
		t.Fatalf("wrong secret: %v", err)
	}
}

func TestConformanceRobot(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{
		Channel: domain.ChannelDingTalk,
		Setup: func(t *testing.T) *adaptertest.Env {
			f := newFake(t)
			return &adaptertest.Env{
				Sender:   newSender(t, f, map[string]map[string]string{"bot": robotSettings(f)}),
				Address:  func(d *contracts.Delivery) { d.Address = "" },
				Seen:     f.robotLog.IDs,
				FailNext: f.fail.Arm,
				Stall:    f.gate.Arm,
			}
		},
	})
}

func TestConformanceWork(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{
		Channel: domain.ChannelDingTalk,
		Setup: func(t *testing.T) *adaptertest.Env {
			f := newFake(t)
			return &adaptertest.Env{
				Sender:     newSender(t, f, map[string]map[string]string{"work": workSettings(f)}),
				Address:    func(d *contracts.Delivery) { d.Address = "manager4220" },
				Seen:       f.workLog.IDs,
				FailNext:   f.fail.Arm,
				BadAddress: func(d *contracts.Delivery) { d.Address = "u1,u2" },
				Stall:      f.gate.Arm,
			}
		},
	})
}

package wecom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"herald.dev/adapters/adaptertest"
	"herald.dev/adapters/protect"
	"herald.dev/adapters/providers/vendor"
	"herald.dev/adapters/registry"
	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

// idRE finds a delivery id in message text (WeCom messages carry no id field).
var idRE = regexp.MustCompile(`\b(dlv_\w+|d[A-Z0-9]\w*)\b`)

// idOf finds the delivery id in a message's text parts.
func idOf(m map[string]any) string {
	for _, part := range []string{"text", "markdown", "textcard"} {
		if body, ok := m[part].(map[string]any); ok {
			for _, k := range []string{"content", "description"} {
				if s, ok := body[k].(string); ok {
					if id := idRE.FindString(s); id != "" {
						return id
					}
				}
			}
		}
	}
	return ""
}

// fakeWeCom mimics qyapi.weixin.qq.com.
type fakeWeCom struct {
	*httptest.Server
	mu        sync.Mutex
	valid     string
	fetches   atomic.Int32
	tokenGate chan struct{}
	appLog    adaptertest.Log
	robotLog  adaptertest.Log
	appMsgs   []map[string]any
	robotMsgs []map[string]any
	fail      adaptertest.Failer
	gate      adaptertest.Gate
	sendErr   atomic.Int32
	sendCalls atomic.Int32
	invalid   atomic.Bool
}

func newFake(t *testing.T) *fakeWeCom {
	f := &fakeWeCom{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cgi-bin/gettoken", func(w http.ResponseWriter, r *http.Request) {
		if g := f.tokenGate; g != nil {
			<-g
		}
		q := r.URL.Query()
		if q.Get("corpid") != "ww-corp" || q.Get("corpsecret") != "corp-secret" || len(q) != 2 {
			fmt.Fprint(w, `{"errcode":40001,"errmsg":"invalid secret"}`)
			return
		}
		tok := fmt.Sprintf("CORP_TOKEN_%d", f.fetches.Add(1))
		f.mu.Lock()
		f.valid = tok
		f.mu.Unlock()
		fmt.Fprintf(w, `{"errcode":0,"errmsg":"ok","access_token":%q,"expires_in":7200}`, tok)
	})
	decode := func(t *testing.T, r *http.Request) map[string]any {
		if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Errorf("body: %v", err)
		}
		return m
	}
	mux.HandleFunc("POST /cgi-bin/message/send", func(w http.ResponseWriter, r *http.Request) {
		f.sendCalls.Add(1)
		f.gate.Wait(r.Context())
		if f.fail.Take() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		f.mu.Lock()
		valid := f.valid
		f.mu.Unlock()
		if r.URL.Query().Get("access_token") != valid {
			fmt.Fprint(w, `{"errcode":42001,"errmsg":"access_token expired"}`)
			return
		}
		m := decode(t, r)
		if code := f.sendErr.Load(); code != 0 {
			fmt.Fprintf(w, `{"errcode":%d,"errmsg":"refused"}`, code)
			return
		}
		if f.invalid.Load() {
			fmt.Fprintf(w, `{"errcode":0,"errmsg":"ok","invaliduser":%q,"msgid":"m"}`, m["touser"])
			return
		}
		f.mu.Lock()
		f.appMsgs = append(f.appMsgs, m)
		f.mu.Unlock()
		f.appLog.Add(idOf(m))
		fmt.Fprint(w, `{"errcode":0,"errmsg":"ok","invaliduser":"","invalidparty":"","invalidtag":"","unlicenseduser":"","msgid":"xx-msg","response_code":"rc"}`)
	})
	mux.HandleFunc("POST /cgi-bin/webhook/send", func(w http.ResponseWriter, r *http.Request) {
		f.sendCalls.Add(1)
		f.gate.Wait(r.Context())
		if f.fail.Take() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if r.URL.Query().Get("key") != "robot-key" {
			fmt.Fprint(w, `{"errcode":93000,"errmsg":"invalid webhook url"}`)
			return
		}
		m := decode(t, r)
		if code := f.sendErr.Load(); code != 0 {
			fmt.Fprintf(w, `{"errcode":%d,"errmsg":"refused"}`, code)
			return
		}
		f.mu.Lock()
		f.robotMsgs = append(f.robotMsgs, m)
		f.mu.Unlock()
		f.robotLog.Add(idOf(m))
		fmt.Fprint(w, `{"errcode":0,"errmsg":"ok"}`)
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func appSettings(f *fakeWeCom, extra ...string) map[string]string {
	m := map[string]string{"type": TypeApp, "corp_id": "ww-corp", "corp_secret": "corp-secret", "agent_id": "1000002", "endpoint": f.URL, "rate": "0"}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

func robotSettings(f *fakeWeCom) map[string]string {
	return map[string]string{"type": TypeRobot, "key": "robot-key", "endpoint": f.URL, "rate": "0", "mentioned_list": "wangqing,@all"}
}

func newSender(t *testing.T, providers map[string]map[string]string) contracts.Sender {
	t.Helper()
	cfg := config.Defaults()
	cfg.Providers = providers
	tr := &http.Transport{MaxConnsPerHost: 64, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	s, err := vendor.NewRouter(domain.ChannelWeCom, registry.Deps{Config: cfg, HTTPClient: &http.Client{Transport: tr}}, vendor.RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func delivery(id string, c domain.Content) *contracts.Delivery {
	return &contracts.Delivery{ID: id, AppID: "app1", Channel: domain.ChannelWeCom, Address: "ZhangSan", Content: c}
}

func jsonOf(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestAppMessageShapes(t *testing.T) {
	f := newFake(t)
	s := newSender(t, map[string]map[string]string{"app": appSettings(f)})
	cases := []struct {
		content domain.Content
		want    string
	}{
		{domain.Content{Subject: "Build failed", Text: "pipeline d1 failed"},
			`{"agentid":1000002,"duplicate_check_interval":1800,"enable_duplicate_check":1,"msgtype":"text","safe":0,"text":{"content":"Build failed\npipeline d1 failed"},"touser":"ZhangSan"}`},
		{domain.Content{Markdown: "**d2** ok"},
			`{"agentid":1000002,"duplicate_check_interval":1800,"enable_duplicate_check":1,"markdown":{"content":"**d2** ok"},"msgtype":"markdown","safe":0,"touser":"ZhangSan"}`},
		{domain.Content{Subject: "领奖通知", Text: "d3 恭喜你抽中iPhone", URL: "https://work.weixin.qq.com"},
			`{"agentid":1000002,"duplicate_check_interval":1800,"enable_duplicate_check":1,"msgtype":"textcard","safe":0,"textcard":{"btntxt":"详情","description":"d3 恭喜你抽中iPhone","title":"领奖通知","url":"https://work.weixin.qq.com"},"touser":"ZhangSan"}`},
	}
	for i, tc := range cases {
		res, err := s.Send(context.Background(), delivery(fmt.Sprint("d", i+1), tc.content))
		if err != nil {
			t.Fatal(err)
		}
		if res.ProviderID != "app/xx-msg" {
			t.Fatalf("ProviderID %q", res.ProviderID)
		}
		if got := jsonOf(f.appMsgs[i]); got != tc.want {
			t.Errorf("case %d:\n got %s\nwant %s", i, got, tc.want)
		}
	}
	// Duplicate check off, confidential on.
	f2 := newFake(t)
	s2 := newSender(t, map[string]map[string]string{"app": appSettings(f2, "duplicate_check_interval", "0", "safe", "1", "msgtype", "text")})
	if _, err := s2.Send(context.Background(), delivery("d9", domain.Content{Text: "x", Markdown: "*x*"})); err != nil {
		t.Fatal(err)
	}
	if got := jsonOf(f2.appMsgs[0]); got != `{"agentid":1000002,"enable_duplicate_check":0,"msgtype":"text","safe":1,"text":{"content":"x"},"touser":"ZhangSan"}` {
		t.Fatalf("got %s", got)
	}
}

func TestAppTokenSharedAndRefreshedOnExpiry(t *testing.T) {
	f := newFake(t)
	f.tokenGate = make(chan struct{})
	s := newSender(t, map[string]map[string]string{"app": appSettings(f)})
	const n = 1000
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Send(context.Background(), delivery(fmt.Sprint("c", i), domain.Content{Text: "hi"})); err != nil {
				failed.Add(1)
			}
		}()
	}
	close(f.tokenGate)
	wg.Wait()
	if failed.Load() != 0 || f.fetches.Load() != 1 {
		t.Fatalf("%d failed, %d token fetches; want 0 and 1", failed.Load(), f.fetches.Load())
	}
	f.mu.Lock()
	f.valid = "rotated-elsewhere"
	f.mu.Unlock()
	if _, err := s.Send(context.Background(), delivery("after", domain.Content{Text: "hi"})); err != nil {
		t.Fatal(err)
	}
	if f.fetches.Load() != 2 {
		t.Fatalf("%d fetches after an expired token, want 2", f.fetches.Load())
	}
}

func TestAppRecipientAndErrorMapping(t *testing.T) {
	f := newFake(t)
	s := newSender(t, map[string]map[string]string{"app": appSettings(f)})
	f.invalid.Store(true)
	_, err := s.Send(context.Background(), delivery("d", domain.Content{Text: "x"}))
	if r, _ := contracts.Classify(err); err == nil || r || !strings.Contains(err.Error(), "ZhangSan") {
		t.Fatalf("invaliduser: %v", err)
	}
	f.invalid.Store(false)
	for _, addr := range []string{"", "a|b", "@all", "名字"} {
		d := delivery("d", domain.Content{Text: "x"})
		d.Address = addr
		if _, err := s.Send(context.Background(), d); err == nil {
			t.Errorf("address %q accepted", addr)
		}
	}
	checks := map[int32]func(error) bool{
		81013: func(err error) bool { r, _ := contracts.Classify(err); return !r && !protect.IsProviderFault(err) },
		60020: protect.IsProviderFault,
		45009: func(err error) bool { return errors.Is(err, protect.ErrThrottled) },
		-1:    func(err error) bool { r, _ := contracts.Classify(err); return r },
	}
	for code, check := range checks {
		f.sendErr.Store(code)
		_, err := s.Send(context.Background(), delivery("d", domain.Content{Text: "x"}))
		if err == nil || !check(err) {
			t.Errorf("errcode %d: %v", code, err)
		}
		// A throttle pauses the provider: each code gets a fresh one.
		f = newFake(t)
		s = newSender(t, map[string]map[string]string{"app": appSettings(f)})
	}
}

func TestRobot(t *testing.T) {
	f := newFake(t)
	s := newSender(t, map[string]map[string]string{"bot": robotSettings(f)})
	d := delivery("d1", domain.Content{Subject: "Alert", Text: "disk full on d1"})
	d.Address = ""
	if _, err := s.Send(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if got := jsonOf(f.robotMsgs[0]); got != `{"msgtype":"text","text":{"content":"Alert\ndisk full on d1","mentioned_list":["wangqing","@all"]}}` {
		t.Fatalf("robot text %s", got)
	}
	d = delivery("d2", domain.Content{Markdown: "# d2\n> ok"})
	if _, err := s.Send(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if got := jsonOf(f.robotMsgs[1]); got != `{"markdown":{"content":"# d2\n\u003e ok"},"msgtype":"markdown"}` {
		t.Fatalf("robot markdown %s", got)
	}
	bad := newSender(t, map[string]map[string]string{"bot": {"type": TypeRobot, "key": "wrong", "endpoint": f.URL}})
	if _, err := bad.Send(context.Background(), d); !protect.IsProviderFault(err) {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestAppAndRobotRouting(t *testing.T) {
	f := newFake(t)
	s := newSender(t, map[string]map[string]string{"app": appSettings(f), "bot": robotSettings(f)})
	for i := range 10 {
		if _, err := s.Send(context.Background(), delivery(fmt.Sprint("dA", i), domain.Content{Text: fmt.Sprint("dA", i)})); err != nil {
			t.Fatal(err)
		}
	}
	d := delivery("dR", domain.Content{Text: "group dR"})
	d.Address = ""
	if _, err := s.Send(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	d = delivery("dP", domain.Content{Text: "pinned dP"})
	d.Data = map[string]any{vendor.DataProvider: "bot"}
	if _, err := s.Send(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if len(f.appLog.IDs()) != 10 || fmt.Sprint(f.robotLog.IDs()) != "[dR dP]" {
		t.Fatalf("app got %v, robot got %v", f.appLog.IDs(), f.robotLog.IDs())
	}
}

func TestConformanceApp(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{
		Channel: domain.ChannelWeCom,
		Setup: func(t *testing.T) *adaptertest.Env {
			f := newFake(t)
			return &adaptertest.Env{
				Sender:     newSender(t, map[string]map[string]string{"app": appSettings(f)}),
				Address:    func(d *contracts.Delivery) { d.Address = "ZhangSan" },
				Seen:       f.appLog.IDs,
				FailNext:   f.fail.Arm,
				BadAddress: func(d *contracts.Delivery) { d.Address = "two|users" },
				Stall:      f.gate.Arm,
			}
		},
	})
}

func TestConformanceRobot(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{
		Channel: domain.ChannelWeCom,
		Setup: func(t *testing.T) *adaptertest.Env {
			f := newFake(t)
			return &adaptertest.Env{
				Sender:   newSender(t, map[string]map[string]string{"bot": robotSettings(f)}),
				Address:  func(d *contracts.Delivery) { d.Address = "" },
				Seen:     f.robotLog.IDs,
				FailNext: f.fail.Arm,
				Stall:    f.gate.Arm,
			}
		},
	})
}

package qq

import (
	"context"
	"encoding/json"
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

const openid = "E4F4AEA33253A2797FB897C50B81D7ED"

var idRE = regexp.MustCompile(`\b(dlv_\w+|d[A-Z0-9]\w*)\b`)

type fakeQQ struct {
	*httptest.Server
	mu        sync.Mutex
	valid     string
	fetches   atomic.Int32
	tokenGate chan struct{}
	log       adaptertest.Log
	bodies    []string
	seen      map[string]bool // msg_id/msg_seq pairs already sent
	fail      adaptertest.Failer
	gate      adaptertest.Gate
	sendErr   atomic.Value // "status|json"
}

func newFake(t *testing.T) *fakeQQ {
	f := &fakeQQ{seen: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /app/getAppAccessToken", func(w http.ResponseWriter, r *http.Request) {
		if g := f.tokenGate; g != nil {
			<-g
		}
		var req map[string]string
		json.NewDecoder(r.Body).Decode(&req)
		if len(req) != 2 || req["appId"] != "102000000" || req["clientSecret"] != "bot-secret" {
			fmt.Fprint(w, `{"code":100016,"message":"invalid appid or secret"}`)
			return
		}
		tok := fmt.Sprintf("BOT_TOKEN_%d", f.fetches.Add(1))
		f.mu.Lock()
		f.valid = tok
		f.mu.Unlock()
		fmt.Fprintf(w, `{"access_token":%q,"expires_in":"7200"}`, tok)
	})
	mux.HandleFunc("POST /v2/users/{openid}/messages", func(w http.ResponseWriter, r *http.Request) {
		f.gate.Wait(r.Context())
		if f.fail.Take() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		f.mu.Lock()
		valid := f.valid
		f.mu.Unlock()
		if r.Header.Get("Authorization") != "QQBot "+valid || r.Header.Get("X-Union-Appid") != "102000000" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"message":"token invalid","code":11244,"trace_id":"t1"}`)
			return
		}
		if r.PathValue("openid") != openid {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"message":"invalid openid","code":11255}`)
			return
		}
		if e, _ := f.sendErr.Load().(string); e != "" {
			status, body, _ := strings.Cut(e, "|")
			var code int
			fmt.Sscan(status, &code)
			w.WriteHeader(code)
			fmt.Fprint(w, body)
			return
		}
		var raw json.RawMessage
		json.NewDecoder(r.Body).Decode(&raw)
		var m Message
		json.Unmarshal(raw, &m)
		if m.MsgID != "" {
			key := fmt.Sprint(m.MsgID, "/", m.MsgSeq)
			f.mu.Lock()
			dup := f.seen[key]
			f.seen[key] = true
			f.mu.Unlock()
			if dup {
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprint(w, `{"message":"消息被去重，请检查请求msgseq","code":40054005,"err_code":40054005}`)
				return
			}
		}
		f.mu.Lock()
		f.bodies = append(f.bodies, string(raw))
		f.mu.Unlock()
		f.log.Add(idRE.FindString(m.Content))
		fmt.Fprint(w, `{"id":"ROBOT1.0_abc","timestamp":1700000000}`)
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func settings(f *fakeQQ) map[string]string {
	return map[string]string{"type": Type, "app_id": "102000000", "client_secret": "bot-secret", "endpoint": f.URL, "token_endpoint": f.URL, "rate": "0"}
}

func newSender(t *testing.T, f *fakeQQ) contracts.Sender {
	t.Helper()
	cfg := config.Defaults()
	cfg.Providers = map[string]map[string]string{"bot": settings(f)}
	tr := &http.Transport{MaxConnsPerHost: 64, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	s, err := vendor.NewRouter(domain.ChannelQQ, registry.Deps{Config: cfg, HTTPClient: &http.Client{Transport: tr}}, vendor.RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func delivery(id string, data map[string]any) *contracts.Delivery {
	return &contracts.Delivery{ID: id, AppID: "app1", Channel: domain.ChannelQQ, Address: openid, Data: data,
		Content: domain.Content{Subject: "提醒", Text: id + " 该交作业了"}}
}

func TestSendShapes(t *testing.T) {
	f := newFake(t)
	s := newSender(t, f)
	res, err := s.Send(context.Background(), delivery("d1", nil))
	if err != nil {
		t.Fatal(err)
	}
	if res.ProviderID != "bot/ROBOT1.0_abc" {
		t.Fatalf("ProviderID %q", res.ProviderID)
	}
	if _, err := s.Send(context.Background(), delivery("d2", map[string]any{DataMsgID: "ROBOT1.0_user_msg"})); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"content":"提醒\nd1 该交作业了","msg_type":0}`,
		fmt.Sprintf(`{"content":"提醒\nd2 该交作业了","msg_type":0,"msg_id":"ROBOT1.0_user_msg","msg_seq":%d}`, MsgSeq("d2")),
	}
	for i := range want {
		if f.bodies[i] != want[i] {
			t.Errorf("body %d\n got %s\nwant %s", i, f.bodies[i], want[i])
		}
	}
	if MsgSeq("d2") == MsgSeq("d3") || MsgSeq("d2") <= 0 {
		t.Fatal("msg_seq must differ per delivery and be positive")
	}
}

func TestReplyRetryIsDeduplicated(t *testing.T) {
	f := newFake(t)
	s := newSender(t, f)
	d := delivery("d1", map[string]any{DataMsgID: "user-msg-1"})
	for attempt := range 3 {
		if _, err := s.Send(context.Background(), d); err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
	}
	if got := f.log.IDs(); len(got) != 1 {
		t.Fatalf("the platform showed the reply %d times, want 1", len(got))
	}
}

func TestTokenCachedAndRefreshed(t *testing.T) {
	f := newFake(t)
	f.tokenGate = make(chan struct{})
	s := newSender(t, f)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Send(context.Background(), delivery(fmt.Sprint("c", i), nil)); err != nil {
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
	f.valid = "rotated"
	f.mu.Unlock()
	if _, err := s.Send(context.Background(), delivery("dX", nil)); err != nil {
		t.Fatal(err)
	}
	if f.fetches.Load() != 2 {
		t.Fatalf("%d token fetches, want 2", f.fetches.Load())
	}
	bad := settings(f)
	bad["client_secret"] = "nope"
	cfg := config.Defaults()
	cfg.Providers = map[string]map[string]string{"bot": bad}
	r, _ := vendor.NewRouter(domain.ChannelQQ, registry.Deps{Config: cfg}, vendor.RouterOptions{})
	if _, err := r.Send(context.Background(), delivery("d", nil)); !protect.IsProviderFault(err) || !strings.Contains(err.Error(), "100016") {
		t.Fatalf("wrong secret: %v", err)
	}
}

func TestErrorMapping(t *testing.T) {
	cases := []struct {
		reply string
		check func(error) bool
	}{
		{`400|{"message":"msg limit exceed","code":22009}`, func(err error) bool { r, _ := contracts.Classify(err); return !r && !protect.ShouldFailover(err) }},
		{`400|{"message":"MSG_EXPIRE","code":304027}`, func(err error) bool { r, _ := contracts.Classify(err); return !r }},
		{`403|{"message":"no permission","code":11253}`, protect.IsProviderFault},
		{`429|{"message":"too many"}`, func(err error) bool { _, a := contracts.Classify(err); return a > 0 }},
		{`504|{"message":"timeout"}`, func(err error) bool { r, _ := contracts.Classify(err); return r }},
	}
	for _, tc := range cases {
		t.Run(tc.reply, func(t *testing.T) {
			f := newFake(t)
			f.sendErr.Store(tc.reply)
			_, err := newSender(t, f).Send(context.Background(), delivery("d", nil))
			if err == nil || !tc.check(err) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{
		Channel: domain.ChannelQQ,
		Setup: func(t *testing.T) *adaptertest.Env {
			f := newFake(t)
			return &adaptertest.Env{
				Sender:     newSender(t, f),
				Address:    func(d *contracts.Delivery) { d.Address = openid },
				Seen:       f.log.IDs,
				FailNext:   f.fail.Arm,
				BadAddress: func(d *contracts.Delivery) { d.Address = "x/../y" },
				Stall:      f.gate.Arm,
			}
		},
	})
}

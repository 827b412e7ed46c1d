package sms

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"herald.dev/adapters/adaptertest"
	"herald.dev/adapters/protect"
	"herald.dev/adapters/providers/vendor"
	"herald.dev/adapters/registry"
	"herald.dev/adapters/sms/aliyun"
	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

// fakeVendor is a local stand-in for one SMS vendor: it checks the
// request's signature like the vendor does and records the delivery id
// each accepted request carries (Aliyun OutId, Tencent SessionContext).
type fakeVendor struct {
	*httptest.Server
	log      adaptertest.Log
	fail     adaptertest.Failer
	gate     adaptertest.Gate
	down     atomic.Bool // answer 503 to everything
	requests atomic.Int32
}

func newAliyun(t *testing.T) *fakeVendor {
	f := &fakeVendor{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		f.gate.Wait(r.Context())
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		if f.down.Load() || f.fail.Take() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if aliyun.Sign(http.MethodPost, form, "ali-secret") != form.Get("Signature") {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"Code":"SignatureDoesNotMatch","Message":"bad signature","RequestId":"r"}`)
			return
		}
		f.log.Add(form.Get("OutId"))
		fmt.Fprintf(w, `{"Code":"OK","Message":"OK","BizId":"biz-%s","RequestId":"r"}`, form.Get("OutId"))
	}))
	t.Cleanup(f.Close)
	return f
}

func newTencent(t *testing.T) *fakeVendor {
	f := &fakeVendor{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		f.gate.Wait(r.Context())
		if f.down.Load() || f.fail.Take() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		var req struct {
			PhoneNumberSet []string
			SessionContext string
		}
		json.NewDecoder(r.Body).Decode(&req)
		if !strings.HasPrefix(r.Header.Get("Authorization"), "TC3-HMAC-SHA256 Credential=AKID-t/") {
			t.Errorf("Authorization %q", r.Header.Get("Authorization"))
		}
		f.log.Add(req.SessionContext)
		fmt.Fprintf(w, `{"Response":{"SendStatusSet":[{"SerialNo":"sn-%s","PhoneNumber":%q,"Code":"Ok","Message":"send success"}],"RequestId":"r"}}`, req.SessionContext, req.PhoneNumberSet[0])
	}))
	t.Cleanup(f.Close)
	return f
}

func aliyunSettings(f *fakeVendor, weight string, extra ...string) map[string]string {
	m := map[string]string{"type": "aliyun_sms", "weight": weight, "access_key_id": "LTAI", "access_key_secret": "ali-secret",
		"sign_name": "Herald", "template_code": "SMS_1", "endpoint": f.URL}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

func tencentSettings(f *fakeVendor, weight string) map[string]string {
	return map[string]string{"type": "tencent_sms", "weight": weight, "secret_id": "AKID-t", "secret_key": "t-secret",
		"sdk_app_id": "1400000000", "sign_name": "Herald", "template_id": "1001", "endpoint": f.URL}
}

func router(t *testing.T, providers map[string]map[string]string, chooser func(int) int) contracts.Sender {
	t.Helper()
	cfg := config.Defaults()
	cfg.Providers = providers
	r, err := New(registry.Deps{Config: cfg}, vendor.RouterOptions{Chooser: chooser})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sms(id string) *contracts.Delivery {
	d := adaptertest.Delivery(domain.ChannelSMS, id)
	d.Address = "+8613800138000"
	d.Content.Params = map[string]string{"code": "123456"}
	return d
}

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{
		Channel: domain.ChannelSMS,
		Setup: func(t *testing.T) *adaptertest.Env {
			ali := newAliyun(t)
			r := router(t, map[string]map[string]string{"ali": aliyunSettings(ali, "1")}, nil)
			return &adaptertest.Env{
				Sender:     r,
				Address:    func(d *contracts.Delivery) { d.Address = "+8613800138000" },
				Seen:       ali.log.IDs,
				FailNext:   ali.fail.Arm,
				BadAddress: func(d *contracts.Delivery) { d.Address = "call me maybe" },
				Stall:      ali.gate.Arm,
			}
		},
	})
}

func TestFailoverWhenVendorDown(t *testing.T) {
	ali, ten := newAliyun(t), newTencent(t)
	r := router(t, map[string]map[string]string{
		"ali":     aliyunSettings(ali, "100", "breaker_failures", "3", "breaker_timeout", "1h"),
		"tencent": tencentSettings(ten, "0"),
	}, nil)
	res, err := r.Send(context.Background(), sms("d0"))
	if err != nil || res.ProviderID != "ali/biz-d0" {
		t.Fatalf("healthy: %+v %v", res, err)
	}
	ali.down.Store(true)
	for i := 1; i <= 3; i++ {
		id := fmt.Sprint("d", i)
		res, err := r.Send(context.Background(), sms(id))
		if err != nil || res.ProviderID != "tencent/sn-"+id {
			t.Fatalf("aliyun 503 #%d: %+v %v; want tencent to carry it", i, res, err)
		}
	}
	// Three consecutive failures opened aliyun's circuit: it is no longer
	// called at all, tencent carries everything.
	before := ali.requests.Load()
	for i := 4; i <= 6; i++ {
		id := fmt.Sprint("d", i)
		if res, err := r.Send(context.Background(), sms(id)); err != nil || res.ProviderID != "tencent/sn-"+id {
			t.Fatalf("circuit open #%d: %+v %v", i, res, err)
		}
	}
	if ali.requests.Load() != before {
		t.Fatalf("aliyun was called %d times with its circuit open", ali.requests.Load()-before)
	}
	if got := ten.log.IDs(); len(got) != 6 {
		t.Fatalf("tencent carried %v", got)
	}
	// Both down: retryable, nothing lost.
	ten.down.Store(true)
	_, err = r.Send(context.Background(), sms("d7"))
	if retry, _ := contracts.Classify(err); !retry {
		t.Fatalf("all vendors down: %v, want retryable", err)
	}
}

func TestBadNumberDoesNotFailOver(t *testing.T) {
	ali, ten := newAliyun(t), newTencent(t)
	r := router(t, map[string]map[string]string{"ali": aliyunSettings(ali, "1"), "tencent": tencentSettings(ten, "1")}, nil)
	d := sms("bad")
	d.Address = "12"
	_, err := r.Send(context.Background(), d)
	if retry, _ := contracts.Classify(err); err == nil || retry || protect.ShouldFailover(err) {
		t.Fatalf("err = %v, want permanent", err)
	}
	if ali.requests.Load()+ten.requests.Load() != 0 {
		t.Fatal("a malformed number reached a vendor")
	}
}

func TestWeightsSplitTraffic(t *testing.T) {
	ali, ten := newAliyun(t), newTencent(t)
	providers := map[string]map[string]string{"ali": aliyunSettings(ali, "70"), "tencent": tencentSettings(ten, "30")}

	// A stubbed chooser walking 0..99 gives exactly the weights.
	var mu sync.Mutex
	next := 0
	stub := func(n int) int { mu.Lock(); defer mu.Unlock(); v := next % n; next++; return v }
	r := router(t, providers, stub)
	for i := range 200 {
		if _, err := r.Send(context.Background(), sms(fmt.Sprint("s", i))); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := len(ali.log.IDs()), len(ten.log.IDs()); a != 140 || b != 60 {
		t.Fatalf("stub chooser: aliyun %d, tencent %d; want 140/60", a, b)
	}

	// A seeded random chooser splits approximately.
	ali2, ten2 := newAliyun(t), newTencent(t)
	rng := rand.New(rand.NewPCG(7, 11))
	r = router(t, map[string]map[string]string{"ali": aliyunSettings(ali2, "70"), "tencent": tencentSettings(ten2, "30")},
		func(n int) int { mu.Lock(); defer mu.Unlock(); return rng.IntN(n) })
	const total = 1000
	for i := range total {
		if _, err := r.Send(context.Background(), sms(fmt.Sprint("r", i))); err != nil {
			t.Fatal(err)
		}
	}
	a := len(ali2.log.IDs())
	if a < 650 || a > 750 || a+len(ten2.log.IDs()) != total {
		t.Fatalf("seeded chooser: aliyun %d of %d, want about 700", a, total)
	}
}

func TestNotConfigured(t *testing.T) {
	_, err := New(registry.Deps{Config: config.Defaults()}, vendor.RouterOptions{})
	if err == nil || !strings.Contains(err.Error(), "aliyun_sms") {
		t.Fatalf("err = %v", err)
	}
	f, ok := registry.Lookup(domain.ChannelSMS)
	if !ok {
		t.Fatal("sms is not registered")
	}
	if _, err := f(registry.Deps{Config: config.Defaults()}); err == nil {
		t.Fatal("factory built an sms channel with no provider")
	}
}

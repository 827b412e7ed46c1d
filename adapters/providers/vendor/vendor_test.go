package vendor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald.dev/adapters/protect"
	"herald.dev/adapters/registry"
	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

const testCh domain.Channel = "vendortest"

// fakeVendor is the behaviour of one fake provider account, by name.
type fakeVendor struct {
	mu     sync.Mutex
	sent   []string
	fail   error
	builds int
}

var (
	fakesMu sync.Mutex
	fakes   = map[string]*fakeVendor{}
)

func fake(name string) *fakeVendor {
	fakesMu.Lock()
	defer fakesMu.Unlock()
	f := fakes[name]
	if f == nil {
		f = &fakeVendor{}
		fakes[name] = f
	}
	return f
}

type fakeClient struct {
	f   *fakeVendor
	tag string
}

func (c *fakeClient) Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	if err := ctx.Err(); err != nil {
		return contracts.Result{}, err
	}
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	if c.f.fail != nil {
		return contracts.Result{}, c.f.fail
	}
	c.f.sent = append(c.f.sent, d.ID)
	return contracts.Result{ProviderID: c.tag + "-" + d.ID}, nil
}

func init() {
	Register(Kind{
		Type:    "vt_fake",
		Channel: testCh,
		Fields: []Field{
			{Key: "account", Required: true},
			{Key: "secret", Secret: true},
			{Key: "endpoint", Default: "https://vendor.example.com"},
		},
		Limits: protect.Options{Rate: 1000},
		New: func(p Provider, env Env) (Client, error) {
			if _, err := EndpointSetting(Lookup2("vt_fake"), p, "endpoint"); err != nil {
				return nil, err
			}
			if p.Settings["account"] == "bad" {
				return nil, Invalid("account", "is bad")
			}
			f := fake(p.Settings["account"])
			f.mu.Lock()
			f.builds++
			f.mu.Unlock()
			return &fakeClient{f: f, tag: p.Settings["account"]}, nil
		},
	})
}

func Lookup2(t string) Kind { k, _ := Lookup(t); return k }

func TestMask(t *testing.T) {
	cases := map[string]string{"": "", "abc": "***", "abcd": "****", "abcde": "*bcde", "secret-value-1234": "*************1234", "密钥密钥密钥": "**密钥密钥"}
	for in, want := range cases {
		if got := Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
	m := MaskSettings("vt_fake", map[string]string{"account": "acc-1", "secret": "s3cr3t-abcd"})
	if m["account"] != "acc-1" || m["secret"] != "*******abcd" {
		t.Fatalf("MaskSettings = %v", m)
	}
	if m := MaskSettings("no_such_type", map[string]string{"x": "plainvalue"}); m["x"] != "******alue" {
		t.Fatalf("unknown kinds must be masked entirely: %v", m)
	}
}

func TestValidate(t *testing.T) {
	k := Lookup2("vt_fake")
	cases := []struct {
		name     string
		settings map[string]string
		want     []string // field names with errors
	}{
		{"ok", map[string]string{"account": "a", "rate": "10", "burst": "5", "max_wait": "0s", "breaker_failures": "3", "breaker_timeout": "1m"}, nil},
		{"missing", map[string]string{}, []string{"settings.account"}},
		{"unknown", map[string]string{"account": "a", "acount": "x"}, []string{"settings.acount"}},
		{"bad rate", map[string]string{"account": "a", "rate": "fast"}, []string{"settings.rate"}},
		{"bad breaker", map[string]string{"account": "a", "breaker_timeout": "1ms"}, []string{"settings.breaker_timeout"}},
		{"bad endpoint", map[string]string{"account": "a", "endpoint": "ftp://x"}, []string{"settings.endpoint"}},
		{"constructor", map[string]string{"account": "bad"}, []string{"settings.account"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fes := k.Validate(Provider{Name: "p", Type: "vt_fake", Settings: tc.settings})
			var got []string
			for _, fe := range fes {
				got = append(got, fe.Field)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("errors on %v (%v), want %v", got, fes, tc.want)
			}
		})
	}
}

func TestParseDefault(t *testing.T) {
	p, err := ParseDefault("main", map[string]string{"type": "vt_fake", "weight": "70", "account": "a"})
	if err != nil || p.Weight != 70 || p.Type != "vt_fake" || p.Settings["account"] != "a" || len(p.Settings) != 1 {
		t.Fatalf("ParseDefault = %+v, %v", p, err)
	}
	if p, _ := ParseDefault("w", map[string]string{"type": "vt_fake", "account": "a"}); p.Weight != DefaultWeight {
		t.Fatalf("default weight = %d", p.Weight)
	}
	for _, raw := range []map[string]string{
		{"account": "a"},
		{"type": "nope", "account": "a"},
		{"type": "vt_fake", "weight": "-1", "account": "a"},
		{"type": "vt_fake"},
	} {
		if _, err := ParseDefault("x", raw); err == nil || !strings.Contains(err.Error(), "providers.x") {
			t.Errorf("ParseDefault(%v) err = %v, want one naming providers.x", raw, err)
		}
	}
}

// seq is a deterministic chooser cycling 0, 1, 2, ...
type seq struct {
	mu sync.Mutex
	i  int
}

func (s *seq) IntN(n int) int { s.mu.Lock(); defer s.mu.Unlock(); v := s.i % n; s.i++; return v }

func TestOrderFollowsWeights(t *testing.T) {
	r := &Router{opt: RouterOptions{Chooser: (&seq{}).IntN}}
	provs := []Provider{{Name: "a", Weight: 70}, {Name: "b", Weight: 30}, {Name: "standby", Weight: 0}}
	counts := map[string]int{}
	for range 1000 {
		o := r.Order(provs)
		if len(o) != 3 || o[2].Name != "standby" {
			t.Fatalf("order %v: the weight-0 standby must come last", o)
		}
		counts[o[0].Name]++
	}
	if counts["a"] != 700 || counts["b"] != 300 {
		t.Fatalf("first choices %v, want a:700 b:300", counts)
	}
}

func newRouter(t *testing.T, defaults map[string]map[string]string, lister registry.ProviderLookup, opt RouterOptions) *Router {
	t.Helper()
	cfg := config.Defaults()
	cfg.Providers = defaults
	deps := registry.Deps{Config: cfg}
	if lister != nil {
		deps.Providers = lister
	}
	r, err := NewRouter(testCh, deps, opt)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func delivery(id string) *contracts.Delivery {
	return &contracts.Delivery{ID: id, AppID: "app1", Channel: testCh, Address: "x"}
}

func TestRouterFailoverAndPermanentStop(t *testing.T) {
	t.Cleanup(func() { fakes = map[string]*fakeVendor{} })
	r := newRouter(t, map[string]map[string]string{
		"a": {"type": "vt_fake", "account": "fa", "weight": "100"},
		"b": {"type": "vt_fake", "account": "fb", "weight": "0"},
	}, nil, RouterOptions{Failover: true})

	res, err := r.Send(context.Background(), delivery("d1"))
	if err != nil || res.ProviderID != "a/fa-d1" {
		t.Fatalf("healthy: %+v, %v", res, err)
	}
	fake("fa").fail = contracts.Retryable("HTTP 503", nil, 0)
	res, err = r.Send(context.Background(), delivery("d2"))
	if err != nil || res.ProviderID != "b/fb-d2" {
		t.Fatalf("a down: %+v, %v; want b to carry it", res, err)
	}
	fake("fa").fail = contracts.Permanent("bad phone", nil)
	_, err = r.Send(context.Background(), delivery("d3"))
	if retry, _ := contracts.Classify(err); err == nil || retry {
		t.Fatalf("recipient error: %v, want permanent", err)
	}
	if got := len(fake("fb").sent); got != 1 {
		t.Fatalf("b sent %d, want 1: a recipient error must not fail over", got)
	}
	fake("fa").fail = protect.RecipientLimited("1/min per number", nil, time.Minute)
	_, err = r.Send(context.Background(), delivery("d4"))
	if retry, after := contracts.Classify(err); !retry || after != time.Minute || len(fake("fb").sent) != 1 {
		t.Fatalf("per-recipient limit: %v (b sent %d), want retryable in 1m without failover", err, len(fake("fb").sent))
	}
	fake("fa").fail = contracts.Retryable("HTTP 503", nil, 0)
	fake("fb").fail = protect.ProviderFault("no balance", nil)
	_, err = r.Send(context.Background(), delivery("d5"))
	if retry, _ := contracts.Classify(err); !retry || !strings.Contains(err.Error(), "all 2") {
		t.Fatalf("both down: %v, want retryable naming both", err)
	}
}

func TestRouterWithoutFailoverUsesOneProvider(t *testing.T) {
	t.Cleanup(func() { fakes = map[string]*fakeVendor{} })
	r := newRouter(t, map[string]map[string]string{
		"a": {"type": "vt_fake", "account": "na", "weight": "1"},
		"b": {"type": "vt_fake", "account": "nb", "weight": "0"},
	}, nil, RouterOptions{})
	fake("na").fail = contracts.Retryable("HTTP 503", nil, 0)
	if _, err := r.Send(context.Background(), delivery("d1")); err == nil {
		t.Fatal("send succeeded")
	}
	if len(fake("nb").sent) != 0 {
		t.Fatal("failed over without Failover")
	}
	// A pinned provider is used regardless of weight.
	d := delivery("d2")
	d.Data = map[string]any{DataProvider: "b"}
	if res, err := r.Send(context.Background(), d); err != nil || res.ProviderID != "b/nb-d2" {
		t.Fatalf("pinned: %+v, %v", res, err)
	}
	d.Data[DataProvider] = "zzz"
	if _, err := r.Send(context.Background(), d); err == nil || !strings.Contains(err.Error(), "zzz") {
		t.Fatalf("unknown pin: %v", err)
	}
}

type listerFunc func(ctx context.Context, appID string) ([]Provider, error)

func (f listerFunc) AppProviders(ctx context.Context, appID string) ([]Provider, error) {
	return f(ctx, appID)
}

func (f listerFunc) ProviderConfig(context.Context, string, string) (map[string]string, bool, error) {
	return nil, false, nil
}

func TestRouterAppProvidersOverrideDefaultsAndRebuildOnChange(t *testing.T) {
	t.Cleanup(func() { fakes = map[string]*fakeVendor{} })
	var mu sync.Mutex
	own := map[string][]Provider{"app1": {{Name: "mine", Type: "vt_fake", Weight: 1, AppID: "app1", Settings: map[string]string{"account": "own1"}}}}
	lister := listerFunc(func(_ context.Context, app string) ([]Provider, error) {
		mu.Lock()
		defer mu.Unlock()
		if app == "broken" {
			return nil, errors.New("db down")
		}
		return own[app], nil
	})
	r := newRouter(t, map[string]map[string]string{"def": {"type": "vt_fake", "account": "dflt"}}, lister, RouterOptions{})
	for range 3 {
		if res, err := r.Send(context.Background(), delivery("d")); err != nil || res.ProviderID != "mine/own1-d" {
			t.Fatalf("app1: %+v, %v", res, err)
		}
	}
	if fake("own1").builds != 1 {
		t.Fatalf("client built %d times for unchanged settings, want 1", fake("own1").builds)
	}
	other := delivery("d")
	other.AppID = "app2"
	if res, err := r.Send(context.Background(), other); err != nil || res.ProviderID != "def/dflt-d" {
		t.Fatalf("app2 uses the default: %+v, %v", res, err)
	}
	mu.Lock()
	own["app1"] = []Provider{{Name: "mine", Type: "vt_fake", Weight: 1, AppID: "app1", Settings: map[string]string{"account": "own2"}}}
	mu.Unlock()
	if res, err := r.Send(context.Background(), delivery("d")); err != nil || res.ProviderID != "mine/own2-d" {
		t.Fatalf("after a settings change: %+v, %v", res, err)
	}
	broken := delivery("d")
	broken.AppID = "broken"
	if _, err := r.Send(context.Background(), broken); err == nil {
		t.Fatal("lookup failure succeeded")
	} else if retry, _ := contracts.Classify(err); !retry {
		t.Fatalf("lookup failure %v is not retryable", err)
	}
}

func TestRouterNotConfigured(t *testing.T) {
	_, err := NewRouter(testCh, registry.Deps{Config: config.Defaults()}, RouterOptions{})
	if !errors.Is(err, registry.ErrNotConfigured) {
		t.Fatalf("err = %v, want ErrNotConfigured", err)
	}
	cfg := config.Defaults()
	cfg.Providers = map[string]map[string]string{"x": {"type": "vt_fake"}}
	if _, err := NewRouter(testCh, registry.Deps{Config: cfg}, RouterOptions{}); err == nil || errors.Is(err, registry.ErrNotConfigured) {
		t.Fatalf("a malformed default must fail loudly, got %v", err)
	}
	r := newRouter(t, nil, listerFunc(func(context.Context, string) ([]Provider, error) { return nil, nil }), RouterOptions{})
	_, err = r.Send(context.Background(), delivery("d"))
	if retry, _ := contracts.Classify(err); err == nil || retry {
		t.Fatalf("no provider at all: %v, want permanent", err)
	}
}

func TestRouterRateLimitFailsOver(t *testing.T) {
	t.Cleanup(func() { fakes = map[string]*fakeVendor{} })
	r := newRouter(t, map[string]map[string]string{
		"a": {"type": "vt_fake", "account": "ra", "weight": "1", "rate": "0.001", "burst": "1", "max_wait": "0s"},
		"b": {"type": "vt_fake", "account": "rb", "weight": "0"},
	}, nil, RouterOptions{Failover: true})
	for i := range 3 {
		if _, err := r.Send(context.Background(), delivery(fmt.Sprint("d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if len(fake("ra").sent) != 1 || len(fake("rb").sent) != 2 {
		t.Fatalf("a sent %d, b sent %d; want a's burst of 1 then b", len(fake("ra").sent), len(fake("rb").sent))
	}
}

func TestDoRedactsCredentialsAndClassifies(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := int(status.Load()); s == 429 {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(429)
			return
		} else if s != 200 {
			w.WriteHeader(s)
			return
		}
		fmt.Fprint(w, `{"ok":true}`)
	}))
	defer srv.Close()
	c := srv.Client()
	ctx := context.Background()
	if r, err := Get(ctx, c, srv.URL+"/x?access_token=SECRET", "vendor"); err != nil || string(r.Body) != `{"ok":true}` {
		t.Fatalf("200: %v", err)
	}
	status.Store(429)
	_, err := Get(ctx, c, srv.URL+"/x?access_token=SECRET", "vendor")
	if !errors.Is(err, protect.ErrThrottled) {
		t.Fatalf("429: %v", err)
	}
	if _, after := contracts.Classify(err); after != 7*time.Second {
		t.Fatalf("429 RetryAfter = %v, want 7s", after)
	}
	status.Store(502)
	if _, err := Get(ctx, c, srv.URL+"/x", "vendor"); err == nil {
		t.Fatal("502 succeeded")
	} else if retry, _ := contracts.Classify(err); !retry {
		t.Fatalf("502 not retryable: %v", err)
	}
	srv.Close()
	_, err = Get(ctx, c, srv.URL+"/x?access_token=SECRET&key=K2", "vendor")
	if err == nil || strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "K2") {
		t.Fatalf("transport error leaks credentials or is nil: %v", err)
	}
	if retry, _ := contracts.Classify(err); !retry {
		t.Fatalf("transport error not retryable: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Get(cctx, c, srv.URL, "vendor"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	h := http.Header{}
	if d := RetryAfter(h, now, 3*time.Second); d != 3*time.Second {
		t.Fatalf("absent: %v", d)
	}
	h.Set("Retry-After", "120")
	if d := RetryAfter(h, now, 0); d != 2*time.Minute {
		t.Fatalf("seconds: %v", d)
	}
	h.Set("Retry-After", now.Add(90*time.Second).Format(http.TimeFormat))
	if d := RetryAfter(h, now, 0); d != 90*time.Second {
		t.Fatalf("date: %v", d)
	}
	h.Set("Retry-After", "999999999")
	if d := RetryAfter(h, now, 0); d != 24*time.Hour {
		t.Fatalf("cap: %v", d)
	}
}

package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/gofiber/fiber/v2"

	"herald.dev/adapters/providers/vendor"
	"herald.dev/adapters/registry"
	"herald.dev/platform/auth"
	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
)

var testKey = bytes.Repeat([]byte{7}, 32)

// robot is a fake WeCom group-robot endpoint: it accepts key "good-key"
// and records the text of each message.
type robot struct {
	*httptest.Server
	mu   sync.Mutex
	keys []string
	msgs []string
}

func newRobot(t *testing.T) *robot {
	r := &robot{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		key := req.URL.Query().Get("key")
		var body struct {
			Text struct {
				Content string `json:"content"`
			} `json:"text"`
		}
		json.NewDecoder(req.Body).Decode(&body)
		r.mu.Lock()
		r.keys = append(r.keys, key)
		r.mu.Unlock()
		if !strings.HasSuffix(key, "good-key") {
			fmt.Fprint(w, `{"errcode":93000,"errmsg":"invalid webhook url"}`)
			return
		}
		r.mu.Lock()
		r.msgs = append(r.msgs, body.Text.Content)
		r.mu.Unlock()
		fmt.Fprint(w, `{"errcode":0,"errmsg":"ok"}`)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *robot) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

func robotProvider(name, key, endpoint string) vendor.Provider {
	return vendor.Provider{Name: name, Type: "wecom_robot", Weight: 1, Settings: map[string]string{"key": key, "endpoint": endpoint}}
}

func TestStore(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := New(db, testKey, nil)
		p, err := s.Create(ctx, "app1", robotProvider("ops", "secret-robot-key-1234", "https://qyapi.weixin.qq.com"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Create(ctx, "app1", robotProvider("ops", "x", "https://x")); !errors.Is(err, ErrExists) {
			t.Fatalf("duplicate: %v", err)
		}
		// Another app may use the same name.
		if _, err := s.Create(ctx, "app2", robotProvider("ops", "other-key", "https://qyapi.weixin.qq.com")); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, "app1", "ops")
		if err != nil || got.Settings["key"] != "secret-robot-key-1234" || got.Type != "wecom_robot" || !got.CreatedAt.Equal(p.CreatedAt) {
			t.Fatalf("Get = %+v, %v", got, err)
		}
		if _, err := s.Get(ctx, "app3", "ops"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("other app: %v", err)
		}

		// Encrypted at rest, bound to the row.
		var raw string
		if err := db.R.QueryRowContext(ctx, `SELECT settings FROM providers WHERE app_id = ? AND name = ?`, "app1", "ops").Scan(&raw); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(raw, "secret-robot-key") || strings.Contains(raw, "qyapi") || !strings.HasPrefix(raw, "v1:") {
			t.Fatalf("settings stored as %q", raw)
		}
		if _, err := db.W.ExecContext(ctx, `UPDATE providers SET settings = ? WHERE app_id = ? AND name = ?`, raw, "app2", "ops"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "app2", "ops"); err == nil {
			t.Fatal("a ciphertext moved to another app's row decrypted")
		}
		if _, err := New(db, bytes.Repeat([]byte{8}, 32), nil).Get(ctx, "app1", "ops"); err == nil || !strings.Contains(err.Error(), "encryption_key") {
			t.Fatalf("wrong key: %v", err)
		}
		if err := s.Delete(ctx, "app2", "ops"); err != nil {
			t.Fatal(err)
		}

		up, err := s.Update(ctx, "app1", "ops", func(cur vendor.Provider) (vendor.Provider, error) {
			cur.Weight = 5
			cur.Settings["msgtype"] = "markdown"
			return cur, nil
		})
		if err != nil || up.Weight != 5 {
			t.Fatalf("Update = %+v, %v", up, err)
		}
		got, _ = s.Get(ctx, "app1", "ops")
		if got.Weight != 5 || got.Settings["msgtype"] != "markdown" || got.Settings["key"] != "secret-robot-key-1234" {
			t.Fatalf("after update %+v", got)
		}
		boom := errors.New("invalid")
		if _, err := s.Update(ctx, "app1", "ops", func(cur vendor.Provider) (vendor.Provider, error) {
			cur.Weight = 99
			return cur, boom
		}); !errors.Is(err, boom) {
			t.Fatalf("failed update: %v", err)
		}
		if got, _ := s.Get(ctx, "app1", "ops"); got.Weight != 5 {
			t.Fatal("a rejected update was written")
		}
		if _, err := s.Update(ctx, "app1", "nope", func(c vendor.Provider) (vendor.Provider, error) { return c, nil }); !errors.Is(err, ErrNotFound) {
			t.Fatalf("update missing: %v", err)
		}

		// Lookups for the routers.
		cfg, ok, err := s.ProviderConfig(ctx, "app1", "ops")
		if err != nil || !ok || cfg["type"] != "wecom_robot" || cfg["weight"] != "5" || cfg["key"] != "secret-robot-key-1234" {
			t.Fatalf("ProviderConfig = %v, %v, %v", cfg, ok, err)
		}
		if _, ok, _ := s.ProviderConfig(ctx, "app2", "ops"); ok {
			t.Fatal("deleted provider still found")
		}
		if err := s.Delete(ctx, "app1", "ops"); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "app1", "ops"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("double delete: %v", err)
		}
		if list, err := s.AppProviders(ctx, "app1"); err != nil || len(list) != 0 {
			t.Fatalf("after delete: %v, %v", list, err)
		}
	})
}

func TestCacheInvalidation(t *testing.T) {
	db := sqldbtest.SQLite(t, Migrations)
	ctx := context.Background()
	s := New(db, testKey, nil)
	if list, _ := s.AppProviders(ctx, "app1"); len(list) != 0 {
		t.Fatal(list)
	}
	// A write through the service is visible at once...
	s.Create(ctx, "app1", robotProvider("a", "k", "https://x.example"))
	if list, _ := s.AppProviders(ctx, "app1"); len(list) != 1 {
		t.Fatalf("after create: %v", list)
	}
	// ...a write by another instance within the cache TTL.
	other := New(db, testKey, nil)
	other.Create(ctx, "app1", robotProvider("b", "k", "https://x.example"))
	if list, _ := s.AppProviders(ctx, "app1"); len(list) != 1 {
		t.Fatalf("cached list changed before its TTL: %v", list)
	}
	s.invalidate("app1")
	if list, _ := s.AppProviders(ctx, "app1"); len(list) != 2 {
		t.Fatalf("after expiry: %v", list)
	}
}

func TestKeyLength(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("a 16-byte key was accepted")
		}
	}()
	New(nil, make([]byte, 16), nil)
}

// api builds a fiber app with the service mounted under /v1; the tenant is
// taken from the X-App header (standing in for auth.Middleware).
func api(s *Service) *fiber.App {
	app := httpx.NewApp(0, nil)
	v1 := app.Group("/v1", func(c *fiber.Ctx) error {
		auth.WithAppID(c, c.Get("X-App"))
		return c.Next()
	})
	s.Mount(v1)
	return app
}

type reply struct {
	status int
	ctype  string
	body   map[string]any
}

func call(t *testing.T, app *fiber.App, appID, method, path string, body any) reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		if s, ok := body.(string); ok {
			rd = strings.NewReader(s)
		} else {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("X-App", appID)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := reply{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type")}
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 {
		if err := json.Unmarshal(b, &r.body); err != nil {
			t.Fatalf("%s %s: body %s", method, path, b)
		}
	}
	return r
}

func fieldOf(r reply) string {
	errs, _ := r.body["errors"].([]any)
	var out []string
	for _, e := range errs {
		out = append(out, e.(map[string]any)["field"].(string))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func TestHTTPAPI(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		bot := newRobot(t)
		defaults := map[string]map[string]string{
			"shared-bot": {"type": "wecom_robot", "key": "default-good-key", "endpoint": bot.URL},
			"shared-sms": {"type": "aliyun_sms", "access_key_id": "LTAI", "access_key_secret": "ali-secret-9999", "sign_name": "Herald", "weight": "3"},
		}
		s := New(db, testKey, defaults)
		app := api(s)

		r := call(t, app, "app1", "POST", "/v1/providers", map[string]any{"name": "ops-bot", "type": "wecom_robot", "weight": 2,
			"settings": map[string]string{"key": "app1-good-key", "endpoint": bot.URL, "msgtype": "text"}})
		if r.status != 201 {
			t.Fatalf("create: %d %v", r.status, r.body)
		}
		settings := r.body["settings"].(map[string]any)
		if settings["key"] != "*********-key" || settings["endpoint"] != bot.URL || r.body["channel"] != "wecom" || r.body["weight"] != 2.0 {
			t.Fatalf("create answered %v", r.body)
		}

		// Validation: each names its field.
		cases := []struct {
			body  any
			field string
		}{
			{map[string]any{"name": "Bad Name", "type": "wecom_robot", "settings": map[string]string{"key": "k"}}, "name"},
			{map[string]any{"name": "x", "type": "carrier_pigeon", "settings": map[string]string{}}, "type"},
			{map[string]any{"name": "x", "type": "aliyun_sms", "settings": map[string]string{"access_key_id": "a"}}, "settings.access_key_secret,settings.sign_name"},
			{map[string]any{"name": "x", "type": "wecom_app", "settings": map[string]string{"corp_id": "c", "corp_secret": "s", "agent_id": "abc"}}, "settings.agent_id"},
			{map[string]any{"name": "x", "type": "wecom_robot", "settings": map[string]string{"key": "k", "colour": "red"}}, "settings.colour"},
			{map[string]any{"name": "x", "type": "wecom_robot", "weight": -1, "settings": map[string]string{"key": "k"}}, "weight"},
			{map[string]any{"name": "x", "type": "wecom_robot", "settings": map[string]string{"key": "k"}, "extra": 1}, "extra"},
			{map[string]any{"name": "x", "type": "wecom_robot"}, "settings"},
		}
		for _, tc := range cases {
			r := call(t, app, "app1", "POST", "/v1/providers", tc.body)
			if r.status != 422 || !strings.HasPrefix(r.ctype, "application/problem+json") || fieldOf(r) != tc.field {
				t.Errorf("POST %v: %d %s fields %q, want 422 naming %q (%v)", tc.body, r.status, r.ctype, fieldOf(r), tc.field, r.body)
			}
		}
		if r := call(t, app, "app1", "POST", "/v1/providers", `{"name":`); r.status != 400 {
			t.Errorf("malformed JSON: %d", r.status)
		}
		if r := call(t, app, "app1", "POST", "/v1/providers", map[string]any{"name": "ops-bot", "type": "wecom_robot", "settings": map[string]string{"key": "k"}}); r.status != 409 {
			t.Errorf("duplicate: %d %v", r.status, r.body)
		}

		// List: own providers and the defaults, with whether each default serves this app.
		r = call(t, app, "app1", "GET", "/v1/providers", nil)
		own := r.body["providers"].([]any)
		defs := r.body["defaults"].([]any)
		if r.status != 200 || len(own) != 1 || len(defs) != 2 {
			t.Fatalf("list: %v", r.body)
		}
		active := map[string]bool{}
		for _, d := range defs {
			m := d.(map[string]any)
			active[m["name"].(string)] = m["active"].(bool)
			if m["name"] == "shared-sms" && m["settings"].(map[string]any)["access_key_secret"] != "***********9999" {
				t.Fatalf("default secret not masked: %v", m)
			}
		}
		if active["shared-bot"] || !active["shared-sms"] {
			t.Fatalf("active flags %v: app1 has its own wecom provider", active)
		}

		// Tenancy: another app sees nothing of app1's.
		for _, m := range []string{"GET", "DELETE"} {
			if r := call(t, app, "app2", m, "/v1/providers/ops-bot", nil); r.status != 404 {
				t.Errorf("%s as app2: %d", m, r.status)
			}
		}
		if r := call(t, app, "app2", "PUT", "/v1/providers/ops-bot", map[string]any{"settings": map[string]string{"key": "k"}}); r.status != 404 {
			t.Errorf("PUT as app2: %d", r.status)
		}
		if r := call(t, app, "app2", "POST", "/v1/providers/ops-bot/test", map[string]any{}); r.status != 404 {
			t.Errorf("test as app2: %d", r.status)
		}

		// PUT: a masked secret sent back keeps the stored value.
		r = call(t, app, "app1", "GET", "/v1/providers/ops-bot", nil)
		masked := r.body["settings"].(map[string]any)
		r = call(t, app, "app1", "PUT", "/v1/providers/ops-bot", map[string]any{"weight": 7,
			"settings": map[string]any{"key": masked["key"], "endpoint": bot.URL, "msgtype": "markdown"}})
		if r.status != 200 || r.body["weight"] != 7.0 {
			t.Fatalf("put: %d %v", r.status, r.body)
		}
		stored, _ := s.Get(context.Background(), "app1", "ops-bot")
		if stored.Settings["key"] != "app1-good-key" || stored.Settings["msgtype"] != "markdown" {
			t.Fatalf("stored after PUT: %v", stored.Settings)
		}
		r = call(t, app, "app1", "PUT", "/v1/providers/ops-bot", map[string]any{"settings": map[string]any{"key": "k", "msgtype": "carrier"}})
		if r.status != 422 || fieldOf(r) != "settings.msgtype" {
			t.Fatalf("invalid PUT: %d %v", r.status, r.body)
		}
		if again, _ := s.Get(context.Background(), "app1", "ops-bot"); again.Settings["msgtype"] != "markdown" {
			t.Fatal("an invalid PUT changed the provider")
		}
		// Back to text for the test sends below.
		call(t, app, "app1", "PUT", "/v1/providers/ops-bot", map[string]any{"settings": map[string]any{"key": "app1-good-key", "endpoint": bot.URL}})

		// Test sends.
		r = call(t, app, "app1", "POST", "/v1/providers/ops-bot/test", map[string]any{"text": "hello from the test"})
		if r.status != 200 || r.body["ok"] != true || r.body["channel"] != "wecom" {
			t.Fatalf("test: %d %v", r.status, r.body)
		}
		if msgs := bot.messages(); len(msgs) != 1 || msgs[0] != "Herald test\nhello from the test" {
			t.Fatalf("robot saw %v", msgs)
		}
		r = call(t, app, "app1", "POST", "/v1/providers/shared-bot/test", map[string]any{})
		if r.status != 200 {
			t.Fatalf("test of a default: %d %v", r.status, r.body)
		}
		call(t, app, "app1", "POST", "/v1/providers", map[string]any{"name": "broken", "type": "wecom_robot", "settings": map[string]string{"key": "revoked", "endpoint": bot.URL}})
		r = call(t, app, "app1", "POST", "/v1/providers/broken/test", map[string]any{})
		if r.status != 502 || r.body["failure"] != "provider_fault" || !strings.Contains(r.body["detail"].(string), "93000") || !strings.HasPrefix(r.ctype, "application/problem+json") {
			t.Fatalf("failing test: %d %v", r.status, r.body)
		}
		call(t, app, "app1", "POST", "/v1/providers", map[string]any{"name": "corp", "type": "wecom_app", "settings": map[string]string{"corp_id": "c", "corp_secret": "s", "agent_id": "1", "endpoint": bot.URL}})
		if r := call(t, app, "app1", "POST", "/v1/providers/corp/test", map[string]any{}); r.status != 422 || fieldOf(r) != "to" {
			t.Fatalf("test without to: %d %v", r.status, r.body)
		}
		if r := call(t, app, "app1", "POST", "/v1/providers/nope/test", map[string]any{}); r.status != 404 {
			t.Fatalf("test of unknown: %d", r.status)
		}

		if r := call(t, app, "app1", "DELETE", "/v1/providers/ops-bot", nil); r.status != 204 {
			t.Fatalf("delete: %d", r.status)
		}
		if r := call(t, app, "app1", "GET", "/v1/providers/ops-bot", nil); r.status != 404 {
			t.Fatalf("after delete: %d", r.status)
		}
	})
}

// The routers send each app's messages through its own providers and the
// defaults for apps without any.
func TestRoutersUseAppProviders(t *testing.T) {
	db := sqldbtest.SQLite(t, Migrations)
	bot := newRobot(t)
	defaults := map[string]map[string]string{"shared-bot": {"type": "wecom_robot", "key": "default-good-key", "endpoint": bot.URL}}
	s := New(db, testKey, defaults)
	cfg := config.Defaults()
	cfg.Providers = defaults
	f, ok := registry.Lookup(domain.ChannelWeCom)
	if !ok {
		t.Fatal("wecom not registered")
	}
	sender, err := f(registry.Deps{Config: cfg, Providers: s})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(context.Background(), "app1", robotProvider("mine", "app1-good-key", bot.URL)); err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"app1", "app2"} {
		d := &contracts.Delivery{ID: "dlv_" + app, AppID: app, Channel: domain.ChannelWeCom, Content: domain.Content{Text: "for " + app}}
		if _, err := sender.Send(context.Background(), d); err != nil {
			t.Fatalf("%s: %v", app, err)
		}
	}
	bot.mu.Lock()
	keys := fmt.Sprint(bot.keys)
	bot.mu.Unlock()
	if keys != "[app1-good-key default-good-key]" {
		t.Fatalf("robot keys used %s, want app1's own then the default", keys)
	}
}

// Every mounted route is documented, with {name} path parameters.
func TestOpenAPICoversRoutes(t *testing.T) {
	s := New(sqldbtest.SQLite(t, Migrations), testKey, nil)
	app := api(s)
	doc := s.OpenAPI()
	param := regexp.MustCompile(`:([a-z]+)`)
	n := 0
	for _, r := range app.GetRoutes(true) {
		if r.Method == "HEAD" || !strings.HasPrefix(r.Path, "/v1/providers") {
			continue
		}
		n++
		p := param.ReplaceAllString(r.Path, "{$1}")
		ops, ok := doc[p].(map[string]any)
		if !ok || ops[strings.ToLower(r.Method)] == nil {
			t.Errorf("%s %s is not in OpenAPI()", r.Method, p)
		}
	}
	if n != 6 {
		t.Fatalf("%d routes, want 6", n)
	}
	if b, err := json.Marshal(doc); err != nil || !strings.Contains(string(b), `"in":"path"`) {
		t.Fatalf("doc does not marshal or lacks path params: %v", err)
	}
}

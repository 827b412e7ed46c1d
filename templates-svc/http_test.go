package templatesvc

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/auth"
	"herald.dev/platform/httpx"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
)

type env struct {
	app        *fiber.App
	svc        *Service
	keyA, keyB string
}

func newEnv(t *testing.T, db *sqldb.DB) *env {
	t.Helper()
	as := auth.NewStore(db, 0)
	_, keyA, err := as.CreateApp(context.Background(), "shop")
	sqldbtest.Must(t, err, "create app a")
	_, keyB, err := as.CreateApp(context.Background(), "bank")
	sqldbtest.Must(t, err, "create app b")
	app := httpx.NewApp(0, nil)
	svc := New(db, Options{})
	svc.Mount(app.Group("/v1", auth.Middleware(as)))
	return &env{app: app, svc: svc, keyA: keyA, keyB: keyB}
}

type reply struct {
	status int
	ctype  string
	header map[string]string
	raw    []byte
	obj    map[string]any
}

func (r reply) field() string {
	errs, _ := r.obj["errors"].([]any)
	if len(errs) == 0 {
		return ""
	}
	f, _ := errs[0].(map[string]any)["field"].(string)
	return f
}

func (r reply) fields() []string {
	var out []string
	errs, _ := r.obj["errors"].([]any)
	for _, e := range errs {
		out = append(out, e.(map[string]any)["field"].(string))
	}
	return out
}

func (e *env) do(t *testing.T, key, method, path, body string, ctype ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != "" {
		ct := "application/json"
		if len(ctype) > 0 {
			ct = ctype[0]
		}
		req.Header.Set("Content-Type", ct)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := e.app.Test(req, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), raw: raw,
		header: map[string]string{"Location": resp.Header.Get("Location")}}
	if len(raw) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.UseNumber()
		_ = dec.Decode(&r.obj)
	}
	return r
}

func (e *env) want(t *testing.T, r reply, status int, what string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, r.status, status, r.raw)
	}
	if status >= 400 && r.ctype != "application/problem+json" {
		t.Fatalf("%s: content type %q, want application/problem+json", what, r.ctype)
	}
}

const welcome = `{"code":"welcome","name":"Welcome","category":"onboarding",
	"variants":{"email":{"subject":"Welcome {{.name}}","text":"Hi {{.name}}","html":"<p>Hi {{.name}}</p>"},
		"sms":{"text":"Hi {{.name}}"},"inapp":{"title":"Welcome","body":"Hi {{.name}}"}},
	"locales":{"de":{"email":{"subject":"Willkommen {{.name}}","text":"Hallo {{.name}}"}},
		"pt-BR":{"sms":{"text":"Olá {{.name}}"}}},
	"variables":[{"name":"name","sample":"Ada"}]}`

func TestHTTPLifecycle(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		r := e.do(t, e.keyA, "POST", "/v1/templates", welcome)
		e.want(t, r, 201, "create")
		if r.obj["version"] != json.Number("1") || r.header["Location"] != "/v1/templates/welcome" {
			t.Fatalf("create: %s (location %q)", r.raw, r.header["Location"])
		}
		if ch := r.obj["channels"].([]any); len(ch) != 3 {
			t.Fatalf("channels %v", ch)
		}
		e.want(t, e.do(t, e.keyA, "POST", "/v1/templates", welcome), 409, "duplicate")

		upd := strings.Replace(welcome, "Welcome {{.name}}", "Welcome aboard {{.name}}", 1)
		r = e.do(t, e.keyA, "PUT", "/v1/templates/welcome", upd)
		e.want(t, r, 200, "update")
		if r.obj["version"] != json.Number("2") {
			t.Fatalf("update: %s", r.raw)
		}
		// optimistic concurrency: editing version 1 again is a conflict
		stale := strings.Replace(welcome, `"code":"welcome",`, `"code":"welcome","version":1,`, 1)
		e.want(t, e.do(t, e.keyA, "PUT", "/v1/templates/welcome", stale), 409, "stale update")
		fresh := strings.Replace(welcome, `"code":"welcome",`, `"version":2,`, 1)
		r = e.do(t, e.keyA, "PUT", "/v1/templates/welcome", fresh)
		e.want(t, r, 200, "update on the latest version")
		if r.obj["version"] != json.Number("3") {
			t.Fatalf("third version: %s", r.raw)
		}

		r = e.do(t, e.keyA, "GET", "/v1/templates/welcome", "")
		e.want(t, r, 200, "get")
		if r.obj["version"] != json.Number("3") || r.obj["variables_derived"] != false {
			t.Fatalf("get: %s", r.raw)
		}
		r = e.do(t, e.keyA, "GET", "/v1/templates/welcome/versions/2", "")
		e.want(t, r, 200, "get v2")
		if r.obj["variants"].(map[string]any)["email"].(map[string]any)["subject"] != "Welcome aboard {{.name}}" {
			t.Fatalf("v2: %s", r.raw)
		}
		e.want(t, e.do(t, e.keyA, "GET", "/v1/templates/welcome/versions/9", ""), 404, "missing version")
		r = e.do(t, e.keyA, "GET", "/v1/templates/welcome/versions?limit=2", "")
		e.want(t, r, 200, "versions")
		items := r.obj["items"].([]any)
		if len(items) != 2 || items[0].(map[string]any)["version"] != json.Number("3") || r.obj["next_cursor"] != "2" {
			t.Fatalf("versions: %s", r.raw)
		}
		r = e.do(t, e.keyA, "GET", "/v1/templates/welcome/versions?limit=2&cursor=2", "")
		if items := r.obj["items"].([]any); len(items) != 1 || r.obj["next_cursor"] != nil {
			t.Fatalf("versions page 2: %s", r.raw)
		}

		r = e.do(t, e.keyA, "POST", "/v1/templates", strings.Replace(welcome, `"welcome"`, `"second"`, 1))
		e.want(t, r, 201, "create second")
		r = e.do(t, e.keyA, "GET", "/v1/templates?limit=1", "")
		e.want(t, r, 200, "list")
		if items := r.obj["items"].([]any); len(items) != 1 || items[0].(map[string]any)["code"] != "second" || r.obj["next_cursor"] != "second" {
			t.Fatalf("list page 1: %s", r.raw)
		}
		r = e.do(t, e.keyA, "GET", "/v1/templates?limit=1&cursor=second", "")
		if items := r.obj["items"].([]any); len(items) != 1 || items[0].(map[string]any)["code"] != "welcome" {
			t.Fatalf("list page 2: %s", r.raw)
		}

		e.want(t, e.do(t, e.keyA, "DELETE", "/v1/templates/welcome", ""), 204, "delete")
		e.want(t, e.do(t, e.keyA, "GET", "/v1/templates/welcome", ""), 404, "get deleted")
		e.want(t, e.do(t, e.keyA, "DELETE", "/v1/templates/welcome", ""), 404, "delete twice")
		e.want(t, e.do(t, e.keyA, "POST", "/v1/templates/welcome/preview", `{}`), 404, "preview deleted")
		r = e.do(t, e.keyA, "POST", "/v1/templates", welcome)
		e.want(t, r, 201, "re-create")
		if r.obj["version"] != json.Number("4") {
			t.Fatalf("re-created at %s, want version 4", r.obj["version"])
		}
	})
}

func TestHTTPTenantIsolation(t *testing.T) {
	e := newEnv(t, sqldbtest.SQLite(t))
	e.want(t, e.do(t, e.keyA, "POST", "/v1/templates", welcome), 201, "a creates")
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/templates/welcome", ""},
		{"PUT", "/v1/templates/welcome", welcome},
		{"DELETE", "/v1/templates/welcome", ""},
		{"GET", "/v1/templates/welcome/versions", ""},
		{"GET", "/v1/templates/welcome/versions/1", ""},
		{"POST", "/v1/templates/welcome/preview", `{"data":{"name":"x"}}`},
	} {
		e.want(t, e.do(t, e.keyB, c.method, c.path, c.body), 404, "app b "+c.method+" "+c.path)
	}
	r := e.do(t, e.keyB, "GET", "/v1/templates", "")
	if items := r.obj["items"].([]any); len(items) != 0 {
		t.Fatalf("b lists a's templates: %s", r.raw)
	}
	// b's own template with the same code is independent
	r = e.do(t, e.keyB, "POST", "/v1/templates", welcome)
	e.want(t, r, 201, "b creates the same code")
	if r.obj["version"] != json.Number("1") {
		t.Fatalf("b's version %v", r.obj["version"])
	}
	r = e.do(t, e.keyA, "GET", "/v1/templates/welcome", "")
	e.want(t, r, 200, "a still has its template")
	e.want(t, e.do(t, "", "GET", "/v1/templates", ""), 401, "no key")
}

func TestHTTPBadInput(t *testing.T) {
	e := newEnv(t, sqldbtest.SQLite(t))
	e.want(t, e.do(t, e.keyA, "POST", "/v1/templates", welcome), 201, "create")
	cases := []struct {
		name, method, path, body string
		status                   int
		field                    string
	}{
		{"malformed json", "POST", "/v1/templates", `{"code":`, 400, ""},
		{"empty body", "POST", "/v1/templates", ` `, 400, ""},
		{"unknown field", "POST", "/v1/templates", `{"code":"x","name":"x","variants":{"sms":{"text":"x"}},"nope":1}`, 422, "nope"},
		{"unknown nested field", "POST", "/v1/templates", `{"code":"x","name":"x","variants":{"email":{"subjekt":"x","text":"y"}}}`, 422, "variants.email.subjekt"},
		{"unknown channel", "POST", "/v1/templates", `{"code":"x","name":"x","variants":{"fax":{"text":"x"}}}`, 422, "variants.fax"},
		{"wrong type", "POST", "/v1/templates", `{"code":"x","name":"x","variants":{"email":{"subject":5,"text":"y"}}}`, 422, "variants.email.subject"},
		{"variants not object", "POST", "/v1/templates", `{"code":"x","name":"x","variants":[1]}`, 422, "variants"},
		{"no variants", "POST", "/v1/templates", `{"code":"x","name":"x"}`, 422, "variants"},
		{"invalid syntax", "POST", "/v1/templates", `{"code":"x","name":"x","variants":{"email":{"subject":"s","html":"<p>{{.name</p>"}}}`, 422, "variants.email.html"},
		{"locale syntax", "POST", "/v1/templates", `{"code":"x","name":"x","variants":{"sms":{"text":"a"}},"locales":{"fr":{"sms":{"text":"{{end}}"}}}}`, 422, "locales.fr.sms.text"},
		{"bad code", "POST", "/v1/templates", `{"code":"Hello World","name":"x","variants":{"sms":{"text":"x"}}}`, 422, "code"},
		{"version on create", "POST", "/v1/templates", `{"code":"x","name":"x","version":3,"variants":{"sms":{"text":"x"}}}`, 422, "version"},
		{"variable type", "POST", "/v1/templates", `{"code":"x","name":"x","variants":{"sms":{"text":"x"}},"variables":[{"name":"a","required":"yes"}]}`, 422, "variables[0].required"},
		{"variable unknown field", "POST", "/v1/templates", `{"code":"x","name":"x","variants":{"sms":{"text":"x"}},"variables":[{"name":"a","type":"string"}]}`, 422, "variables[0].type"},
		{"text/plain", "POST", "/v1/templates", `{}`, 415, ""},
		{"rename", "PUT", "/v1/templates/welcome", strings.Replace(welcome, `"welcome"`, `"other"`, 1), 422, "code"},
		{"bad path code", "GET", "/v1/templates/Not%20Valid", "", 422, "code"},
		{"bad version path", "GET", "/v1/templates/welcome/versions/zero", "", 422, "version"},
		{"bad limit", "GET", "/v1/templates?limit=100000", "", 422, "limit"},
		{"bad versions cursor", "GET", "/v1/templates/welcome/versions?cursor=x", "", 422, "cursor"},
		{"preview null filled by sample", "POST", "/v1/templates/welcome/preview", `{"data":{"name":null},"channel":"sms"}`, 200, ""},
		{"preview unknown channel", "POST", "/v1/templates/welcome/preview", `{"channel":"pigeon"}`, 422, "channel"},
		{"preview channel without variant", "POST", "/v1/templates/welcome/preview", `{"channel":"webhook"}`, 422, "channel"},
		{"preview bad locale", "POST", "/v1/templates/welcome/preview", `{"locale":"not a locale"}`, 422, "locale"},
		{"preview unknown field", "POST", "/v1/templates/welcome/preview", `{"datum":{}}`, 422, "datum"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r reply
			if tc.name == "text/plain" {
				r = e.do(t, e.keyA, tc.method, tc.path, tc.body, "text/plain")
			} else {
				r = e.do(t, e.keyA, tc.method, tc.path, tc.body)
			}
			e.want(t, r, tc.status, tc.name)
			if tc.field != "" && r.field() != tc.field {
				t.Fatalf("field %q (all %v), want %q: %s", r.field(), r.fields(), tc.field, r.raw)
			}
		})
	}

	// a template whose variables have no samples: missing data is a 422 naming data
	r := e.do(t, e.keyA, "POST", "/v1/templates", `{"code":"derived","name":"d","variants":{"sms":{"text":"{{.a}} {{.b}}"}}}`)
	e.want(t, r, 201, "create derived")
	r = e.do(t, e.keyA, "POST", "/v1/templates/derived/preview", `{"data":{"a":"x"}}`)
	e.want(t, r, 422, "preview missing")
	if r.field() != "data" || !strings.Contains(string(r.raw), "missing template variables: b") {
		t.Fatalf("preview missing: %s", r.raw)
	}
	// an execution error names the field
	r = e.do(t, e.keyA, "POST", "/v1/templates", `{"code":"nested","name":"n","variants":{"inapp":{"title":"t","body":"{{.user.name}}"}}}`)
	e.want(t, r, 201, "create nested")
	r = e.do(t, e.keyA, "POST", "/v1/templates/nested/preview", `{"data":{"user":{"id":1}}}`)
	e.want(t, r, 422, "preview exec error")
	if r.field() != "variants.inapp.body" {
		t.Fatalf("exec error: %s", r.raw)
	}
	// nothing half-written: failed creates left no rows
	var n int
	sqldbtest.Must(t, e.svc.db.R.QueryRow(`SELECT COUNT(*) FROM templates WHERE code = 'x'`).Scan(&n), "count")
	if n != 0 {
		t.Fatalf("%d rows for rejected template x", n)
	}
}

func TestHTTPPreviewLocalesAndEscaping(t *testing.T) {
	e := newEnv(t, sqldbtest.SQLite(t))
	e.want(t, e.do(t, e.keyA, "POST", "/v1/templates", welcome), 201, "create")
	r := e.do(t, e.keyA, "POST", "/v1/templates/welcome/preview", `{"data":{"name":"<b>Bob</b>"},"locale":"de-AT"}`)
	e.want(t, r, 200, "preview")
	chans := r.obj["channels"].(map[string]any)
	email := chans["email"].(map[string]any)
	if email["locale"] != "de" || email["subject"] != "Willkommen <b>Bob</b>" || email["text"] != "Hallo <b>Bob</b>" {
		t.Fatalf("de-AT email falls back to de: %v", email)
	}
	sms := chans["sms"].(map[string]any)
	if sms["locale"] != "default" || sms["text"] != "Hi <b>Bob</b>" {
		t.Fatalf("de-AT sms falls back to default: %v", sms)
	}
	r = e.do(t, e.keyA, "POST", "/v1/templates/welcome/preview", `{"data":{"name":"<b>Bob</b>"},"channel":"email"}`)
	email = r.obj["channels"].(map[string]any)["email"].(map[string]any)
	if email["html"] != "<p>Hi &lt;b&gt;Bob&lt;/b&gt;</p>" || email["locale"] != "default" {
		t.Fatalf("html not escaped: %v", email)
	}
	r = e.do(t, e.keyA, "POST", "/v1/templates/welcome/preview", `{"locale":"pt-BR","channel":"sms"}`)
	sms = r.obj["channels"].(map[string]any)["sms"].(map[string]any)
	if sms["text"] != "Olá Ada" || sms["locale"] != "pt-BR" || r.obj["data"].(map[string]any)["name"] != "Ada" {
		t.Fatalf("sample fills data: %s", r.raw)
	}
}

func TestOpenAPICoversRoutes(t *testing.T) {
	app := fiber.New()
	New(nil, Options{}).Mount(app.Group("/v1"))
	doc := OpenAPI()
	want := map[string]bool{}
	for _, r := range app.GetRoutes(true) {
		if r.Method == fiber.MethodHead {
			continue
		}
		p := r.Path
		for _, name := range []string{"code", "n"} {
			p = strings.ReplaceAll(p, ":"+name, "{"+name+"}")
		}
		want[strings.ToLower(r.Method)+" "+p] = true
	}
	have := map[string]bool{}
	for p, item := range doc {
		for m, op := range item.(map[string]any) {
			have[m+" "+p] = true
			o := op.(map[string]any)
			if o["responses"] == nil || o["operationId"] == nil {
				t.Errorf("%s %s lacks responses or operationId", m, p)
			}
			if strings.Contains(p, "{code}") && !hasParam(o, "code") || strings.Contains(p, "{n}") && !hasParam(o, "n") {
				t.Errorf("%s %s does not declare its path parameters", m, p)
			}
		}
	}
	for k := range want {
		if !have[k] {
			t.Errorf("route %s missing from OpenAPI()", k)
		}
	}
	for k := range have {
		if !want[k] {
			t.Errorf("OpenAPI() documents %s, which Mount does not register", k)
		}
	}
	if _, err := json.Marshal(doc); err != nil {
		t.Fatalf("fragment is not JSON: %v", err)
	}
	if len(want) != 8 {
		t.Fatalf("mounted %d routes, want 8", len(want))
	}
}

func hasParam(op map[string]any, name string) bool {
	ps, _ := op["parameters"].([]any)
	for _, p := range ps {
		if m, ok := p.(map[string]any); ok && m["name"] == name && m["in"] == "path" {
			return true
		}
	}
	return false
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

package profilesvc_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	profilesvc "herald.dev/profile-svc"

	"herald.dev/platform/auth"
	"herald.dev/platform/httpx"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
)

type env struct {
	app        *fiber.App
	svc        *profilesvc.Service
	db         *sqldb.DB
	keyA, keyB string
	appA, appB string
}

func eachHTTP(t *testing.T, fn func(t *testing.T, e *env)) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) { fn(t, newEnv(t, db)) }, sources...)
}

func newEnv(t *testing.T, db *sqldb.DB) *env {
	t.Helper()
	store := auth.NewStore(db, 0)
	appA, keyA, err := store.CreateApp(ctx, "A")
	must(t, err)
	appB, keyB, err := store.CreateApp(ctx, "B")
	must(t, err)
	svc := profilesvc.New(db, profilesvc.Options{})
	app := httpx.NewApp(1<<20, t.Logf)
	svc.Mount(app.Group("/v1", auth.Middleware(store)))
	return &env{app: app, svc: svc, db: db, keyA: keyA, keyB: keyB, appA: appA.ID, appB: appB.ID}
}

type reply struct {
	status int
	body   []byte
	ctype  string
}

func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return m
}

// field returns the first field named by a problem reply.
func (r reply) field() string {
	var p httpx.Problem
	if json.Unmarshal(r.body, &p) != nil || len(p.Errors) == 0 {
		return ""
	}
	return p.Errors[0].Field
}

func (e *env) do(t *testing.T, key, method, path, ctype, body string) reply {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := e.app.Test(req, -1)
	must(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, body: b, ctype: resp.Header.Get("Content-Type")}
	if r.status >= 400 && r.ctype != "application/problem+json" {
		t.Fatalf("%s %s: %d with content type %q", method, path, r.status, r.ctype)
	}
	return r
}

func (e *env) expect(t *testing.T, key, method, path, body string, status int) reply {
	t.Helper()
	ct := ""
	if body != "" {
		ct = "application/json"
	}
	r := e.do(t, key, method, path, ct, body)
	if r.status != status {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, status, r.body)
	}
	return r
}

func TestHTTPUsersAndIsolation(t *testing.T) {
	eachHTTP(t, func(t *testing.T, e *env) {
		A, B := e.keyA, e.keyB
		e.expect(t, A, "POST", "/v1/groups", `{"id":"ops","name":"Ops"}`, 201)
		body := `{"name":"Ann","email":"ann@example.com","phone":"+8613800138000","locale":"zh-CN","timezone":"Asia/Shanghai",
			"identities":{"wechat":"wx","wecom":"wc","dingtalk":"dt","qq":"q"},"groups":["ops"],"webhook_url":"https://h.example.com/ann"}`
		r := e.expect(t, A, "PUT", "/v1/users/ann@corp", body, 201)
		if m := r.json(t); m["id"] != "ann@corp" || m["groups"].([]any)[0] != "ops" || m["identities"].(map[string]any)["qq"] != "q" {
			t.Fatalf("put reply %s", r.body)
		}
		e.expect(t, A, "PUT", "/v1/users/ann@corp", body, 200)
		r = e.expect(t, A, "GET", "/v1/users/ann@corp", "", 200)
		if m := r.json(t); m["email"] != "ann@example.com" || m["webhook_url"] != "https://h.example.com/ann" {
			t.Fatalf("get %s", r.body)
		}
		// B cannot read, change, delete, list or group A's user, nor see A's group
		e.expect(t, B, "GET", "/v1/users/ann@corp", "", 404)
		e.expect(t, B, "DELETE", "/v1/users/ann@corp", "", 404)
		e.expect(t, B, "GET", "/v1/users/ann@corp/preferences", "", 404)
		e.expect(t, B, "PUT", "/v1/users/ann@corp/preferences", `{"channels":{"sms":false}}`, 404)
		e.expect(t, B, "POST", "/v1/users/ann@corp/unsubscribe", `{"category":"x"}`, 404)
		e.expect(t, B, "GET", "/v1/groups/ops", "", 404)
		e.expect(t, B, "PUT", "/v1/groups/ops", `{"name":"mine"}`, 404)
		e.expect(t, B, "DELETE", "/v1/groups/ops", "", 404)
		e.expect(t, B, "GET", "/v1/groups/ops/members", "", 404)
		e.expect(t, B, "POST", "/v1/groups/ops/members", `{"user_ids":["ann@corp"]}`, 404)
		e.expect(t, B, "DELETE", "/v1/groups/ops/members/ann@corp", "", 404)
		if r := e.expect(t, B, "PUT", "/v1/users/bob", `{"groups":["ops"]}`, 422); r.field() != "groups[0]" {
			t.Fatalf("B used A's group: %s", r.body)
		}
		e.expect(t, B, "POST", "/v1/groups", `{"id":"bops"}`, 201)
		e.expect(t, B, "PUT", "/v1/users/bob", `{}`, 201)
		if r := e.expect(t, B, "POST", "/v1/groups/bops/members", `{"user_ids":["bob","ann@corp"]}`, 422); r.field() != "user_ids[1]" {
			t.Fatalf("B added A's user: %s", r.body)
		}
		// the same id in B is B's own user and leaves A's alone
		e.expect(t, B, "PUT", "/v1/users/ann@corp", `{"name":"Not Ann"}`, 201)
		if m := e.expect(t, A, "GET", "/v1/users/ann@corp", "", 200).json(t); m["name"] != "Ann" {
			t.Fatalf("A's user changed by B: %v", m)
		}
		if items := e.expect(t, B, "GET", "/v1/users", "", 200).json(t)["items"].([]any); len(items) != 2 {
			t.Fatalf("B lists %d users", len(items))
		}
		if items := e.expect(t, B, "GET", "/v1/groups", "", 200).json(t)["items"].([]any); len(items) != 1 {
			t.Fatalf("B lists %d groups", len(items))
		}
		e.expect(t, "", "GET", "/v1/users", "", 401)
		e.expect(t, "hk_nope.nope", "GET", "/v1/users", "", 401)
		// delete
		e.expect(t, A, "DELETE", "/v1/users/ann@corp", "", 204)
		e.expect(t, A, "GET", "/v1/users/ann@corp", "", 404)
		e.expect(t, B, "GET", "/v1/users/ann@corp", "", 200)
	})
}

func TestHTTPBadInput(t *testing.T) {
	eachHTTP(t, func(t *testing.T, e *env) {
		A := e.keyA
		e.expect(t, A, "POST", "/v1/groups", `{"id":"g"}`, 201)
		cases := []struct {
			name, method, path, body string
			status                   int
			field                    string
		}{
			{"email", "PUT", "/v1/users/u", `{"email":"nope"}`, 422, "email"},
			{"phone", "PUT", "/v1/users/u", `{"phone":"13800138000"}`, 422, "phone"},
			{"timezone", "PUT", "/v1/users/u", `{"timezone":"Europe/Atlantis"}`, 422, "timezone"},
			{"timezone local", "PUT", "/v1/users/u", `{"timezone":"Local"}`, 422, "timezone"},
			{"locale", "PUT", "/v1/users/u", `{"locale":"!!"}`, 422, "locale"},
			{"webhook", "PUT", "/v1/users/u", `{"webhook_url":"javascript:alert(1)"}`, 422, "webhook_url"},
			{"unknown field", "PUT", "/v1/users/u", `{"nickname":"x"}`, 422, "nickname"},
			{"unknown identity", "PUT", "/v1/users/u", `{"identities":{"icq":"1"}}`, 422, "icq"},
			{"wrong type", "PUT", "/v1/users/u", `{"groups":"g"}`, 422, "groups"},
			{"malformed", "PUT", "/v1/users/u", `{"email":`, 400, ""},
			{"empty", "PUT", "/v1/users/u", ``, 400, ""},
			{"id mismatch", "PUT", "/v1/users/u", `{"id":"v"}`, 422, "id"},
			{"bad path id", "PUT", "/v1/users/a%20b", `{}`, 422, "id"},
			{"unknown group", "PUT", "/v1/users/u", `{"groups":["g","h"]}`, 422, "groups[1]"},
			{"group bad kind", "POST", "/v1/groups", `{"id":"k","kind":"team"}`, 422, "kind"},
			{"group bad id", "POST", "/v1/groups", `{"id":"a/b"}`, 422, "id"},
			{"group unknown parent", "POST", "/v1/groups", `{"id":"k","parent":"zz"}`, 422, "parent"},
			{"group duplicate", "POST", "/v1/groups", `{"id":"g"}`, 409, ""},
			{"group self parent", "PUT", "/v1/groups/g", `{"parent":"g"}`, 422, "parent"},
			{"members empty", "POST", "/v1/groups/g/members", `{"user_ids":[]}`, 422, "user_ids"},
			{"members missing", "POST", "/v1/groups/g/members", `{}`, 422, "user_ids"},
			{"members unknown user", "POST", "/v1/groups/g/members", `{"user_ids":["ghost"]}`, 422, "user_ids[0]"},
			{"prefs quiet equal", "PUT", "/v1/users/p/preferences", `{"quiet_hours":{"start":"08:00","end":"08:00"}}`, 422, "quiet_hours.end"},
			{"prefs channel", "PUT", "/v1/users/p/preferences", `{"channels":{"carrier-pigeon":false}}`, 422, "channels.carrier-pigeon"},
			{"prefs unknown field", "PUT", "/v1/users/p/preferences", `{"mute":true}`, 422, "mute"},
			{"unsubscribe bad category", "POST", "/v1/users/p/unsubscribe", `{"category":"a b"}`, 422, "category"},
			{"unsubscribe missing", "POST", "/v1/users/p/unsubscribe", `{}`, 422, "category"},
			{"bad limit", "GET", "/v1/users?limit=0", ``, 422, "limit"},
			{"big limit", "GET", "/v1/users?limit=5000", ``, 422, "limit"},
			{"bad cursor", "GET", "/v1/users?cursor=%%%", ``, 422, "cursor"},
			{"bad nested", "GET", "/v1/groups/g/members?nested=maybe", ``, 422, "nested"},
			{"bad kind filter", "GET", "/v1/groups?kind=x", ``, 422, "kind"},
			{"unknown user", "GET", "/v1/users/ghost", ``, 404, ""},
			{"unknown group", "GET", "/v1/groups/ghost/members", ``, 404, ""},
			{"unknown user prefs", "GET", "/v1/users/ghost/preferences", ``, 404, ""},
		}
		e.expect(t, A, "PUT", "/v1/users/p", `{}`, 201)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := e.expect(t, A, tc.method, tc.path, tc.body, tc.status)
				if tc.field != "" && r.field() != tc.field {
					t.Fatalf("field %q, want %q: %s", r.field(), tc.field, r.body)
				}
			})
		}
		if r := e.do(t, A, "PUT", "/v1/users/u", "text/plain", `{}`); r.status != 415 {
			t.Fatalf("text/plain: %d", r.status)
		}
		// nothing was half-written by any of it
		if items := e.expect(t, A, "GET", "/v1/users", "", 200).json(t)["items"].([]any); len(items) != 1 {
			t.Fatalf("users after bad input: %v", items)
		}
	})
}

func TestHTTPGroupsMembersPreferences(t *testing.T) {
	eachHTTP(t, func(t *testing.T, e *env) {
		A := e.keyA
		e.expect(t, A, "POST", "/v1/groups", `{"id":"billing","name":"Billing","kind":"module"}`, 201)
		e.expect(t, A, "POST", "/v1/groups", `{"id":"team-a","parent":"billing"}`, 201)
		e.expect(t, A, "POST", "/v1/groups", `{"id":"team-b","parent":"billing"}`, 201)
		e.expect(t, A, "POST", "/v1/groups", `{"id":"team-a1","parent":"team-a"}`, 201)
		if r := e.expect(t, A, "PUT", "/v1/groups/billing", `{"name":"Billing","kind":"module","parent":"team-a1"}`, 422); r.field() != "parent" {
			t.Fatalf("cycle: %s", r.body)
		}
		for _, u := range []string{"u1", "u2", "u3", "u4"} {
			e.expect(t, A, "PUT", "/v1/users/"+u, `{"email":"`+u+`@example.com"}`, 201)
		}
		e.expect(t, A, "POST", "/v1/groups/team-a/members", `{"user_ids":["u1","u2"]}`, 200)
		if m := e.expect(t, A, "POST", "/v1/groups/team-a/members", `{"user_ids":["u1","u2"]}`, 200).json(t); m["added"] != float64(0) {
			t.Fatalf("re-add: %v", m)
		}
		e.expect(t, A, "POST", "/v1/groups/team-b/members", `{"user_ids":["u2","u3"]}`, 200)
		e.expect(t, A, "POST", "/v1/groups/team-a1/members", `{"user_ids":["u3","u4"]}`, 200)
		ids := func(path string) string {
			var out []string
			next := ""
			for {
				p := path
				if next != "" {
					p += "&cursor=" + next
				}
				m := e.expect(t, A, "GET", p, "", 200).json(t)
				for _, it := range m["items"].([]any) {
					out = append(out, it.(map[string]any)["id"].(string))
				}
				n, _ := m["next_cursor"].(string)
				if n == "" {
					return strings.Join(out, ",")
				}
				next = n
			}
		}
		if got := ids("/v1/groups/billing/members?nested=true&limit=1"); got != "u1,u2,u3,u4" {
			t.Fatalf("nested members: %s", got)
		}
		if got := ids("/v1/groups/billing/members?limit=1"); got != "" {
			t.Fatalf("direct members of billing: %s", got)
		}
		if got := ids("/v1/groups/team-a/members?nested=1&limit=2"); got != "u1,u2,u3,u4" {
			t.Fatalf("team-a nested: %s", got)
		}
		e.expect(t, A, "DELETE", "/v1/groups/team-a/members/u1", "", 204)
		if got := ids("/v1/groups/team-a/members?limit=10"); got != "u2" {
			t.Fatalf("after remove: %s", got)
		}
		e.expect(t, A, "DELETE", "/v1/groups/team-a", "", 409)
		if m := e.expect(t, A, "GET", "/v1/groups?kind=module", "", 200).json(t); len(m["items"].([]any)) != 1 {
			t.Fatalf("modules: %v", m)
		}
		if m := e.expect(t, A, "GET", "/v1/groups?parent=billing", "", 200).json(t); len(m["items"].([]any)) != 2 {
			t.Fatalf("children: %v", m)
		}
		if m := e.expect(t, A, "GET", "/v1/users/u2", "", 200).json(t); fmt.Sprint(m["groups"]) != "[team-a team-b]" {
			t.Fatalf("u2 groups: %v", m["groups"])
		}
		// preferences
		prefs := `{"channels":{"sms":false},"categories":{"billing":{"email":false,"sms":true}},"unsubscribed":["marketing"],"quiet_hours":{"start":"22:00","end":"07:00"}}`
		e.expect(t, A, "PUT", "/v1/users/u1/preferences", prefs, 200)
		got := e.expect(t, A, "GET", "/v1/users/u1/preferences", "", 200).json(t)
		var want map[string]any
		must(t, json.Unmarshal([]byte(prefs), &want))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("preferences\n got %v\nwant %v", got, want)
		}
		e.expect(t, A, "POST", "/v1/users/u1/unsubscribe", `{"category":"news"}`, 204)
		e.expect(t, A, "POST", "/v1/users/u1/unsubscribe", `{"category":"news"}`, 204)
		if m := e.expect(t, A, "GET", "/v1/users/u1/preferences", "", 200).json(t); fmt.Sprint(m["unsubscribed"]) != "[marketing news]" {
			t.Fatalf("unsubscribed: %v", m["unsubscribed"])
		}
		e.expect(t, A, "DELETE", "/v1/users/u1/unsubscribe/marketing", "", 204)
		e.expect(t, A, "DELETE", "/v1/users/u1/unsubscribe/marketing", "", 204)
		if m := e.expect(t, A, "GET", "/v1/users/u1/preferences", "", 200).json(t); fmt.Sprint(m["unsubscribed"]) != "[news]" {
			t.Fatalf("unsubscribed: %v", m["unsubscribed"])
		}
		ps, err := e.svc.Profiles(ctx, e.appA, []string{"u1"})
		must(t, err)
		if p := ps["u1"]; p == nil || p.Quiet == nil || p.Quiet.Start != 22*60 || p.Quiet.End != 7*60 || !p.Unsubscribed["news"] {
			t.Fatalf("profile %+v", ps["u1"])
		}
	})
}

func TestHTTPImport(t *testing.T) {
	eachHTTP(t, func(t *testing.T, e *env) {
		A, B := e.keyA, e.keyB
		e.expect(t, A, "POST", "/v1/groups", `{"id":"ops"}`, 201)
		csv := "id,name,email,phone,locale,timezone,wechat,wecom,dingtalk,qq,groups\n" +
			"c1,C One,c1@example.com,+8613800138000,zh-CN,Asia/Shanghai,w,wc,d,q,ops\n" +
			"c2,C Two,bad-email,,,,,,,,\n" +
			"c3,C Three,,,,,,,,,ops|nope\n"
		r := e.do(t, A, "POST", "/v1/users/import", "text/csv; charset=utf-8", csv)
		if r.status != 200 {
			t.Fatalf("csv import: %d %s", r.status, r.body)
		}
		var res profilesvc.ImportResult
		must(t, json.Unmarshal(r.body, &res))
		if res.Imported != 1 || res.Failed != 2 || len(res.Errors) != 2 || res.Errors[0].Line != 3 || res.Errors[0].Field != "email" ||
			res.Errors[1].Line != 4 || res.Errors[1].Field != "groups[1]" {
			t.Fatalf("csv result %s", r.body)
		}
		nd := `{"id":"n1","groups":["ops"]}` + "\n" + `{"id":"n2","phone":"12"}` + "\n"
		r = e.do(t, A, "POST", "/v1/users/import", "application/x-ndjson", nd)
		must(t, json.Unmarshal(r.body, &res))
		if r.status != 200 || res.Imported != 1 || res.Failed != 1 || res.Errors[0].Field != "phone" {
			t.Fatalf("ndjson import: %d %s", r.status, r.body)
		}
		if r := e.do(t, A, "POST", "/v1/users/import", "application/json", nd); r.status != 415 {
			t.Fatalf("json import: %d", r.status)
		}
		if r := e.do(t, A, "POST", "/v1/users/import", "text/csv", "name\nx\n"); r.status != 422 {
			t.Fatalf("csv without id column: %d %s", r.status, r.body)
		}
		// B's import cannot use A's group and does not touch A's users
		r = e.do(t, B, "POST", "/v1/users/import", "application/x-ndjson", `{"id":"c1","groups":["ops"]}`)
		must(t, json.Unmarshal(r.body, &res))
		if res.Imported != 0 || res.Failed != 1 {
			t.Fatalf("B import: %s", r.body)
		}
		e.expect(t, B, "GET", "/v1/users/c1", "", 404)
		if m := e.expect(t, A, "GET", "/v1/groups/ops/members", "", 200).json(t); len(m["items"].([]any)) != 2 {
			t.Fatalf("ops members: %v", m)
		}
	})
}

// TestHTTPImportStreamed sends a chunked body larger than the 1 MiB body limit
// over a real connection: import routes stream and are exempt from the limit.
func TestHTTPImportStreamed(t *testing.T) {
	eachHTTP(t, func(t *testing.T, e *env) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		go e.app.Listener(ln)
		t.Cleanup(func() { _ = e.app.Shutdown() })
		const n = 20000
		pr, pw := io.Pipe()
		go func() {
			bw := bytes.NewBuffer(nil)
			for i := 0; i < n; i++ {
				fmt.Fprintf(bw, `{"id":"s%05d","name":"Streamed user %d","email":"s%d@example.com","locale":"en","timezone":"UTC"}`+"\n", i, i, i)
				if bw.Len() > 32<<10 {
					pw.Write(bw.Bytes())
					bw.Reset()
				}
			}
			fmt.Fprintf(bw, `{"id":"bad one"}`+"\n")
			pw.Write(bw.Bytes())
			pw.Close()
		}()
		req, err := http.NewRequest("POST", "http://"+ln.Addr().String()+"/v1/users/import", pr)
		must(t, err)
		req.Header.Set("Content-Type", "application/x-ndjson")
		req.Header.Set("Authorization", "Bearer "+e.keyA)
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var res profilesvc.ImportResult
		if resp.StatusCode != 200 || json.Unmarshal(b, &res) != nil || res.Imported != n || res.Failed != 1 || res.Errors[0].Line != n+1 {
			t.Fatalf("streamed import: %d %s", resp.StatusCode, b)
		}
	})
}

// TestOpenAPIMatchesRoutes checks that OpenAPI documents exactly the routes Mount registers.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	db := sqldbtest.SQLite(t, sources...)
	svc := profilesvc.New(db, profilesvc.Options{})
	app := fiber.New()
	svc.Mount(app.Group("/v1"))
	param := regexp.MustCompile(`:([a-z_]+)`)
	var routes []string
	for _, r := range app.GetRoutes(true) {
		if r.Method == "HEAD" || !strings.HasPrefix(r.Path, "/v1/") {
			continue
		}
		routes = append(routes, r.Method+" "+param.ReplaceAllString(r.Path, "{$1}"))
	}
	var documented []string
	for path, ops := range svc.OpenAPI() {
		for method, op := range ops.(map[string]any) {
			documented = append(documented, strings.ToUpper(method)+" "+path)
			o := op.(map[string]any)
			if o["operationId"] == "" || o["responses"] == nil {
				t.Errorf("%s %s: incomplete operation", method, path)
			}
			for _, name := range param.FindAllString(strings.NewReplacer("{", ":", "}", "").Replace(path), -1) {
				found := false
				for _, p := range o["parameters"].([]any) {
					pm := p.(map[string]any)
					found = found || (pm["in"] == "path" && pm["name"] == name[1:])
				}
				if !found {
					t.Errorf("%s %s: path parameter %s not declared", method, path, name)
				}
			}
		}
	}
	sort.Strings(routes)
	sort.Strings(documented)
	if strings.Join(routes, "\n") != strings.Join(documented, "\n") {
		t.Fatalf("routes:\n%s\n\ndocumented:\n%s", strings.Join(routes, "\n"), strings.Join(documented, "\n"))
	}
	if _, err := json.Marshal(svc.OpenAPI()); err != nil {
		t.Fatal(err)
	}
}

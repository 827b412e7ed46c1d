package dashboard

import (
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

const summaryJSON = `{"from":"2025-03-09T12:00:00Z","to":"2025-03-10T12:00:00Z",
 "counts":{"accepted":40,"delivered":0,"done":0,"expired":0,"failed":9,"queued":38,"read":0,"retrying":2,"scheduled":0,"sent":27,"skipped":0},
 "channels":{"email":{"counts":{"sent":27},"success_rate":1,"avg_latency_ms":1200,"max_latency_ms":3400},
             "sms":{"counts":{"failed":9},"success_rate":0,"avg_latency_ms":0,"max_latency_ms":0}},
 "success_rate":0.75,"avg_latency_ms":1200,"max_latency_ms":3400}`

func seriesJSON(typ string, counts ...int) string {
	var b strings.Builder
	b.WriteString(`{"bucket":"hour","type":"` + typ + `","from":"2025-03-10T09:00:00Z","to":"2025-03-10T12:00:00Z","points":[`)
	for i, c := range counts {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"t":"2025-03-10T` + []string{"09", "10", "11", "12"}[i] + `:00:00Z","count":` + itoa(c) + `}`)
	}
	b.WriteString("]}")
	return b.String()
}

func TestOverviewPage(t *testing.T) {
	e := newEnv(t)
	e.api.on("GET /v1/analytics/summary", 200, summaryJSON)
	e.api.on("GET /v1/analytics/series?bucket=hour&from=2025-03-09T12%3A00%3A00Z&to=2025-03-10T12%3A00%3A00Z&type=accepted", 200, seriesJSON("accepted", 10, 20, 5, 5))
	e.api.on("GET /v1/analytics/series?bucket=hour&from=2025-03-09T12%3A00%3A00Z&to=2025-03-10T12%3A00%3A00Z&type=sent", 200, seriesJSON("sent", 5, 15, 4, 3))
	e.api.on("GET /v1/analytics/series?bucket=hour&from=2025-03-09T12%3A00%3A00Z&to=2025-03-10T12%3A00%3A00Z&type=failed", 200, seriesJSON("failed", 1, 4, 3, 1))
	b := e.browser()
	b.login()
	e.api.reset()
	a := b.get("/admin/")
	if a.Status != 200 {
		t.Fatalf("overview: %d\n%s", a.Status, a.Body)
	}
	mustContain(t, a.Body,
		`<dd id="success-rate">75.0 %</dd>`, `<dd id="avg-latency">1.20 s</dd>`, `<dd id="max-latency">3.40 s</dd>`,
		"<dt>accepted</dt><dd>40</dd>", "<dt>failed</dt><dd>9</dd>", "<dt>retrying</dt><dd>2</dd>",
		`<th scope="row">email</th>`, "sent 27", `<th scope="row">sms</th>`, "failed 9", "100.0 %", "0.0 %",
		`<svg id="series-chart"`, `class="line line-accepted"`, `class="line line-failed"`,
		"accepted: 40", "sent: 27", "failed: 9", "2025-03-10 10:00:00 UTC",
	)
	mustNotContain(t, a.Body, "<dt>delivered</dt>") // zero counts are left out
	// The summary is asked for exactly the last 24 hours.
	s := e.api.callsTo("GET", "/v1/analytics/summary")
	if len(s) != 1 || s[0].Query != "from=2025-03-09T12%3A00%3A00Z&to=2025-03-10T12%3A00%3A00Z" {
		t.Fatalf("summary calls: %+v", s)
	}

	// 7 days: the range moves, the tab is current.
	e.api.reset()
	a = b.get("/admin/?range=7d")
	mustContain(t, a.Body, `aria-current="page">Last 7 days`)
	s = e.api.callsTo("GET", "/v1/analytics/summary")
	if len(s) != 1 || s[0].Query != "from=2025-03-03T12%3A00%3A00Z&to=2025-03-10T12%3A00%3A00Z" {
		t.Fatalf("7d summary calls: %+v", s)
	}
	// The series answers for 7d are not set up: the page says so, and still shows the summary.
	if a.Status != http.StatusNotFound {
		t.Errorf("status %d", a.Status)
	}
	mustContain(t, a.Body, "The series could not be loaded", "404 Not Found", `<dd id="success-rate">75.0 %</dd>`)
}

func TestBuildChart(t *testing.T) {
	c := buildChart([]string{"a", "b"}, []*Series{
		{Points: []Point{{T: "2025-03-10T00:00:00Z", Count: 0}, {T: "2025-03-10T01:00:00Z", Count: 8}}},
		nil,
	}, false)
	if c.Max != 8 || c.Empty || len(c.Lines) != 2 || c.Lines[0].Total != 8 || c.Lines[1].Points != "" {
		t.Fatalf("chart: %+v", c)
	}
	// 8 sits on the top grid line; 0 on the baseline.
	if c.Lines[0].Points != "48.0,190.0 692.0,10.0" {
		t.Fatalf("points %q", c.Lines[0].Points)
	}
	if c.YTicks[4].Label != "8" || c.YTicks[2].Label != "4" {
		t.Fatalf("ticks %+v", c.YTicks)
	}
	if len(c.Rows) != 2 || !reflect.DeepEqual(c.Rows[1].Values, []int64{8, 0}) {
		t.Fatalf("rows %+v", c.Rows)
	}
	empty := buildChart([]string{"a"}, []*Series{{}}, false)
	if !empty.Empty || len(empty.Rows) != 0 {
		t.Fatalf("empty chart %+v", empty)
	}
	for _, tc := range []struct{ in, want int64 }{{0, 4}, {3, 4}, {5, 8}, {9, 20}, {21, 40}, {41, 80}, {81, 100}, {101, 200}, {401, 500}, {999, 1000}} {
		if got := niceCeil(tc.in); got != tc.want {
			t.Errorf("niceCeil(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

const notificationJSON = `{"id":"ntf_01ABC","status":"processing","priority":"high","kind":"notice","category":"billing",
 "template":"order.shipped","template_version":3,"data":{"order_id":"A-1001"},
 "recipients":[{"user_id":"u-1"},{"email":"ops@example.com"}],"channels":["email","sms"],
 "created_at":"2025-03-10T11:00:00.000Z","dispatched_at":"2025-03-10T11:00:00.120Z","deliveries_total":2,"error":"",
 "deliveries":[
  {"id":"dlv_1","user_id":"u-1","recipient":"user:u-1","channel":"email","address":"u1@example.com","status":"sent","attempts":1,"error":"","parent_id":"","created_at":"2025-03-10T11:00:00.200Z","updated_at":"2025-03-10T11:00:01.000Z","sent_at":"2025-03-10T11:00:01.000Z"},
  {"id":"dlv_2","user_id":"u-1","recipient":"user:u-1","channel":"sms","address":"+8613800138000","status":"failed","attempts":3,"error":"vendor said: invalid signature","parent_id":"","created_at":"2025-03-10T11:00:00.200Z","updated_at":"2025-03-10T11:05:00.000Z"}]}`

const traceJSON = `{"notification_id":"ntf_01ABC","events":[
 {"notification_id":"ntf_01ABC","type":"accepted","at":"2025-03-10T11:00:00Z"},
 {"notification_id":"ntf_01ABC","delivery_id":"dlv_1","channel":"email","type":"sent","at":"2025-03-10T11:00:01Z","latency_ms":1000},
 {"notification_id":"ntf_01ABC","delivery_id":"dlv_2","channel":"sms","type":"failed","error":"vendor said: invalid signature","at":"2025-03-10T11:05:00Z","latency_ms":300000}]}`

func TestNotificationsList(t *testing.T) {
	e := newEnv(t)
	e.api.on("GET /v1/notifications", 200, `{"items":[`+notificationJSON+`],"next_cursor":"cur_2"}`)
	b := e.browser()
	b.login()
	a := b.get("/admin/notifications?status=processing&priority=high&channel=sms&category=billing&user_id=u-1&from=2025-03-10T08:00&to=2025-03-11")
	if a.Status != 200 {
		t.Fatalf("list: %d\n%s", a.Status, a.Body)
	}
	c := e.api.callsTo("GET", "/v1/notifications")
	q, _ := url.ParseQuery(c[len(c)-1].Query)
	want := url.Values{"status": {"processing"}, "priority": {"high"}, "channel": {"sms"}, "category": {"billing"}, "user_id": {"u-1"},
		"from": {"2025-03-10T08:00:00Z"}, "to": {"2025-03-11T00:00:00Z"}, "limit": {"50"}}
	if !reflect.DeepEqual(q, want) {
		t.Fatalf("API query %v, want %v", q, want)
	}
	mustContain(t, a.Body,
		`<a href="/admin/notifications/ntf_01ABC">ntf_01ABC</a>`, `<span class="badge">processing</span>`,
		`<a href="/admin/templates/order.shipped">order.shipped</a>`, " v3", "email, sms", "user u-1", "email ops@example.com",
		`<option value="processing" selected>`, `<option value="high" selected>`, `value="2025-03-10T08:00"`, `value="2025-03-11T00:00"`,
		"Next page", "cursor=cur_2", "Clear filters",
	)
	// The next page keeps the filters and passes the cursor on.
	e.api.reset()
	a = b.get("/admin/notifications?status=processing&cursor=cur_2")
	c = e.api.callsTo("GET", "/v1/notifications")
	if len(c) != 1 || !strings.Contains(c[0].Query, "cursor=cur_2") || !strings.Contains(c[0].Query, "status=processing") {
		t.Fatalf("page 2 call: %+v", c)
	}
	mustContain(t, a.Body, `href="/admin/notifications?status=processing">« First page`)

	// A date the page cannot read is reported next to its field, without calling the API.
	e.api.reset()
	a = b.get("/admin/notifications?from=yesterday")
	if a.Status != http.StatusUnprocessableEntity || len(e.api.callsTo("GET", "/v1/notifications")) != 0 {
		t.Fatalf("bad date: %d %+v", a.Status, e.api.calls)
	}
	mustContain(t, fieldBlock(t, a.Body, "from"), "must be a date and time", `aria-invalid="true"`)

	// The API's own 422 for a filter lands next to that filter.
	e.api.on("GET /v1/notifications", 422, `{"type":"https://herald.dev/problems/validation_failed","title":"The request has invalid fields","status":422,
		"code":"validation_failed","detail":"channel: unknown channel \"fax\"","errors":[{"field":"channel","reason":"unknown channel \"fax\""}]}`)
	a = b.get("/admin/notifications?channel=fax")
	if a.Status != 422 {
		t.Fatalf("422: %d", a.Status)
	}
	mustContain(t, fieldBlock(t, a.Body, "channel"), "unknown channel &#34;fax&#34;")
	mustContain(t, a.Body, "422 Unprocessable Entity", "validation_failed")
}

func TestNotificationDetailAndResend(t *testing.T) {
	e := newEnv(t)
	e.api.on("GET /v1/notifications/ntf_01ABC", 200, notificationJSON)
	e.api.on("GET /v1/notifications/ntf_01ABC/events", 200, traceJSON)
	b := e.browser()
	b.login()
	a := b.get("/admin/notifications/ntf_01ABC")
	if a.Status != 200 {
		t.Fatalf("detail: %d\n%s", a.Status, a.Body)
	}
	mustContain(t, a.Body,
		`<table id="deliveries-table">`, "dlv_1", "dlv_2", "u1@example.com", "+8613800138000",
		`<span class="badge ok">sent</span>`, `<span class="badge bad">failed</span>`, "<td>3</td>",
		"vendor said: invalid signature", "2025-03-10 11:05:00 UTC", "2025-03-10 11:00:01 UTC",
		`<table id="events-table">`, `<span class="badge">accepted</span>`, "5.0 min",
		`id="resend">Resend 1 failed`, "&#34;order_id&#34;: &#34;A-1001&#34;", "Deliveries (2)",
	)

	// Resend: the API is called, the page comes back with the count.
	e.api.on("POST /v1/notifications/ntf_01ABC/resend", 202, `{"id":"ntf_01ABC","resent":1}`)
	a = b.post("/admin/notifications/ntf_01ABC/resend", nil)
	if a.Status != http.StatusSeeOther || a.Header.Get("Location") != "/admin/notifications/ntf_01ABC?flash=resent&n=1" {
		t.Fatalf("resend: %d %q", a.Status, a.Header.Get("Location"))
	}
	if c := e.api.callsTo("POST", "/v1/notifications/ntf_01ABC/resend"); len(c) != 1 || c[0].Key != testKey {
		t.Fatalf("resend calls %+v", c)
	}
	a = b.get(a.Header.Get("Location"))
	mustContain(t, a.Body, "1 failed deliveries were put back in the queue.")

	// A refused resend shows the API's problem on the detail page.
	e.api.on("POST /v1/notifications/ntf_01ABC/resend", 409, `{"type":"https://herald.dev/problems/conflict","title":"Conflict","status":409,"code":"conflict","detail":"notification ntf_01ABC has no failed deliveries to resend","request_id":"req_42"}`)
	a = b.post("/admin/notifications/ntf_01ABC/resend", nil)
	if a.Status != 409 {
		t.Fatalf("409 resend: %d", a.Status)
	}
	mustContain(t, a.Body, "The failed deliveries could not be resent", "409 Conflict", "has no failed deliveries to resend", "req_42", `<table id="deliveries-table">`)

	// Unknown id: the 404 is shown; a missing trace is not an error.
	e.api.on("GET /v1/notifications/ntf_01ABC/events", 404, `{"status":404,"code":"not_found","title":"Not found","detail":"notification events \"ntf_01ABC\" not found"}`)
	a = b.get("/admin/notifications/ntf_01ABC")
	mustContain(t, a.Body, "No events recorded for this notification")
	mustNotContain(t, a.Body, "The event trace could not be loaded")
	a = b.get("/admin/notifications/nope")
	if a.Status != 404 {
		t.Fatalf("unknown: %d", a.Status)
	}
	mustContain(t, a.Body, "The notification could not be loaded", "404 Not Found")
}

const templateJSON = `{"code":"order.shipped","name":"Order shipped","category":"orders","version":3,
 "channels":["email","sms"],
 "variants":{"email":{"subject":"Order {{.order_id}} shipped","text":"Hi {{.name}}"},"sms":{"text":"Order {{.order_id}}","vendor_template":"SMS_1","params":{"order":"{{.order_id}}"}}},
 "locales":{"zh-CN":{"email":{"subject":"订单 {{.order_id}} 已发货","text":"您好"}}},
 "variables":[{"name":"name","required":true,"sample":"Ada"},{"name":"order_id","required":true,"sample":"A-1001","description":"the order"}],
 "variables_derived":false,"created_at":"2025-03-01T00:00:00Z","updated_at":"2025-03-09T00:00:00Z"}`

func TestTemplatesListAndDetail(t *testing.T) {
	e := newEnv(t)
	e.api.on("GET /v1/templates?limit=50", 200, `{"items":[{"code":"order.shipped","name":"Order shipped","category":"orders","version":3,"channels":["email","sms"],"updated_at":"2025-03-09T00:00:00Z"}],"next_cursor":"t2"}`)
	e.api.on("GET /v1/templates/order.shipped", 200, templateJSON)
	b := e.browser()
	b.login()
	a := b.get("/admin/templates")
	mustContain(t, a.Body, `<a href="/admin/templates/order.shipped">order.shipped</a>`, "Order shipped", "v3", "2025-03-09 00:00:00 UTC", "cursor=t2", "New template")

	a = b.get("/admin/templates/order.shipped")
	if a.Status != 200 {
		t.Fatalf("detail: %d\n%s", a.Status, a.Body)
	}
	mustContain(t, a.Body, "Order {{.order_id}} shipped", "SMS_1", "order={{.order_id}}", "订单 {{.order_id}} 已发货",
		`<td class="mono">order_id</td>`, "the order", "&#34;A-1001&#34;", "Version history", `href="/admin/send?template=order.shipped"`,
		`<option value="email">email</option>`)

	// Preview: the sample data goes to the API; the rendering is shown.
	e.api.on("POST /v1/templates/order.shipped/preview", 200, `{"code":"order.shipped","version":3,"data":{"name":"Lin","order_id":"A-1001"},
		"channels":{"email":{"locale":"default","subject":"Order A-1001 shipped","text":"Hi Lin"}}}`)
	a = b.post("/admin/templates/order.shipped/preview", url.Values{"data": {`{"name":"Lin"}`}, "channel": {"email"}})
	if a.Status != 200 {
		t.Fatalf("preview: %d\n%s", a.Status, a.Body)
	}
	c := e.api.callsTo("POST", "/v1/templates/order.shipped/preview")
	if got := jsonBody(t, c[0].Body); !reflect.DeepEqual(got, map[string]any{"data": map[string]any{"name": "Lin"}, "channel": "email"}) {
		t.Fatalf("preview body %v", got)
	}
	mustContain(t, a.Body, `<div id="preview-result">`, "Order A-1001 shipped", "Hi Lin", "(default)")

	// A preview problem names the field: shown next to the data box.
	e.api.on("POST /v1/templates/order.shipped/preview", 422, `{"status":422,"code":"validation_failed","title":"The request has invalid fields",
		"detail":"data: missing template variables: order_id","errors":[{"field":"data","reason":"missing template variables: order_id"}]}`)
	a = b.post("/admin/templates/order.shipped/preview", url.Values{"data": {`{"order_id":null}`}})
	if a.Status != 422 {
		t.Fatalf("preview 422: %d", a.Status)
	}
	mustContain(t, fieldBlock(t, a.Body, "data"), "missing template variables: order_id")
	// Bad JSON never reaches the API.
	e.api.reset()
	a = b.post("/admin/templates/order.shipped/preview", url.Values{"data": {`{oops`}})
	if len(e.api.callsTo("POST", "/v1/templates/order.shipped/preview")) != 0 {
		t.Fatal("bad JSON was sent")
	}
	mustContain(t, fieldBlock(t, a.Body, "data"), "must be a JSON object")

	// Version history and one old version.
	e.api.on("GET /v1/templates/order.shipped/versions", 200, `{"items":[{"version":3,"name":"Order shipped","channels":["email","sms"],"created_at":"2025-03-09T00:00:00Z"},{"version":2,"name":"Order sent","channels":["email"],"created_at":"2025-03-05T00:00:00Z"}]}`)
	a = b.get("/admin/templates/order.shipped/versions")
	mustContain(t, a.Body, `<a href="/admin/templates/order.shipped/versions/2">v2</a>`, "Order sent", "2025-03-05 00:00:00 UTC")
	e.api.on("GET /v1/templates/order.shipped/versions/2", 200, strings.Replace(templateJSON, `"version":3`, `"version":2`, 1))
	a = b.get("/admin/templates/order.shipped/versions/2")
	mustContain(t, a.Body, "version 2", "Restore as a new version", `/admin/templates/order.shipped/edit?from=2`)
	mustNotContain(t, a.Body, `id="edit-template"`)
	if a := b.get("/admin/templates/order.shipped/versions/x"); a.Status != 404 {
		t.Fatalf("bad version: %d", a.Status)
	}
}

func TestTemplateCreate(t *testing.T) {
	e := newEnv(t)
	e.api.on("POST /v1/templates", 201, `{"code":"welcome","name":"Welcome","version":1}`)
	b := e.browser()
	b.login()
	a := b.get("/admin/new-template")
	mustContain(t, a.Body, `name="code"`, `name="variants.email.subject"`, `name="variants.sms.params"`, `name="variants.webhook.body"`, `name="variables"`)
	a = b.post("/admin/templates", url.Values{
		"code": {"welcome"}, "name": {"Welcome"}, "category": {""},
		"variants.email.subject": {"Hi {{.name}}"}, "variants.email.text": {"Welcome\r\naboard"},
		"variants.sms.params": {"a=1\n\nb = {{.name}}\n"}, "variants.sms.vendor_template": {"SMS_9"},
		"variables": {`[{"name":"name","sample":"Ada"}]`}, "locales": {""},
	})
	if a.Status != http.StatusSeeOther || a.Header.Get("Location") != "/admin/templates/welcome?flash=created" {
		t.Fatalf("create: %d %q\n%s", a.Status, a.Header.Get("Location"), a.Body)
	}
	c := e.api.callsTo("POST", "/v1/templates")
	want := map[string]any{
		"code": "welcome", "name": "Welcome",
		"variants": map[string]any{
			"email": map[string]any{"subject": "Hi {{.name}}", "text": "Welcome\naboard"},
			"sms":   map[string]any{"vendor_template": "SMS_9", "params": map[string]any{"a": "1", "b": "{{.name}}"}},
		},
		"variables": []any{map[string]any{"name": "name", "sample": "Ada"}},
	}
	if got := jsonBody(t, c[0].Body); !reflect.DeepEqual(got, want) {
		t.Fatalf("create body\n got %v\nwant %v", got, want)
	}
	if c[0].ContentType != "application/json" {
		t.Fatalf("content type %q", c[0].ContentType)
	}

	// Local mistakes are caught before the API: a params line without "=", bad JSON.
	e.api.reset()
	a = b.post("/admin/templates", url.Values{"code": {"x"}, "name": {"X"}, "variants.sms.params": {"novalue"}, "locales": {"[1]"}})
	if a.Status != 422 || len(e.api.callsTo("POST", "/v1/templates")) != 0 {
		t.Fatalf("local errors: %d", a.Status)
	}
	mustContain(t, fieldBlock(t, a.Body, "variants.sms.params"), "line 1: write key=value")
	mustContain(t, fieldBlock(t, a.Body, "locales"), "must be a JSON object")
	mustContain(t, a.Body, `value="x"`, "novalue") // what was typed is kept

	// API problems land next to their fields; deeper paths keep their path;
	// unknown fields are listed at the top.
	e.api.on("POST /v1/templates", 422, `{"type":"https://herald.dev/problems/validation_failed","title":"The request has invalid fields","status":422,
		"code":"validation_failed","detail":"4 fields are invalid","errors":[
		{"field":"code","reason":"must be 1-64 characters of a-z, 0-9, _ . -"},
		{"field":"variants.email.html","reason":"invalid template at line 1: unexpected \"}\""},
		{"field":"variables[0].required","reason":"must be a boolean"},
		{"field":"variants.email","reason":"needs text or html"},
		{"field":"content.x","reason":"something else"}]}`)
	a = b.post("/admin/templates", url.Values{"code": {"Bad Code"}, "name": {"N"}, "variants.email.subject": {"s"}, "variants.email.html": {"{{.a}"},
		"variables": {`[{"name":"a","required":"yes"}]`}})
	if a.Status != 422 {
		t.Fatalf("api 422: %d", a.Status)
	}
	mustContain(t, fieldBlock(t, a.Body, "code"), "must be 1-64 characters")
	mustContain(t, fieldBlock(t, a.Body, "variants.email.html"), "invalid template at line 1: unexpected &#34;}&#34;")
	mustContain(t, fieldBlock(t, a.Body, "variables"), "variables[0].required: must be a boolean")
	mustContain(t, a.Body, `<div class="field-error" id="err-variants-email"><p>needs text or html</p>`, `<details open id="variant-email">`,
		"Please correct the following", `href="#f-variants-email-html"`, "content.x", "something else", "The API did not accept the template")
}

func TestTemplateEdit(t *testing.T) {
	e := newEnv(t)
	e.api.on("GET /v1/templates/order.shipped", 200, templateJSON)
	b := e.browser()
	b.login()
	a := b.get("/admin/templates/order.shipped/edit")
	if a.Status != 200 {
		t.Fatalf("edit: %d\n%s", a.Status, a.Body)
	}
	mustContain(t, a.Body, `name="version" value="3"`, `value="Order {{.order_id}} shipped"`, "order={{.order_id}}", "&#34;zh-CN&#34;",
		`&#34;sample&#34;: &#34;A-1001&#34;`, `<details open id="variant-email">`, `<details id="variant-inapp">`)
	mustNotContain(t, a.Body, `name="code"`) // the code never changes

	e.api.on("PUT /v1/templates/order.shipped", 200, `{"code":"order.shipped","version":4}`)
	form := url.Values{"version": {"3"}, "name": {"Order shipped"}, "variants.inapp.title": {"Shipped"}, "variants.inapp.body": {"{{.order_id}}"}}
	a = b.post("/admin/templates/order.shipped", form)
	if a.Status != http.StatusSeeOther || a.Header.Get("Location") != "/admin/templates/order.shipped?flash=saved&v=4" {
		t.Fatalf("save: %d %q\n%s", a.Status, a.Header.Get("Location"), a.Body)
	}
	c := e.api.callsTo("PUT", "/v1/templates/order.shipped")
	want := map[string]any{"code": "order.shipped", "name": "Order shipped", "version": float64(3),
		"variants": map[string]any{"inapp": map[string]any{"title": "Shipped", "body": "{{.order_id}}"}}}
	if got := jsonBody(t, c[0].Body); !reflect.DeepEqual(got, want) {
		t.Fatalf("PUT body\n got %v\nwant %v", got, want)
	}
	a = b.get(a.Header.Get("Location"))
	mustContain(t, a.Body, "Saved as version 4.")

	// A stale version: the 409 is shown with the form as typed.
	e.api.on("PUT /v1/templates/order.shipped", 409, `{"status":409,"code":"conflict","title":"Conflict","detail":"template order.shipped has version 5; you edited 3"}`)
	b.get("/admin/templates/order.shipped/edit")
	a = b.post("/admin/templates/order.shipped", form)
	if a.Status != 409 {
		t.Fatalf("409: %d", a.Status)
	}
	mustContain(t, a.Body, "409 Conflict", "has version 5; you edited 3", `value="Shipped"`)

	// Derived variables are not turned into declared ones.
	e.api.on("GET /v1/templates/derived", 200, `{"code":"derived","name":"D","version":1,"variants":{"inapp":{"body":"{{.x}}"}},"variables":[{"name":"x","required":true}],"variables_derived":true}`)
	a = b.get("/admin/templates/derived/edit")
	if !strings.Contains(a.Body, "derived from its fields") || strings.Contains(fieldBlock(t, a.Body, "variables"), "&#34;x&#34;") {
		t.Fatalf("derived variables prefilled:\n%s", fieldBlock(t, a.Body, "variables"))
	}

	// Restoring an old version: its values, the latest version number.
	e.api.on("GET /v1/templates/order.shipped/versions/1", 200, `{"code":"order.shipped","name":"Old name","version":1,"variants":{"email":{"subject":"Old subject"}}}`)
	a = b.get("/admin/templates/order.shipped/edit?from=1")
	mustContain(t, a.Body, `value="Old name"`, `value="Old subject"`, `name="version" value="3"`, "This form holds version 1")
}

func TestTemplateDelete(t *testing.T) {
	e := newEnv(t)
	e.api.on("GET /v1/templates/order.shipped", 200, templateJSON)
	e.api.on("DELETE /v1/templates/order.shipped", 204, "")
	b := e.browser()
	b.login()
	b.get("/admin/templates/order.shipped")
	a := b.post("/admin/templates/order.shipped/delete", nil)
	if a.Status != 422 || len(e.api.callsTo("DELETE", "/v1/templates/order.shipped")) != 0 {
		t.Fatalf("unconfirmed delete: %d", a.Status)
	}
	mustContain(t, a.Body, "Tick the box to confirm.")
	a = b.post("/admin/templates/order.shipped/delete", url.Values{"confirm": {"yes"}})
	if a.Status != http.StatusSeeOther || a.Header.Get("Location") != "/admin/templates?flash=deleted" {
		t.Fatalf("delete: %d %q", a.Status, a.Header.Get("Location"))
	}
	if len(e.api.callsTo("DELETE", "/v1/templates/order.shipped")) != 1 {
		t.Fatal("DELETE not called")
	}
}

func TestUsersPages(t *testing.T) {
	e := newEnv(t)
	e.api.on("GET /v1/users", 200, `{"items":[{"id":"u-1","name":"Li Lei","email":"lilei@example.com","groups":["finance"]}],"next_cursor":"u-2"}`)
	e.api.on("GET /v1/users/u-1", 200, `{"id":"u-1","name":"Li Lei","email":"lilei@example.com","phone":"+8613800138000","locale":"zh-CN",
		"timezone":"Asia/Shanghai","identities":{"wecom":"lilei","qq":""},"groups":["finance","ops"],"webhook_url":"https://hooks.example.com/lilei",
		"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-02-01T00:00:00Z"}`)
	e.api.on("GET /v1/users/u-1/preferences", 200, `{"channels":{"sms":false,"email":true},"categories":{"marketing":{"email":false}},
		"unsubscribed":["newsletter"],"quiet_hours":{"start":"22:00","end":"07:00"}}`)
	e.api.on("GET /v1/users/u-1/inbox", 200, `{"items":[{"id":"in_1","notification_id":"ntf_01ABC","kind":"todo","category":"approvals",
		"title":"Approve expense","body":"Expense #12 waits","state":"pending","created_at":"2025-03-10T10:00:00Z"}],"next_cursor":"","unread":4,"pending":1}`)
	b := e.browser()
	b.login()
	a := b.get("/admin/users")
	mustContain(t, a.Body, `<a href="/admin/users/u-1">u-1</a>`, "Li Lei", "finance", "cursor=u-2")

	a = b.get("/admin/users?id=+u-1+")
	if a.Status != http.StatusSeeOther || a.Header.Get("Location") != "/admin/users/u-1" {
		t.Fatalf("lookup: %d %q", a.Status, a.Header.Get("Location"))
	}
	a = b.get("/admin/users/u-1?state=pending")
	if a.Status != 200 {
		t.Fatalf("user: %d\n%s", a.Status, a.Body)
	}
	mustContain(t, a.Body, "Li Lei", "lilei@example.com", "+8613800138000", "Asia/Shanghai", "wecom id", "https://hooks.example.com/lilei",
		`<li class="mono">finance</li>`, `<li class="mono">ops</li>`,
		`<span class="badge bad">sms off</span>`, `<span class="badge ok">email on</span>`, "Category marketing", "newsletter", "22:00–07:00",
		"4 unread, 1 to-dos pending", "Approve expense", "Expense #12 waits", `<span class="badge warn">pending</span>`,
		`<a href="/admin/notifications/ntf_01ABC">ntf_01ABC</a>`, `<option value="pending" selected>`)
	mustNotContain(t, a.Body, "qq id")
	if c := e.api.callsTo("GET", "/v1/users/u-1/inbox"); len(c) != 1 || !strings.Contains(c[0].Query, "state=pending") {
		t.Fatalf("inbox call %+v", c)
	}

	// An unknown user: the 404 is shown.
	a = b.get("/admin/users/ghost")
	if a.Status != 404 {
		t.Fatalf("ghost: %d", a.Status)
	}
	mustContain(t, a.Body, "The user could not be loaded", "404 Not Found")
}

func TestSendPage(t *testing.T) {
	e := newEnv(t)
	e.api.on("GET /v1/templates?limit=500", 200, `{"items":[{"code":"order.shipped","name":"Order shipped"}]}`)
	e.api.on("POST /v1/notifications", 202, `{"id":"ntf_NEW","status":"accepted"}`)
	b := e.browser()
	b.login()
	a := b.get("/admin/send?template=order.shipped")
	mustContain(t, a.Body, `<option value="order.shipped">Order shipped</option>`, `value="order.shipped"`, `name="channels" value="email"`)

	form := url.Values{"template": {"order.shipped"}, "recipients": {"u-1\nuser:a@b\ngroup:finance\nops@example.com\n+8613800138000\nphone:+1555\n\n"},
		"channels": {"email", "sms"}, "priority": {"high"}, "kind": {""}, "category": {"orders"}, "data": {`{"order_id":"A-1"}`}}
	a = b.post("/admin/send", form)
	if a.Status != http.StatusAccepted {
		t.Fatalf("send: %d\n%s", a.Status, a.Body)
	}
	mustContain(t, a.Body, `<a class="mono" href="/admin/notifications/ntf_NEW">ntf_NEW</a>`, "(accepted).", `name="channels" value="sms" checked`)
	c := e.api.callsTo("POST", "/v1/notifications")
	want := map[string]any{"template": "order.shipped", "channels": []any{"email", "sms"}, "priority": "high", "category": "orders",
		"data": map[string]any{"order_id": "A-1"},
		"recipients": []any{map[string]any{"user_id": "u-1"}, map[string]any{"user_id": "a@b"}, map[string]any{"group_id": "finance"},
			map[string]any{"email": "ops@example.com"}, map[string]any{"phone": "+8613800138000"}, map[string]any{"phone": "+1555"}}}
	if got := jsonBody(t, c[0].Body); !reflect.DeepEqual(got, want) {
		t.Fatalf("send body\n got %v\nwant %v", got, want)
	}

	// Validation problems go next to the fields (recipients[1].email → recipients).
	e.api.on("POST /v1/notifications", 422, `{"status":422,"code":"validation_failed","title":"The request has invalid fields","detail":"3 fields are invalid",
		"errors":[{"field":"template","reason":"template \"nope\" not found"},{"field":"recipients[1].email","reason":"must be a valid email address"},
		{"field":"channels[0]","reason":"unknown channel"}]}`)
	a = b.post("/admin/send", url.Values{"template": {"nope"}, "recipients": {"u-1\nemail:bad"}, "channels": {"email"}})
	if a.Status != 422 {
		t.Fatalf("422: %d", a.Status)
	}
	mustContain(t, fieldBlock(t, a.Body, "template"), "template &#34;nope&#34; not found")
	mustContain(t, fieldBlock(t, a.Body, "recipients"), "recipients[1].email: must be a valid email address")
	mustContain(t, a.Body, `<div class="field-error" id="err-channels"><p>channels[0]: unknown channel</p>`, `href="#f-channels"`)
	mustNotContain(t, a.Body, `id="send-result"`)
}

// TestAPIFailuresAreShown: every page survives API failures of every kind
// (unreachable, 500 with HTML, garbage JSON, wrong types) with a clear
// message and no panic.
func TestAPIFailuresAreShown(t *testing.T) {
	pages := []string{
		"/admin/", "/admin/?range=7d", "/admin/notifications", "/admin/notifications/n1", "/admin/templates", "/admin/templates/t1",
		"/admin/templates/t1/edit", "/admin/templates/t1/versions", "/admin/templates/t1/versions/1", "/admin/users", "/admin/users/u1",
		"/admin/send",
	}
	routes := []string{
		"GET /v1/analytics/summary", "GET /v1/analytics/series", "GET /v1/notifications", "GET /v1/notifications/n1",
		"GET /v1/notifications/n1/events", "GET /v1/templates/t1", "GET /v1/templates/t1/versions", "GET /v1/templates/t1/versions/1",
		"GET /v1/users", "GET /v1/users/u1", "GET /v1/users/u1/preferences", "GET /v1/users/u1/inbox", "GET /v1/templates?limit=500",
		"GET /v1/templates?limit=50",
	}
	for _, tc := range []struct {
		name   string
		set    func(f *fakeAPI, route string)
		expect []string
	}{
		{"unreachable", func(f *fakeAPI, r string) { f.fail(r, errUnreachable) }, []string{"no answer", "connection refused"}},
		{"html 500", func(f *fakeAPI, r string) { f.on(r, 502, "<html><body>Bad gateway</body></html>") }, []string{"502 Bad Gateway", "&lt;html&gt;"}},
		{"problem 500", func(f *fakeAPI, r string) {
			f.on(r, 500, `{"status":500,"code":"internal_error","title":"Internal server error","detail":"the server could not complete the request","request_id":"req_9"}`)
		}, []string{"500 Internal Server Error", "internal_error", "req_9"}},
		{"garbage json", func(f *fakeAPI, r string) {
			f.on(r, 200, `{"items":5,"points":"x","counts":[],"deliveries":{},"events":7,"channels":3}`)
		}, []string{"could not be read"}},
		{"truncated", func(f *fakeAPI, r string) { f.on(r, 200, `{"items":[{"id":"x"`) }, []string{"could not be read"}},
		{"array", func(f *fakeAPI, r string) { f.on(r, 200, `[]`) }, []string{"could not be read"}},
		{"null", func(f *fakeAPI, r string) { f.on(r, 200, `null`) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			b := e.browser()
			b.login()
			for _, r := range routes {
				tc.set(e.api, r)
			}
			for _, p := range pages {
				a := b.get(p)
				if a.Status == 500 || a.Status == http.StatusSeeOther {
					t.Errorf("%s: status %d", p, a.Status)
				}
				if !strings.Contains(a.Body, "</html>") {
					t.Errorf("%s: incomplete page", p)
				}
				if tc.expect != nil && !strings.Contains(a.Body, `class="problem"`) {
					t.Errorf("%s: no problem box\n%s", p, a.Body)
				}
				for _, w := range tc.expect {
					if !strings.Contains(a.Body, w) {
						t.Errorf("%s: page lacks %q", p, w)
					}
				}
			}
		})
	}
}

func TestNotFoundPage(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login()
	a := b.get("/admin/nothing/here")
	if a.Status != 404 {
		t.Fatalf("status %d", a.Status)
	}
	mustContain(t, a.Body, "There is no dashboard page at this address.")
}

func TestFieldErrorPlacement(t *testing.T) {
	names := []string{"recipients", "variants", "variants.email", "variants.email.subject", "data"}
	fe := newFieldErrors(names, []FieldError{
		{"recipients[3].email", "bad"}, {"variants.email.subject", "required"}, {"variants.emailx", "odd"},
		{"variants.email", "needs text"}, {"variants", "at least one"}, {"meta.k", "long"}, {"data", "missing"},
	})
	for name, want := range map[string][]string{
		"recipients":             {"recipients[3].email: bad"},
		"variants.email.subject": {"required"},
		"variants.email":         {"needs text"},
		"variants":               {"variants.emailx: odd", "at least one"},
		"data":                   {"missing"},
	} {
		if got := fe.get(name); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if len(fe.unmatched) != 1 || fe.unmatched[0].Field != "meta.k" {
		t.Errorf("unmatched %+v", fe.unmatched)
	}
	if s := fe.summary(names); len(s) != 7 || s[len(s)-1].Target != "" || s[0].Target != "f-recipients" {
		t.Errorf("summary %+v", s)
	}
}

func TestParseRecipientsAndParams(t *testing.T) {
	got := parseRecipients(" alice \n\nbob@example.com\n+4915\ngroup: g1 \nemail:x@y\nuser:dept:7\ndept:7")
	want := []Recipient{{UserID: "alice"}, {Email: "bob@example.com"}, {Phone: "+4915"}, {GroupID: "g1"}, {Email: "x@y"}, {UserID: "dept:7"}, {UserID: "dept:7"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("recipients %+v", got)
	}
	if m, err := parseParams("a=1\n b = x=y \n\n"); err != "" || !reflect.DeepEqual(m, map[string]string{"a": "1", "b": "x=y"}) {
		t.Errorf("params %v %q", m, err)
	}
	if _, err := parseParams("ok=1\n=2"); err != "line 2: write key=value" {
		t.Errorf("params error %q", err)
	}
}

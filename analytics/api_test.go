package analytics_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"herald.dev/analytics"
	"herald.dev/analytics/sqlstore"
	"herald.dev/platform/auth"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
	"herald.dev/platform/ids"
	"herald.dev/platform/sqldb/sqldbtest"
)

type env struct {
	app        *fiber.App
	api        *analytics.API
	sink       *sqlstore.Store
	appA, appB string
	keyA, keyB string
}

// setup wires the API the way the binary does: /v1 behind auth.Middleware,
// on a real SQLite store with two apps.
func setup(t *testing.T) *env {
	t.Helper()
	db := sqldbtest.SQLite(t, auth.Migrations, sqlstore.Migrations)
	as := auth.NewStore(db, time.Minute)
	ctx := context.Background()
	a, keyA, err := as.CreateApp(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	b, keyB, err := as.CreateApp(ctx, "B")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{app: httpx.NewApp(0, nil), sink: sqlstore.New(db), appA: a.ID, appB: b.ID, keyA: keyA, keyB: keyB}
	e.api = analytics.NewAPI(e.sink)
	e.api.Mount(e.app.Group("/v1", auth.Middleware(as)))
	return e
}

func (e *env) get(t *testing.T, key, path string, out any) (int, string) {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := e.app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: decode %s: %v", path, body, err)
		}
	}
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("GET %s: error with content type %q", path, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, string(body)
}

var base = time.Date(2025, 3, 10, 0, 0, 0, 0, time.UTC)

func seed(t *testing.T, e *env) (ntfA string) {
	t.Helper()
	ntfA = ids.New("ntf")
	evs := []contracts.Event{
		{AppID: e.appA, NotificationID: ntfA, Type: contracts.EventAccepted, Category: "billing", At: base.Add(time.Hour)},
		{AppID: e.appA, NotificationID: ntfA, DeliveryID: "d1", Channel: domain.ChannelEmail, Category: "billing", Type: contracts.EventSent, At: base.Add(time.Hour + time.Second), LatencyMS: 1000},
		{AppID: e.appA, NotificationID: ntfA, DeliveryID: "d2", Channel: domain.ChannelSMS, Category: "billing", Type: contracts.EventFailed, Error: "rejected", At: base.Add(time.Hour + 2*time.Second), LatencyMS: 2000},
		{AppID: e.appB, NotificationID: ids.New("ntf"), DeliveryID: "d3", Channel: domain.ChannelSMS, Type: contracts.EventSent, At: base.Add(3 * time.Hour), LatencyMS: 50},
		{AppID: e.appB, NotificationID: ids.New("ntf"), DeliveryID: "d4", Channel: domain.ChannelSMS, Type: contracts.EventSent, At: base.Add(3 * time.Hour), LatencyMS: 70},
	}
	if err := e.sink.WriteEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	return ntfA
}

func q(path string, kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return path + "?" + v.Encode()
}

func TestSummaryAndTenantIsolation(t *testing.T) {
	e := setup(t)
	seed(t, e)
	var sa, sb analytics.Summary
	if code, body := e.get(t, e.keyA, q("/v1/analytics/summary", "from", "2025-03-10", "to", "2025-03-11"), &sa); code != 200 {
		t.Fatalf("summary A: %d %s", code, body)
	}
	if sa.Counts["sent"] != 1 || sa.Counts["failed"] != 1 || sa.Counts["accepted"] != 1 || len(sa.Channels) != 2 ||
		sa.SuccessRate == nil || *sa.SuccessRate != 0.5 || sa.AvgLatencyMS != 1000 || sa.MaxLatencyMS != 1000 {
		t.Errorf("summary A = %+v", sa)
	}
	if code, _ := e.get(t, e.keyB, q("/v1/analytics/summary", "from", "2025-03-10T00:00:00Z", "to", "2025-03-10T12:00:00+08:00"), &sb); code != 200 {
		t.Fatalf("summary B: %d", code)
	}
	// B's range ends at 04:00 UTC: its two sent events at 03:00 are in, none of A's.
	if sb.Counts["sent"] != 2 || sb.Counts["failed"] != 0 || sb.Counts["accepted"] != 0 || sb.AvgLatencyMS != 60 || len(sb.Channels) != 1 {
		t.Errorf("summary B = %+v", sb)
	}
	// Defaults: the last 24 hours (nothing there).
	var def analytics.Summary
	if code, _ := e.get(t, e.keyA, "/v1/analytics/summary", &def); code != 200 || def.Counts["sent"] != 0 || def.SuccessRate != nil {
		t.Errorf("default summary: %d %+v", code, def)
	}
	if time.Since(def.To) > time.Hour+time.Minute || def.To.Sub(def.From) < 24*time.Hour {
		t.Errorf("default range [%v, %v), want the last 24 hours", def.From, def.To)
	}
}

func TestSeries(t *testing.T) {
	e := setup(t)
	seed(t, e)
	var s analytics.SeriesResponse
	code, body := e.get(t, e.keyA, q("/v1/analytics/series", "from", "2025-03-10T00:30:00Z", "to", "2025-03-10T04:00:00Z", "bucket", "hour", "type", "sent"), &s)
	if code != 200 {
		t.Fatalf("series: %d %s", code, body)
	}
	if s.Bucket != "hour" || s.Type != "sent" || !s.From.Equal(base) || len(s.Points) != 4 {
		t.Fatalf("series = %+v", s)
	}
	wantCounts := []int64{0, 1, 0, 0} // B's sent events at 03:00 are not A's
	for i, p := range s.Points {
		if p.Count != wantCounts[i] || !p.Time.Equal(base.Add(time.Duration(i)*time.Hour)) {
			t.Errorf("point %d = %+v, want count %d", i, p, wantCounts[i])
		}
	}
	var d analytics.SeriesResponse
	if code, _ := e.get(t, e.keyB, q("/v1/analytics/series", "from", "2025-03-09", "to", "2025-03-11", "bucket", "day"), &d); code != 200 {
		t.Fatalf("daily series: %d", code)
	}
	if len(d.Points) != 2 || d.Points[0].Count != 0 || d.Points[1].Count != 2 || d.Points[1].MaxLatencyMS != 70 {
		t.Errorf("daily series B = %+v", d)
	}
}

func TestTrace(t *testing.T) {
	e := setup(t)
	ntf := seed(t, e)
	var tr analytics.TraceResponse
	if code, body := e.get(t, e.keyA, "/v1/notifications/"+ntf+"/events", &tr); code != 200 {
		t.Fatalf("trace: %d %s", code, body)
	}
	if tr.NotificationID != ntf || len(tr.Events) != 3 || tr.Events[0].Type != "accepted" || tr.Events[2].Error != "rejected" {
		t.Errorf("trace = %+v", tr)
	}
	// Another app asking for A's notification sees a 404, not a 403.
	code, body := e.get(t, e.keyB, "/v1/notifications/"+ntf+"/events", nil)
	if code != 404 || !strings.Contains(body, `"code":"not_found"`) {
		t.Errorf("trace of A's notification with B's key: %d %s", code, body)
	}
	if code, _ := e.get(t, e.keyA, "/v1/notifications/"+ids.New("ntf")+"/events", nil); code != 404 {
		t.Errorf("unknown notification: %d", code)
	}
	if code, _ := e.get(t, "", "/v1/notifications/"+ntf+"/events", nil); code != 401 {
		t.Errorf("no API key: %d", code)
	}
}

func TestBadParameters(t *testing.T) {
	e := setup(t)
	cases := []struct {
		path, field string
	}{
		{q("/v1/analytics/summary", "from", "yesterday"), "from"},
		{q("/v1/analytics/summary", "to", "2025-13-40"), "to"},
		{q("/v1/analytics/summary", "from", "2025-03-11", "to", "2025-03-10"), "from"},
		{q("/v1/analytics/summary", "from", "2020-01-01", "to", "2025-03-10"), "from"},
		{q("/v1/analytics/summary", "app_id", "someone-else"), "app_id"},
		{q("/v1/analytics/series", "bucket", "week"), "bucket"},
		{q("/v1/analytics/series", "type", "bounced"), "type"},
		{q("/v1/analytics/series", "from", "2025-01-01", "to", "2025-03-10", "bucket", "hour"), "from"},
		{q("/v1/analytics/series", "from", "2025-03-10T00:00:00Z", "to", "2025-03-10T00:00:00Z"), "from"},
		{q("/v1/analytics/series", "limit", "5"), "limit"},
		{"/v1/notifications/" + strings.Repeat("x", 65) + "/events", "id"},
		{q("/v1/notifications/ntf_1/events", "verbose", "1"), "verbose"},
	}
	for _, c := range cases {
		code, body := e.get(t, e.keyA, c.path, nil)
		var p httpx.Problem
		_ = json.Unmarshal([]byte(body), &p)
		if code != 422 || len(p.Errors) != 1 || p.Errors[0].Field != c.field || p.Errors[0].Reason == "" {
			t.Errorf("GET %s: %d %s; want 422 naming %q", c.path, code, body, c.field)
		}
	}
}

var fiberParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

func TestOpenAPICoversRoutes(t *testing.T) {
	e := setup(t)
	doc := e.api.OpenAPI()
	seen := 0
	for _, r := range e.app.GetRoutes(true) {
		if r.Method != "GET" || !strings.HasPrefix(r.Path, "/v1/") {
			continue
		}
		p := fiberParam.ReplaceAllString(r.Path, "{$1}")
		item, ok := doc[p].(map[string]any)
		if !ok || item["get"] == nil {
			t.Errorf("route GET %s missing from OpenAPI()", p)
		}
		seen++
	}
	if seen != 3 || len(doc) != 3 {
		t.Errorf("%d routes, %d documented paths; want 3 and 3", seen, len(doc))
	}
	if _, err := json.Marshal(doc); err != nil {
		t.Errorf("OpenAPI() does not marshal: %v", err)
	}
}

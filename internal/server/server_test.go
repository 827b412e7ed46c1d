package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"herald.dev/platform/config"
)

func build(t *testing.T) *Server {
	t.Helper()
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	s, err := Build(context.Background(), cfg, Options{Version: "test", Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s
}

// TestOpenAPIMatchesRoutes: every mounted route is documented and every
// documented path is mounted.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	s := build(t)
	resp, err := s.App.Test(httptest.NewRequest("GET", "/openapi.json", nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for p, ops := range doc.Paths {
		for m := range ops {
			if m == "parameters" || m == "summary" || m == "description" {
				continue
			}
			documented[strings.ToUpper(m)+" "+p] = true
		}
	}
	mounted := map[string]bool{}
	for _, r := range routeSet(s.App) {
		if strings.HasPrefix(r, "GET /debug/") || strings.HasPrefix(r, "POST /debug/") || strings.Contains(r, " /admin") || r == "GET /" {
			continue
		}
		mounted[r] = true
	}
	var undocumented, phantom []string
	for r := range mounted {
		if !documented[r] {
			undocumented = append(undocumented, r)
		}
	}
	for r := range documented {
		if !mounted[r] {
			phantom = append(phantom, r)
		}
	}
	sort.Strings(undocumented)
	sort.Strings(phantom)
	if len(undocumented) > 0 || len(phantom) > 0 {
		t.Fatalf("routes not in /openapi.json: %v\ndocumented but not mounted: %v", undocumented, phantom)
	}
	if len(mounted) < 30 {
		t.Fatalf("only %d routes mounted", len(mounted))
	}
}

func TestProbesAndAuth(t *testing.T) {
	s := build(t)
	for _, tc := range []struct {
		path string
		want int
	}{{"/healthz", 200}, {"/readyz", 200}, {"/metrics", 200}, {"/v1/templates", 401}, {"/v1/nope", 401}, {"/nope", 404}} {
		resp, err := s.App.Test(httptest.NewRequest("GET", tc.path, nil), -1)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.path, resp.StatusCode, tc.want)
		}
		if tc.want >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: content type %q", tc.path, resp.Header.Get("Content-Type"))
		}
	}
	resp, _ := s.App.Test(httptest.NewRequest("GET", "/metrics", nil), -1)
	b, _ := io.ReadAll(resp.Body)
	for _, m := range []string{"herald_http_requests_total", `herald_sqlite_writer_cache_hits_total{db="herald"}`,
		`herald_sqlite_writer_cache_misses_total{db="analytics"}`} {
		if !strings.Contains(string(b), m) {
			t.Errorf("metrics lack %s", m)
		}
	}
}

func TestParseTargets(t *testing.T) {
	for _, tc := range []struct {
		in      string
		api, ob bool
		bad     bool
	}{{"all", true, true, false}, {"api", true, false, false}, {"outbound", false, true, false}, {"api,outbound", true, true, false}, {"web", false, false, true}} {
		got, err := ParseTargets(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && (got.API != tc.api || got.Outbound != tc.ob)) {
			t.Errorf("%q: %+v %v", tc.in, got, err)
		}
	}
}

package templatesvc

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"herald.dev/platform/auth"
	"herald.dev/platform/domain"
	"herald.dev/platform/sqldb/sqldbtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenData is the data the golden renderings use: markup and a hostile URL
// show what each variant escapes (only email html is escaped).
const goldenData = `{
	"name": "Ada <Lovelace> & Co",
	"order_id": "A-1001",
	"items": [{"title": "Notebook <A5>", "qty": 2}, {"title": "Pen", "qty": 1}],
	"shipped_at": "2025-03-05T18:30:00Z",
	"url": "https://shop.example.com/track?id=A-1001&lang=en",
	"note": "leave at the door"
}`

// TestGolden creates testdata/order_shipped.json through the API and renders
// every channel in several locales through contracts.Renderer; each locale's
// output is compared with testdata/golden/order_shipped.<locale>.txt
// (go test -run TestGolden -update rewrites them).
func TestGolden(t *testing.T) {
	e := newEnv(t, sqldbtest.SQLite(t))
	e.want(t, e.do(t, e.keyA, "POST", "/v1/templates", readFile(t, "testdata/order_shipped.json")), 201, "create sample")
	appID, err := auth.NewStore(e.svc.db, 0).Authenticate(context.Background(), e.keyA)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(goldenData))
	dec.UseNumber()
	var data map[string]any
	if err := dec.Decode(&data); err != nil {
		t.Fatal(err)
	}
	channels := []domain.Channel{domain.ChannelEmail, domain.ChannelSMS, domain.ChannelInApp, domain.ChannelWeCom, domain.ChannelWebhook}
	for _, locale := range []string{"default", "zh-CN", "zh-TW", "en-US"} {
		t.Run(locale, func(t *testing.T) {
			loc := locale
			if loc == "default" {
				loc = ""
			}
			var b strings.Builder
			for _, ch := range channels {
				c, err := e.svc.Render(context.Background(), appID, "order.shipped", 0, loc, ch, data)
				if err != nil {
					t.Fatalf("render %s: %v", ch, err)
				}
				fmt.Fprintf(&b, "===== %s =====\n%s", ch, formatContent(c))
			}
			path := filepath.Join("testdata", "golden", "order_shipped."+locale+".txt")
			if *update {
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
			}
			if got := b.String(); got != string(want) {
				t.Fatalf("rendering differs from %s:\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
			}
		})
	}
}

func formatContent(c domain.Content) string {
	var b strings.Builder
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "-- %s --\n%s\n", k, v)
		}
	}
	line("subject", c.Subject)
	line("title", c.Title)
	line("text", c.Text)
	line("html", c.HTML)
	line("body", c.Body)
	line("markdown", c.Markdown)
	line("url", c.URL)
	line("vendor_template", c.VendorTemplate)
	keys := make([]string, 0, len(c.Params))
	for k := range c.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		line("params."+k, c.Params[k])
	}
	return b.String()
}

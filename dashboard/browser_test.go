package dashboard

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gofiber/fiber/v2"
)

// chromiumPath returns HERALD_TEST_CHROMIUM, skipping the test when it is
// unset, except under CI=true, where a missing browser is a failure.
func chromiumPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("HERALD_TEST_CHROMIUM")
	if p == "" {
		msg := "HERALD_TEST_CHROMIUM is not set: install Chromium with deploy/scripts/chromium.sh and export HERALD_TEST_CHROMIUM=$(deploy/scripts/chromium.sh)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (required under CI=true)")
		}
		t.Skip(msg)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("HERALD_TEST_CHROMIUM=%s: %v", p, err)
	}
	return p
}

// TestBrowser drives Debian's Chromium through the dashboard served on
// 127.0.0.1 over a fake API: log in through the form, open the
// notifications list, click into a notification and read its deliveries,
// then edit a template and see the API's validation error next to the field.
func TestBrowser(t *testing.T) {
	bin := chromiumPath(t)
	e := newEnv(t)
	e.api.on("GET /v1/notifications", 200, `{"items":[`+notificationJSON+`],"next_cursor":""}`)
	e.api.on("GET /v1/notifications/ntf_01ABC", 200, notificationJSON)
	e.api.on("GET /v1/notifications/ntf_01ABC/events", 200, traceJSON)
	e.api.on("GET /v1/templates/order.shipped", 200, templateJSON)
	e.api.on("GET /v1/analytics/summary", 200, summaryJSON)
	e.api.onFunc("GET /v1/analytics/series", func(c fakeCall) fakeAnswer {
		q, _ := url.ParseQuery(c.Query)
		counts := map[string][]int{"accepted": {10, 20, 5, 5}, "sent": {5, 15, 4, 3}, "failed": {1, 4, 3, 1}}[q.Get("type")]
		return fakeAnswer{status: 200, body: seriesJSON(q.Get("type"), counts...)}
	})
	e.api.onFunc("PUT /v1/templates/order.shipped", func(c fakeCall) fakeAnswer {
		var body struct {
			Variants map[string]map[string]any `json:"variants"`
		}
		if err := json.Unmarshal([]byte(c.Body), &body); err != nil {
			return fakeAnswer{status: 400, body: `{"status":400,"code":"malformed_request","detail":"bad json"}`}
		}
		if em, ok := body.Variants["email"]; ok && em["subject"] == nil {
			return fakeAnswer{status: 422, body: `{"type":"https://herald.dev/problems/validation_failed","title":"The request has invalid fields",
				"status":422,"code":"validation_failed","detail":"variants.email.subject: is required",
				"errors":[{"field":"variants.email.subject","reason":"is required"}]}`}
		}
		return fakeAnswer{status: 200, body: templateJSON}
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	e.d.Mount(app)
	go app.Listener(ln)
	t.Cleanup(func() { _ = app.ShutdownWithTimeout(5 * time.Second) })
	base := "http://" + ln.Addr().String()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer bcancel()

	do := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	text := func(step string, a chromedp.Action[string]) string {
		t.Helper()
		v, err := chromedp.Run(bctx, a)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		return v
	}
	// HERALD_TEST_SCREENSHOTS=dir keeps a screenshot of each step, to look at.
	shot := func(name string) {
		t.Helper()
		dir := os.Getenv("HERALD_TEST_SCREENSHOTS")
		if dir == "" {
			return
		}
		buf, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	// Not logged in: the notifications page sends us to the login form.
	do("open notifications", chromedp.Navigate(base+"/admin/notifications"), chromedp.WaitVisible(chromedp.ID("f-api_key")))
	loginURL := text("location", chromedp.Location())
	shot("1-login")
	do("log in",
		chromedp.SendKeys(chromedp.ID("f-api_key"), testKey),
		chromedp.Submit(chromedp.ID("f-api_key")),
		chromedp.WaitVisible(chromedp.ID("notifications-table")),
	)
	listText := text("list text", chromedp.Text(chromedp.ID("notifications-table")))
	cookieJS := text("document.cookie", chromedp.Evaluate[string](`document.cookie`))
	shot("2-notifications")

	// Into the detail page: the deliveries table.
	do("open detail",
		chromedp.Click(chromedp.CSS(`#notifications-table a[href="/admin/notifications/ntf_01ABC"]`)),
		chromedp.WaitVisible(chromedp.ID("deliveries-table")),
	)
	deliveries := text("deliveries", chromedp.Text(chromedp.ID("deliveries-table")))
	shot("3-notification")

	// Edit a template: empty the email subject and save.
	do("edit template",
		chromedp.Navigate(base+"/admin/templates/order.shipped"),
		chromedp.Click(chromedp.ID("edit-template")),
		chromedp.WaitVisible(chromedp.ID("template-form")),
		chromedp.Clear(chromedp.ID("f-variants-email-subject")),
		chromedp.Click(chromedp.ID("save-template")),
		chromedp.WaitVisible(chromedp.ID("err-variants-email-subject")),
	)
	title := text("title", chromedp.Title())
	// The error sits in the same field wrapper as the control.
	fieldErr := text("field error", chromedp.Evaluate[string](
		`document.querySelector('#f-variants-email-subject').closest('.field').querySelector('.field-error').textContent`))
	inv, err := chromedp.Run(bctx, chromedp.AttributeValue(chromedp.ID("f-variants-email-subject"), "aria-invalid"))
	if err != nil {
		t.Fatal(err)
	}
	invalid := inv.Value
	subjectVal := text("text value", chromedp.Value(chromedp.ID("f-variants-email-text")))
	shot("4-template-error")

	// The overview draws its chart as inline SVG: one line per series.
	do("overview", chromedp.Navigate(base+"/admin/"), chromedp.WaitVisible(chromedp.ID("series-chart")))
	lines, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('#series-chart polyline').length`))
	if err != nil {
		t.Fatal(err)
	}
	rate := text("success rate", chromedp.Text(chromedp.ID("success-rate")))
	shot("5-overview")
	t.Logf("browser steps took %v", time.Since(start))

	if lines != 3 || rate != "75.0 %" {
		t.Errorf("overview: %d chart lines, success rate %q", lines, rate)
	}
	if !strings.Contains(loginURL, "/admin/login?next=%2Fadmin%2Fnotifications") {
		t.Errorf("login URL %q", loginURL)
	}
	if cookieJS != "" {
		t.Errorf("cookies visible to scripts: %q", cookieJS)
	}
	for _, want := range []string{"ntf_01ABC", "processing", "order.shipped"} {
		if !strings.Contains(listText, want) {
			t.Errorf("notifications table lacks %q: %s", want, listText)
		}
	}
	for _, want := range []string{"dlv_1", "dlv_2", "sent", "failed", "vendor said: invalid signature", "+8613800138000"} {
		if !strings.Contains(deliveries, want) {
			t.Errorf("deliveries table lacks %q: %s", want, deliveries)
		}
	}
	if strings.TrimSpace(fieldErr) != "is required" {
		t.Errorf("error next to the subject field: %q", fieldErr)
	}
	if invalid != "true" {
		t.Errorf("aria-invalid=%q", invalid)
	}
	if subjectVal != "Hi {{.name}}" {
		t.Errorf("the form lost what was typed: text=%q", subjectVal)
	}
	if !strings.HasPrefix(title, "Edit order.shipped") {
		t.Errorf("title %q", title)
	}
	if c := e.api.callsTo("PUT", "/v1/templates/order.shipped"); len(c) != 1 || c[0].Key != testKey {
		t.Errorf("PUT calls %+v", c)
	}
}

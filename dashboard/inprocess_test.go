package dashboard

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/httpx"
)

// apiApp is a small stand-in for Herald's API built with the platform's
// HTTP conventions (problem+json errors, strict binding), to check the
// dashboard against real fiber answers through InProcess.
func apiApp() *fiber.App {
	app := httpx.NewApp(1<<20, nil)
	v1 := app.Group("/v1", func(c *fiber.Ctx) error {
		if c.Get(fiber.HeaderAuthorization) != "Bearer "+testKey {
			return httpx.CodeUnauthorized.New("invalid api key")
		}
		return c.Next()
	})
	v1.Get("/templates", func(c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"items": []fiber.Map{{"code": "welcome", "name": "Welcome", "version": 1}}, "next_cursor": ""})
	})
	v1.Get("/templates/:code", func(c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"code": c.Params("code"), "name": "Welcome", "version": 1,
			"variants": fiber.Map{"email": fiber.Map{"subject": "Hi"}}, "variables": []any{}})
	})
	v1.Put("/templates/:code", func(c *fiber.Ctx) error {
		var req struct {
			Code     string                       `json:"code"`
			Name     string                       `json:"name" validate:"required"`
			Version  int                          `json:"version"`
			Variants map[string]map[string]string `json:"variants"`
		}
		if err := httpx.Bind(c, &req); err != nil {
			return err
		}
		if req.Variants["email"]["subject"] == "" {
			return httpx.Invalid("variants.email.subject", "is required")
		}
		return c.JSON(fiber.Map{"code": req.Code, "version": req.Version + 1})
	})
	return app
}

func TestInProcessClient(t *testing.T) {
	api := InProcess(apiApp())
	ctx := context.Background()
	st, body, err := api.Do(ctx, "GET", "/v1/templates?limit=1", testKey, nil, "")
	if err != nil || st != 200 || !strings.Contains(string(body), `"code":"welcome"`) {
		t.Fatalf("list: %d %s %v", st, body, err)
	}
	st, body, _ = api.Do(ctx, "GET", "/v1/templates", "hk_bad", nil, "")
	var p Problem
	if st != 401 || json.Unmarshal(body, &p) != nil || p.Code != "unauthorized" {
		t.Fatalf("bad key: %d %s", st, body)
	}
	st, body, _ = api.Do(ctx, "PUT", "/v1/templates/welcome", testKey, []byte(`{"name":"W","variants":{"email":{"subject":"x"}},"version":1}`), "application/json")
	if st != 200 || !strings.Contains(string(body), `"version":2`) {
		t.Fatalf("put: %d %s", st, body)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := api.Do(cctx, "GET", "/v1/templates", testKey, nil, ""); err == nil {
		t.Fatal("a cancelled call was made")
	}
}

// TestDashboardOverRealProblems: login and a template edit through
// InProcess, with the platform's own problem documents.
func TestDashboardOverRealProblems(t *testing.T) {
	api := apiApp()
	d, err := New(Options{API: InProcess(api), CookieKey: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	ui := fiber.New(fiber.Config{DisableStartupMessage: true})
	d.Mount(ui)
	e := &env{t: t, app: ui, d: d}
	b := e.browser()
	b.login()
	a := b.get("/admin/templates/welcome/edit")
	if a.Status != 200 {
		t.Fatalf("edit: %d\n%s", a.Status, a.Body)
	}
	a = b.post("/admin/templates/welcome", url.Values{"version": {"1"}, "name": {"W"}, "variants.email.text": {"body"}})
	if a.Status != 422 {
		t.Fatalf("save: %d\n%s", a.Status, a.Body)
	}
	mustContain(t, fieldBlock(t, a.Body, "variants.email.subject"), "is required")
	mustContain(t, a.Body, "PUT /v1/templates/welcome", "422 Unprocessable Entity", "validation_failed")
	a = b.post("/admin/templates/welcome", url.Values{"version": {"1"}, "name": {"W"}, "variants.email.subject": {"S"}})
	if a.Status != 303 || a.Header.Get("Location") != "/admin/templates/welcome?flash=saved&v=2" {
		t.Fatalf("save ok: %d %q\n%s", a.Status, a.Header.Get("Location"), a.Body)
	}
	// An unknown field is named by the platform's strict binding.
	b.get("/admin/templates/welcome/edit")
	a = b.post("/admin/templates/welcome", url.Values{"version": {"1"}, "name": {""}, "variants.email.subject": {"S"}})
	if a.Status != 422 {
		t.Fatalf("missing name: %d\n%s", a.Status, a.Body)
	}
	mustContain(t, fieldBlock(t, a.Body, "name"), `aria-invalid="true"`)
}

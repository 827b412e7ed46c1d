package httpx_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/httpx"
)

type req struct {
	Name  string   `json:"name" validate:"required,max=10"`
	Email string   `json:"email" validate:"omitempty,email"`
	Tags  []string `json:"tags" validate:"max=2"`
}

func newApp() *fiber.App {
	app := httpx.NewApp(256, nil)
	app.Post("/x", func(c *fiber.Ctx) error {
		var r req
		if err := httpx.Bind(c, &r); err != nil {
			return err
		}
		return c.SendStatus(204)
	})
	return app
}

func TestBind(t *testing.T) {
	app := newApp()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go app.Listener(ln)
	t.Cleanup(func() { app.Shutdown() })
	cases := []struct {
		name, body string
		chunked    bool
		status     int
		code       string
		field      string
	}{
		{"ok", `{"name":"a"}`, false, 204, "", ""},
		{"malformed", `{"name":`, false, 400, "malformed_request", ""},
		{"empty", ``, false, 400, "malformed_request", ""},
		{"unknown field", `{"name":"a","nope":1}`, false, 422, "validation_failed", "nope"},
		{"wrong type", `{"name":5}`, false, 422, "validation_failed", "name"},
		{"missing", `{}`, false, 422, "validation_failed", "name"},
		{"bad email", `{"name":"a","email":"x"}`, false, 422, "validation_failed", "email"},
		{"trailing", `{"name":"a"} {}`, false, 400, "malformed_request", ""},
		{"too large", `{"name":"` + strings.Repeat("a", 300) + `"}`, false, 413, "payload_too_large", ""},
		{"too large chunked", `{"name":"` + strings.Repeat("a", 300) + `"}`, true, 413, "payload_too_large", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				body = struct{ io.Reader }{body} // hides the length: sent chunked
			}
			var resp *http.Response
			var err error
			if tc.chunked {
				// a real connection: the Go client sends a body of unknown length chunked
				resp, err = http.Post("http://"+ln.Addr().String()+"/x", "application/json", body)
			} else {
				r := httptest.NewRequest("POST", "/x", body)
				r.Header.Set("Content-Type", "application/json")
				resp, err = app.Test(r, -1)
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if tc.code == "" {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("content type %q", ct)
			}
			var p httpx.Problem
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
				t.Fatal(err)
			}
			if p.Code != tc.code || p.Status != tc.status {
				t.Fatalf("problem %+v", p)
			}
			if tc.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tc.field) {
				t.Fatalf("want field %q named, got %+v", tc.field, p.Errors)
			}
		})
	}
}

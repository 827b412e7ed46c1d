package services_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/sqldb/sqldbtest"
)

// Every mounted route is documented, and every documented path is mounted.
func TestOpenAPICoversRoutes(t *testing.T) {
	e := newEnv(t, sqldbtest.SQLite(t))
	app := fiber.New()
	e.svc.MountPublic(app)
	e.svc.Mount(app.Group("/v1"))
	doc := e.svc.OpenAPI()
	param := regexp.MustCompile(`:([A-Za-z0-9_]+)`)
	mounted := map[string]bool{}
	for _, r := range app.GetRoutes(true) {
		if r.Method == fiber.MethodHead || r.Method == "USE" || r.Path == "/v1" {
			continue
		}
		p := param.ReplaceAllString(r.Path, "{$1}")
		mounted[strings.ToLower(r.Method)+" "+p] = true
		ops, ok := doc[p].(map[string]any)
		if !ok || ops[strings.ToLower(r.Method)] == nil {
			t.Errorf("%s %s is not in OpenAPI()", r.Method, p)
		}
	}
	for p, ops := range doc {
		for m := range ops.(map[string]any) {
			if !mounted[m+" "+p] {
				t.Errorf("OpenAPI() documents %s %s, which is not mounted", m, p)
			}
		}
	}
}

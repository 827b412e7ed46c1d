package server

import (
	"regexp"
	"sort"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// openAPIDoc merges the services' path fragments into one OpenAPI 3.1 document.
func openAPIDoc(version string, fragments ...map[string]any) map[string]any {
	paths := map[string]any{
		"/healthz":      op("get", "Liveness probe", false),
		"/readyz":       op("get", "Readiness probe (checks the database)", false),
		"/metrics":      op("get", "Prometheus metrics", false),
		"/openapi.json": op("get", "This document", false),
	}
	for _, f := range fragments {
		for p, v := range f {
			if existing, ok := paths[p].(map[string]any); ok {
				if add, ok := v.(map[string]any); ok {
					for m, o := range add {
						existing[m] = o
					}
					continue
				}
			}
			paths[p] = v
		}
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "Herald API",
			"version":     version,
			"description": "Unified enterprise notification platform. Every /v1 route except the WebSocket endpoint and its client script takes Authorization: Bearer <api key>. Errors are application/problem+json.",
		},
		"components": map[string]any{
			"securitySchemes": map[string]any{"apiKey": map[string]any{"type": "http", "scheme": "bearer"}},
			"schemas": map[string]any{"Problem": map[string]any{
				"type": "object",
				"properties": map[string]any{
					"type": map[string]any{"type": "string"}, "title": map[string]any{"type": "string"},
					"status": map[string]any{"type": "integer"}, "code": map[string]any{"type": "string"},
					"detail": map[string]any{"type": "string"},
					"errors": map[string]any{"type": "array", "items": map[string]any{"type": "object", "properties": map[string]any{
						"field": map[string]any{"type": "string"}, "reason": map[string]any{"type": "string"}}}},
				},
			}},
		},
		"security": []any{map[string]any{"apiKey": []any{}}},
		"paths":    paths,
	}
}

func op(method, summary string, secured bool) map[string]any {
	o := map[string]any{"summary": summary, "responses": map[string]any{"200": map[string]any{"description": "OK"}}}
	if !secured {
		o["security"] = []any{}
	}
	return map[string]any{method: o}
}

var fiberParam = regexp.MustCompile(`:([A-Za-z0-9_]+)\??`)

// routeSet lists "METHOD /path" for every route of app in OpenAPI path syntax
// (HEAD routes that fiber adds for GET are left out).
func routeSet(app *fiber.App) []string {
	seen := map[string]bool{}
	for _, r := range app.GetRoutes(true) {
		if r.Method == fiber.MethodHead || r.Method == fiber.MethodConnect || r.Method == fiber.MethodTrace || r.Method == fiber.MethodOptions {
			continue
		}
		if r.Path == "/" || strings.Contains(r.Path, "*") {
			continue
		}
		p := fiberParam.ReplaceAllString(r.Path, "{$1}")
		seen[r.Method+" "+p] = true
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

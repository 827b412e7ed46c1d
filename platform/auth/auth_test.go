package auth_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/auth"
	"herald.dev/platform/httpx"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
)

func TestKeys(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := auth.NewStore(db, 0)
		app, key, err := s.CreateApp(ctx, "billing")
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Authenticate(ctx, key)
		if err != nil || got != app.ID {
			t.Fatalf("authenticate = %q, %v; want %q", got, err, app.ID)
		}
		for _, bad := range []string{"", "hk_", "hk_x.y", key + "x", "Bearer " + key} {
			if _, err := s.Authenticate(ctx, bad); !errors.Is(err, auth.ErrInvalidKey) {
				t.Errorf("authenticate(%q) = %v, want ErrInvalidKey", bad, err)
			}
		}
		var hashed []byte
		if err := db.R.QueryRow(`SELECT hash FROM api_keys WHERE app_id = ?`, app.ID).Scan(&hashed); err != nil {
			t.Fatal(err)
		}
		if len(hashed) != 32 {
			t.Fatalf("stored key is not a sha-256 hash: %d bytes", len(hashed))
		}
		kid := key[3 : len(key)-len(key[len("hk_")+26+1:])-1]
		if err := s.RevokeKey(ctx, app.ID, kid); err != nil {
			t.Fatalf("revoke %s: %v", kid, err)
		}
		if _, err := s.Authenticate(ctx, key); !errors.Is(err, auth.ErrInvalidKey) {
			t.Fatalf("revoked key still works: %v", err)
		}
	})
}

func TestMiddleware(t *testing.T) {
	db := sqldbtest.SQLite(t)
	s := auth.NewStore(db, 0)
	_, key, err := s.CreateApp(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	app := httpx.NewApp(0, nil)
	app.Get("/x", auth.Middleware(s), func(c *fiber.Ctx) error { return c.SendString(auth.AppID(c)) })
	for _, tc := range []struct {
		header string
		want   int
	}{{"", 401}, {"Bearer nope", 401}, {"Basic abc", 401}, {"Bearer " + key, 200}} {
		req := httptest.NewRequest("GET", "/x", nil)
		if tc.header != "" {
			req.Header.Set("Authorization", tc.header)
		}
		resp, err := app.Test(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.want {
			t.Errorf("%q: status %d, want %d", tc.header, resp.StatusCode, tc.want)
		}
		if tc.want == 401 && resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%q: content type %q", tc.header, resp.Header.Get("Content-Type"))
		}
	}
}

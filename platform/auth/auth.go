// Package auth owns apps (tenants) and their API keys. A key looks like
// "hk_<key id>.<secret>"; only SHA-256 of the secret is stored. Lookups go
// through a short-lived in-memory cache, so authenticating a request costs a
// map read and one hash.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/httpx"
	"herald.dev/platform/ids"
	"herald.dev/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is this package's schema source.
var Migrations = sqldb.Source{Component: "apps", FS: mustSub(migrations, "migrations")}

func init() { sqldb.Register(Migrations.Component, Migrations.FS) }

func mustSub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return s
}

var (
	// ErrNotFound means the app or key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalidKey means the key is malformed, unknown or revoked.
	ErrInvalidKey = errors.New("invalid api key")
)

// App is a tenant.
type App struct {
	ID        string      `json:"id"`
	Name      string      `json:"name"`
	Settings  AppSettings `json:"settings"`
	CreatedAt time.Time   `json:"created_at"`
	Disabled  bool        `json:"disabled"`
}

// AppSettings are per-app options the pipeline reads.
type AppSettings struct {
	// WebhookURL receives webhook-channel deliveries unless a user sets their own.
	WebhookURL string `json:"webhook_url,omitempty"`
	// WebhookSecret signs webhook deliveries (HMAC-SHA256).
	WebhookSecret string `json:"webhook_secret,omitempty"`
}

// Store manages apps and keys.
type Store struct {
	db    *sqldb.DB
	ttl   time.Duration
	mu    sync.RWMutex
	cache map[string]cachedKey
}

type cachedKey struct {
	appID   string
	hash    []byte
	revoked bool
	expires time.Time
}

// NewStore returns a store whose key cache entries live for ttl (default 30s,
// which bounds how long a revocation made by another instance takes to apply).
func NewStore(db *sqldb.DB, ttl time.Duration) *Store {
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	return &Store{db: db, ttl: ttl, cache: map[string]cachedKey{}}
}

// CreateApp makes an app and its first API key; the key is returned once.
func (s *Store) CreateApp(ctx context.Context, name string) (App, string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return App{}, "", errors.New("app name is required")
	}
	app := App{ID: ids.New("app"), Name: name, CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	settings := AppSettings{WebhookSecret: "whsec_" + ids.Random(24)}
	app.Settings = settings
	sb, _ := json.Marshal(settings)
	var key string
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO apps (id, name, settings, created_at) VALUES (?, ?, ?, ?)`,
			app.ID, app.Name, string(sb), app.CreatedAt.UnixMilli()); err != nil {
			return fmt.Errorf("insert app: %w", err)
		}
		var err error
		key, err = createKey(ctx, tx, app.ID)
		return err
	})
	if err != nil {
		return App{}, "", fmt.Errorf("create app: %w", err)
	}
	return app, key, nil
}

func createKey(ctx context.Context, tx *sql.Tx, appID string) (string, error) {
	kid := strings.ToLower(ids.New(""))
	secret := ids.Random(32)
	h := sha256.Sum256([]byte(secret))
	if _, err := tx.ExecContext(ctx, `INSERT INTO api_keys (id, app_id, hash, created_at) VALUES (?, ?, ?, ?)`,
		kid, appID, h[:], sqldb.Now()); err != nil {
		return "", fmt.Errorf("insert api key: %w", err)
	}
	return "hk_" + kid + "." + secret, nil
}

// CreateKey adds another key to an app (key rotation).
func (s *Store) CreateKey(ctx context.Context, appID string) (string, error) {
	if _, err := s.GetApp(ctx, appID); err != nil {
		return "", err
	}
	var key string
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		key, err = createKey(ctx, tx, appID)
		return err
	})
	return key, err
}

// RevokeKey revokes a key by its id (the part between "hk_" and ".").
func (s *Store) RevokeKey(ctx context.Context, appID, keyID string) error {
	res, err := s.db.W.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ? WHERE id = ? AND app_id = ? AND revoked_at = 0`, sqldb.Now(), keyID, appID)
	if err != nil {
		return fmt.Errorf("revoke key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	s.mu.Lock()
	delete(s.cache, keyID)
	s.mu.Unlock()
	return nil
}

// GetApp loads an app.
func (s *Store) GetApp(ctx context.Context, id string) (App, error) {
	var a App
	var settings string
	var created, disabled int64
	err := s.db.R.QueryRowContext(ctx, `SELECT id, name, settings, created_at, disabled_at FROM apps WHERE id = ?`, id).
		Scan(&a.ID, &a.Name, &settings, &created, &disabled)
	if errors.Is(err, sql.ErrNoRows) {
		return App{}, ErrNotFound
	}
	if err != nil {
		return App{}, fmt.Errorf("get app %s: %w", id, err)
	}
	a.CreatedAt = time.UnixMilli(created).UTC()
	a.Disabled = disabled != 0
	if err := json.Unmarshal([]byte(settings), &a.Settings); err != nil {
		return App{}, fmt.Errorf("app %s settings: %w", id, err)
	}
	return a, nil
}

// UpdateSettings replaces an app's settings.
func (s *Store) UpdateSettings(ctx context.Context, id string, st AppSettings) error {
	b, _ := json.Marshal(st)
	res, err := s.db.W.ExecContext(ctx, `UPDATE apps SET settings = ? WHERE id = ?`, string(b), id)
	if err != nil {
		return fmt.Errorf("update app settings: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// Authenticate returns the app id owning key, or ErrInvalidKey. It keeps
// no reference to key, which may alias a reused request buffer.
func (s *Store) Authenticate(ctx context.Context, key string) (string, error) {
	rest, ok := strings.CutPrefix(key, "hk_")
	if !ok {
		return "", ErrInvalidKey
	}
	kid, secret, ok := strings.Cut(rest, ".")
	if !ok || kid == "" || secret == "" || len(kid) > 64 {
		return "", ErrInvalidKey
	}
	now := time.Now()
	s.mu.RLock()
	ck, hit := s.cache[kid]
	s.mu.RUnlock()
	if !hit || now.After(ck.expires) {
		var appID string
		var hash []byte
		var revoked, disabled int64
		err := s.db.R.QueryRowContext(ctx, `SELECT k.app_id, k.hash, k.revoked_at, a.disabled_at FROM api_keys k JOIN apps a ON a.id = k.app_id WHERE k.id = ?`, kid).
			Scan(&appID, &hash, &revoked, &disabled)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			ck = cachedKey{revoked: true}
		case err != nil:
			return "", fmt.Errorf("look up api key: %w", err)
		default:
			ck = cachedKey{appID: appID, hash: hash, revoked: revoked != 0 || disabled != 0}
		}
		ck.expires = now.Add(s.ttl)
		s.mu.Lock()
		if len(s.cache) > 100_000 {
			s.cache = map[string]cachedKey{}
		}
		// A copy: key may alias a buffer its caller reuses (fiber's
		// header values point into the request buffer), and a map key
		// that changes under the map makes lookups of other keys fail.
		s.cache[strings.Clone(kid)] = ck
		s.mu.Unlock()
	}
	if ck.revoked {
		return "", ErrInvalidKey
	}
	h := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(h[:], ck.hash) != 1 {
		return "", ErrInvalidKey
	}
	return ck.appID, nil
}

const appKey = "herald.app_id"

// Middleware requires "Authorization: Bearer <api key>" and stores the app id.
func Middleware(s *Store) fiber.Handler {
	return func(c *fiber.Ctx) error {
		h := c.Get(fiber.HeaderAuthorization)
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || tok == "" {
			return httpx.CodeUnauthorized.New("send Authorization: Bearer <api key>")
		}
		appID, err := s.Authenticate(c.UserContext(), strings.TrimSpace(tok))
		if errors.Is(err, ErrInvalidKey) {
			return httpx.CodeUnauthorized.New("the API key is invalid or revoked")
		}
		if err != nil {
			return err
		}
		c.Locals(appKey, appID)
		return c.Next()
	}
}

// AppID returns the authenticated app of the request ("" outside Middleware).
func AppID(c *fiber.Ctx) string {
	v, _ := c.Locals(appKey).(string)
	return v
}

// WithAppID sets the app id on a request; tests and internal callers use it.
func WithAppID(c *fiber.Ctx, appID string) { c.Locals(appKey, appID) }

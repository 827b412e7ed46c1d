// Package providers stores each app's own vendor providers (SMS, WeChat,
// WeCom, DingTalk, QQ accounts) and serves them over HTTP under
// /v1/providers. Settings are encrypted at rest with AES-256-GCM and secret
// settings are never shown in full. The Service implements the adapter
// registry's ProviderLookup and vendor.Lister, so the vendor channel
// routers send each app's messages through the app's own accounts, falling
// back to the config file's defaults (config.Config.Providers).
package providers

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"herald.dev/adapters/providers/vendor"
	"herald.dev/platform/sqldb"

	// The provider kinds this service validates and tests.
	_ "herald.dev/adapters/dingtalk"
	_ "herald.dev/adapters/qq"
	_ "herald.dev/adapters/sms"
	_ "herald.dev/adapters/wechat"
	_ "herald.dev/adapters/wecom"
)

//go:embed migrations
var migrations embed.FS

// Migrations is this package's schema source (component "providers").
var Migrations = sqldb.Source{Component: "providers", FS: mustSub(migrations, "migrations")}

func init() { sqldb.Register(Migrations.Component, Migrations.FS) }

func mustSub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return s
}

var (
	// ErrNotFound means the app has no provider of that name.
	ErrNotFound = errors.New("provider not found")
	// ErrExists means the app already has a provider of that name.
	ErrExists = errors.New("provider already exists")
)

// NamePattern is what a provider name looks like.
var NamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// CacheTTL bounds how long another instance's change takes to reach this
// one; changes made through this instance apply at once.
const CacheTTL = 10 * time.Second

// Service is the per-app provider store and its HTTP API.
type Service struct {
	db       *sqldb.DB
	aead     cipher.AEAD
	defaults []vendor.Provider
	http     *http.Client
	now      func() time.Time
	ttl      time.Duration

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	list    []vendor.Provider
	expires time.Time
}

// Option tunes a Service.
type Option func(*Service)

// WithHTTPClient sets the client test sends use (default: 30 s timeout).
func WithHTTPClient(c *http.Client) Option { return func(s *Service) { s.http = c } }

// WithClock sets the clock.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithCacheTTL sets how long an app's provider list is cached.
func WithCacheTTL(d time.Duration) Option { return func(s *Service) { s.ttl = d } }

// New returns the service. key is the 32-byte config.Security.EncryptionKey
// (a longer key is reduced with SHA-256); a shorter key panics, as the
// server validates it at startup. defaults are config.Config.Providers.
func New(db *sqldb.DB, key []byte, defaults map[string]map[string]string, opts ...Option) *Service {
	if len(key) < 32 {
		panic(fmt.Sprintf("providers.New: the encryption key has %d bytes, want 32", len(key)))
	}
	if len(key) > 32 {
		sum := sha256.Sum256(key)
		key = sum[:]
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("providers.New: " + err.Error())
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic("providers.New: " + err.Error())
	}
	s := &Service{db: db, aead: aead, http: &http.Client{Timeout: 30 * time.Second}, now: time.Now, ttl: CacheTTL, cache: map[string]cached{}}
	for _, o := range opts {
		o(s)
	}
	for name, raw := range defaults {
		// Malformed defaults are reported by the channel routers at startup.
		if p, err := vendor.ParseDefault(name, raw); err == nil {
			s.defaults = append(s.defaults, p)
		}
	}
	sortProviders(s.defaults)
	return s
}

const sealPrefix = "v1:"

func aad(appID, name string) []byte { return []byte("herald/providers\x00" + appID + "\x00" + name) }

func (s *Service) seal(appID, name string, settings map[string]string) (string, error) {
	plain, err := json.Marshal(settings)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("nonce: %w", err)
	}
	ct := s.aead.Seal(nonce, nonce, plain, aad(appID, name))
	return sealPrefix + base64.StdEncoding.EncodeToString(ct), nil
}

func (s *Service) open(appID, name, sealed string) (map[string]string, error) {
	raw, ok := strings.CutPrefix(sealed, sealPrefix)
	if !ok {
		return nil, fmt.Errorf("provider %s: unknown settings format", name)
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(b) < s.aead.NonceSize() {
		return nil, fmt.Errorf("provider %s: corrupt settings", name)
	}
	plain, err := s.aead.Open(nil, b[:s.aead.NonceSize()], b[s.aead.NonceSize():], aad(appID, name))
	if err != nil {
		return nil, fmt.Errorf("provider %s: decrypt settings (wrong security.encryption_key?): %w", name, err)
	}
	var m map[string]string
	if err := json.Unmarshal(plain, &m); err != nil {
		return nil, fmt.Errorf("provider %s: settings: %w", name, err)
	}
	return m, nil
}

const columns = `name, type, weight, settings, created_at, updated_at`

func (s *Service) scan(appID string, sc interface{ Scan(...any) error }) (vendor.Provider, error) {
	var p vendor.Provider
	var sealed string
	var created, updated int64
	if err := sc.Scan(&p.Name, &p.Type, &p.Weight, &sealed, &created, &updated); err != nil {
		return p, err
	}
	settings, err := s.open(appID, p.Name, sealed)
	if err != nil {
		return p, err
	}
	p.AppID, p.Settings = appID, settings
	p.CreatedAt, p.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return p, nil
}

// List returns an app's own providers, sorted by name.
func (s *Service) List(ctx context.Context, appID string) ([]vendor.Provider, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT `+columns+` FROM providers WHERE app_id = ? ORDER BY name`, appID)
	if err != nil {
		return nil, fmt.Errorf("list providers: %w", err)
	}
	defer rows.Close()
	var out []vendor.Provider
	for rows.Next() {
		p, err := s.scan(appID, rows)
		if err != nil {
			return nil, fmt.Errorf("list providers: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Get returns one of an app's providers.
func (s *Service) Get(ctx context.Context, appID, name string) (vendor.Provider, error) {
	row := s.db.R.QueryRowContext(ctx, `SELECT `+columns+` FROM providers WHERE app_id = ? AND name = ?`, appID, name)
	p, err := s.scan(appID, row)
	if errors.Is(err, sql.ErrNoRows) {
		return p, ErrNotFound
	}
	if err != nil {
		return p, fmt.Errorf("get provider %s: %w", name, err)
	}
	return p, nil
}

// Create stores a new provider; p must be validated.
func (s *Service) Create(ctx context.Context, appID string, p vendor.Provider) (vendor.Provider, error) {
	now := s.now().UTC().Truncate(time.Millisecond)
	p.AppID, p.CreatedAt, p.UpdatedAt = appID, now, now
	sealed, err := s.seal(appID, p.Name, p.Settings)
	if err != nil {
		return p, fmt.Errorf("seal provider %s: %w", p.Name, err)
	}
	_, err = s.db.W.ExecContext(ctx, `INSERT INTO providers (app_id, `+columns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		appID, p.Name, p.Type, p.Weight, sealed, now.UnixMilli(), now.UnixMilli())
	if sqldb.IsDuplicate(err) {
		return p, ErrExists
	}
	if err != nil {
		return p, fmt.Errorf("create provider %s: %w", p.Name, err)
	}
	s.invalidate(appID)
	return p, nil
}

// Update replaces a provider through fn, which receives the stored
// provider and returns the new one (validated); the read and the write
// share one transaction.
func (s *Service) Update(ctx context.Context, appID, name string, fn func(cur vendor.Provider) (vendor.Provider, error)) (vendor.Provider, error) {
	var out vendor.Provider
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		q := `SELECT ` + columns + ` FROM providers WHERE app_id = ? AND name = ?`
		if s.db.Dialect == sqldb.MySQL {
			q += ` FOR UPDATE`
		}
		cur, err := s.scan(appID, tx.QueryRowContext(ctx, q, appID, name))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		next.Name, next.AppID, next.CreatedAt = cur.Name, appID, cur.CreatedAt
		next.UpdatedAt = s.now().UTC().Truncate(time.Millisecond)
		sealed, err := s.seal(appID, name, next.Settings)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE providers SET type = ?, weight = ?, settings = ?, updated_at = ? WHERE app_id = ? AND name = ?`,
			next.Type, next.Weight, sealed, next.UpdatedAt.UnixMilli(), appID, name); err != nil {
			return fmt.Errorf("update provider %s: %w", name, err)
		}
		out = next
		return nil
	})
	s.invalidate(appID)
	return out, err
}

// Delete removes a provider.
func (s *Service) Delete(ctx context.Context, appID, name string) error {
	res, err := s.db.W.ExecContext(ctx, `DELETE FROM providers WHERE app_id = ? AND name = ?`, appID, name)
	if err != nil {
		return fmt.Errorf("delete provider %s: %w", name, err)
	}
	s.invalidate(appID)
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// Defaults returns the config-file providers (sorted by name).
func (s *Service) Defaults() []vendor.Provider { return s.defaults }

// AppProviders implements vendor.Lister: the app's own providers, read
// through a short cache.
func (s *Service) AppProviders(ctx context.Context, appID string) ([]vendor.Provider, error) {
	now := s.now()
	s.mu.Lock()
	c, ok := s.cache[appID]
	s.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.list, nil
	}
	list, err := s.List(ctx, appID)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if len(s.cache) >= 100_000 {
		s.cache = map[string]cached{}
	}
	s.cache[appID] = cached{list: list, expires: now.Add(s.ttl)}
	s.mu.Unlock()
	return list, nil
}

// ProviderConfig implements registry.ProviderLookup: the named provider's
// settings for an app, with its "type" and "weight" keys, as in
// config.Config.Providers.
func (s *Service) ProviderConfig(ctx context.Context, appID, name string) (map[string]string, bool, error) {
	list, err := s.AppProviders(ctx, appID)
	if err != nil {
		return nil, false, err
	}
	for _, p := range list {
		if p.Name == name {
			out := make(map[string]string, len(p.Settings)+2)
			for k, v := range p.Settings {
				out[k] = v
			}
			out["type"] = p.Type
			out["weight"] = fmt.Sprint(p.Weight)
			return out, true, nil
		}
	}
	return nil, false, nil
}

func (s *Service) invalidate(appID string) {
	s.mu.Lock()
	delete(s.cache, appID)
	s.mu.Unlock()
}

func sortProviders(ps []vendor.Provider) {
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].Name < ps[j-1].Name; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

package dashboard

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"
)

// MinCookieKeyLen is the shortest CookieKey New accepts.
const MinCookieKeyLen = 16

// session is what the sealed cookie carries. Key is the operator's API key
// ("" in the pre-login cookie, which only holds a CSRF token).
type session struct {
	Key     string `json:"k,omitempty"`
	CSRF    string `json:"t"`
	Expires int64  `json:"e"` // Unix seconds
}

func (s *session) checkCSRF(token string) bool {
	return s.CSRF != "" && token != "" && subtle.ConstantTimeCompare([]byte(s.CSRF), []byte(token)) == 1
}

// sealer encrypts and authenticates cookie values with AES-256-GCM. The
// cookie's name is the additional data, so one cookie cannot stand in for
// another.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) < MinCookieKeyLen {
		return nil, fmt.Errorf("dashboard: CookieKey must be at least %d bytes (got %d)", MinCookieKeyLen, len(key))
	}
	k, err := hkdf.Key(sha256.New, key, nil, "herald dashboard session cookie v1", 32)
	if err != nil {
		return nil, fmt.Errorf("dashboard: derive cookie key: %w", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("dashboard: cookie cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("dashboard: cookie cipher: %w", err)
	}
	return &sealer{aead: aead}, nil
}

func (s *sealer) seal(name string, plain []byte) string {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, []byte(name)))
}

var errBadCookie = errors.New("invalid cookie")

func (s *sealer) open(name, value string) ([]byte, error) {
	if len(value) > 4096 {
		return nil, errBadCookie
	}
	b, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(b) < s.aead.NonceSize()+s.aead.Overhead() {
		return nil, errBadCookie
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, b[:n], b[n:], []byte(name))
	if err != nil {
		return nil, errBadCookie
	}
	return plain, nil
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// readSession opens the named cookie; nil when absent, forged or expired.
func (d *Dashboard) readSession(c *fiber.Ctx, name string) *session {
	v := c.Cookies(name)
	if v == "" {
		return nil
	}
	plain, err := d.sealer.open(name, v)
	if err != nil {
		return nil
	}
	var s session
	if err := json.Unmarshal(plain, &s); err != nil || s.CSRF == "" {
		return nil
	}
	if d.now().Unix() >= s.Expires {
		return nil
	}
	return &s
}

// writeSession seals s into the named cookie: HttpOnly, SameSite=Strict,
// scoped to the dashboard's path, Secure when the request came over TLS.
func (d *Dashboard) writeSession(c *fiber.Ctx, name string, s *session) {
	plain, _ := json.Marshal(s)
	exp := time.Unix(s.Expires, 0)
	c.Cookie(&fiber.Cookie{
		Name:     name,
		Value:    d.sealer.seal(name, plain),
		Path:     d.cookiePath(),
		Expires:  exp,
		MaxAge:   int(exp.Sub(d.now()).Seconds()),
		Secure:   c.Protocol() == "https",
		HTTPOnly: true,
		SameSite: fiber.CookieSameSiteStrictMode,
	})
}

func (d *Dashboard) clearCookie(c *fiber.Ctx, name string) {
	c.Cookie(&fiber.Cookie{
		Name:     name,
		Value:    "",
		Path:     d.cookiePath(),
		Expires:  time.Unix(1, 0),
		MaxAge:   -1,
		Secure:   c.Protocol() == "https",
		HTTPOnly: true,
		SameSite: fiber.CookieSameSiteStrictMode,
	})
}

func (d *Dashboard) cookiePath() string {
	if d.base == "" {
		return "/"
	}
	return d.base
}

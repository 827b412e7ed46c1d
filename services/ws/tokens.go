package ws

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// ErrBadToken means a WebSocket token is malformed, forged or expired.
var ErrBadToken = errors.New("invalid or expired token")

// Tokens issues and checks the short-lived tokens browsers connect with:
// base64url(app id) "." base64url(user id) "." expiry (Unix seconds) "."
// base64url(HMAC-SHA256(secret, "herald-ws-v1\n" app "\n" user "\n" expiry)).
type Tokens struct {
	secret []byte
	ttl    time.Duration
}

// NewTokens returns a token signer; ttl defaults to 15 minutes.
func NewTokens(secret []byte, ttl time.Duration) Tokens {
	if ttl <= 0 {
		ttl = 15 * time.Minute
	}
	return Tokens{secret: secret, ttl: ttl}
}

var b64 = base64.RawURLEncoding

func (t Tokens) mac(app, user, exp string) []byte {
	h := hmac.New(sha256.New, t.secret)
	h.Write([]byte("herald-ws-v1\n"))
	h.Write([]byte(app))
	h.Write([]byte{'\n'})
	h.Write([]byte(user))
	h.Write([]byte{'\n'})
	h.Write([]byte(exp))
	return h.Sum(nil)
}

// Issue returns a token for a user of an app and its expiry.
func (t Tokens) Issue(appID, userID string, now time.Time) (string, time.Time) {
	exp := now.Add(t.ttl).Truncate(time.Second)
	es := strconv.FormatInt(exp.Unix(), 10)
	tok := b64.EncodeToString([]byte(appID)) + "." + b64.EncodeToString([]byte(userID)) + "." + es + "." +
		b64.EncodeToString(t.mac(appID, userID, es))
	return tok, exp.UTC()
}

// Verify checks a token and returns its app and user.
func (t Tokens) Verify(tok string, now time.Time) (appID, userID string, err error) {
	if tok == "" || len(tok) > 1024 {
		return "", "", ErrBadToken
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 4 {
		return "", "", ErrBadToken
	}
	app, err1 := b64.DecodeString(parts[0])
	user, err2 := b64.DecodeString(parts[1])
	exp, err3 := strconv.ParseInt(parts[2], 10, 64)
	sig, err4 := b64.DecodeString(parts[3])
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || len(app) == 0 || len(user) == 0 {
		return "", "", ErrBadToken
	}
	if !hmac.Equal(sig, t.mac(string(app), string(user), parts[2])) {
		return "", "", ErrBadToken
	}
	if now.Unix() >= exp {
		return "", "", ErrBadToken
	}
	return string(app), string(user), nil
}

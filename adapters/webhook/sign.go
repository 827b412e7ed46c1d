package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header names of a webhook request.
const (
	HeaderDeliveryID = "Herald-Delivery-Id"
	HeaderTimestamp  = "Herald-Timestamp"
	HeaderSignature  = "Herald-Signature"
	HeaderAttempt    = "Herald-Attempt"
)

// Verification errors.
var (
	ErrNoSignature        = errors.New("webhook: no v1 signature")
	ErrSignatureMismatch  = errors.New("webhook: signature mismatch")
	ErrBadTimestamp       = errors.New("webhook: malformed timestamp")
	ErrTimestampTolerance = errors.New("webhook: timestamp outside tolerance")
)

// Sign returns the Herald-Signature value for a body sent at timestamp (Unix
// seconds): "v1=" + hex(HMAC-SHA256(secret, "<timestamp>.<body>")).
func Sign(secret string, timestamp int64, body []byte) string {
	var tsBuf [20]byte
	ts := strconv.AppendInt(tsBuf[:0], timestamp, 10)
	return signString(secret, ts, body)
}

func signString(secret string, ts, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(ts)
	mac.Write([]byte{'.'})
	mac.Write(body)
	var sum [sha256.Size]byte
	var out [3 + 2*sha256.Size]byte
	copy(out[:], "v1=")
	hex.Encode(out[3:], mac.Sum(sum[:0]))
	return string(out[:])
}

// Verify checks a received webhook: timestamp is the Herald-Timestamp header,
// body the raw request body (before any JSON parsing), signatureHeader the
// Herald-Signature header. The header may carry several comma-separated
// "v1=<hex>" values (during a secret rotation); one matching value is
// enough. With tolerance > 0, a timestamp further than tolerance from now is
// rejected (replay protection); 5 minutes is a good choice. Comparison is
// constant-time.
func Verify(secret, timestamp string, body []byte, signatureHeader string, tolerance time.Duration) error {
	return verifyAt(time.Now(), secret, timestamp, body, signatureHeader, tolerance)
}

func verifyAt(now time.Time, secret, timestamp string, body []byte, signatureHeader string, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(strings.TrimSpace(timestamp), 10, 64)
	if err != nil || ts <= 0 {
		return fmt.Errorf("%w: %q", ErrBadTimestamp, timestamp)
	}
	if tolerance > 0 {
		skew := now.Sub(time.Unix(ts, 0))
		if skew < 0 {
			skew = -skew
		}
		if skew > tolerance {
			return fmt.Errorf("%w: %s off, tolerance %s", ErrTimestampTolerance, skew.Truncate(time.Second), tolerance)
		}
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(ts, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	want := mac.Sum(nil)
	found := false
	for part := range strings.SplitSeq(signatureHeader, ",") {
		scheme, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || scheme != "v1" {
			continue
		}
		found = true
		got, err := hex.DecodeString(val)
		if err != nil {
			continue
		}
		if hmac.Equal(got, want) {
			return nil
		}
	}
	if !found {
		return ErrNoSignature
	}
	return ErrSignatureMismatch
}

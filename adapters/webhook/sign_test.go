package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSignKnownVector(t *testing.T) {
	// Independent computation of HMAC-SHA256("whsec_abc", "1700000000.{\"id\":\"dlv_1\"}").
	body := []byte(`{"id":"dlv_1"}`)
	mac := hmac.New(sha256.New, []byte("whsec_abc"))
	mac.Write([]byte("1700000000." + string(body)))
	want := "v1=" + hex.EncodeToString(mac.Sum(nil))
	if got := Sign("whsec_abc", 1_700_000_000, body); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	if len(want) != 3+64 {
		t.Fatalf("signature length %d", len(want))
	}
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"id":"dlv_1","title":"你好"}`)
	good := Sign("s1", now.Unix(), body)
	tests := []struct {
		name      string
		secret    string
		ts        string
		body      []byte
		header    string
		tolerance time.Duration
		want      error
	}{
		{"valid", "s1", "1700000000", body, good, 5 * time.Minute, nil},
		{"valid, no tolerance check", "s1", "1700000000", body, good, 0, nil},
		{"one of several signatures (rotation)", "s1", "1700000000", body, "v1=" + strings.Repeat("00", 32) + ", " + good, time.Minute, nil},
		{"unknown schemes ignored", "s1", "1700000000", body, "v0=abc," + good, time.Minute, nil},
		{"wrong secret", "s2", "1700000000", body, good, time.Minute, ErrSignatureMismatch},
		{"tampered body", "s1", "1700000000", []byte(`{"id":"dlv_2","title":"你好"}`), good, time.Minute, ErrSignatureMismatch},
		{"timestamp swapped", "s1", "1700000001", body, good, time.Minute, ErrSignatureMismatch},
		{"not hex", "s1", "1700000000", body, "v1=zz", time.Minute, ErrSignatureMismatch},
		{"no signature", "s1", "1700000000", body, "", time.Minute, ErrNoSignature},
		{"no v1 signature", "s1", "1700000000", body, "v2=abcd", time.Minute, ErrNoSignature},
		{"bad timestamp", "s1", "yesterday", body, good, time.Minute, ErrBadTimestamp},
		{"stale", "s1", "1699999000", body, Sign("s1", 1_699_999_000, body), 5 * time.Minute, ErrTimestampTolerance},
		{"from the future", "s1", "1700001000", body, Sign("s1", 1_700_001_000, body), 5 * time.Minute, ErrTimestampTolerance},
		{"stale but no tolerance", "s1", "1699999000", body, Sign("s1", 1_699_999_000, body), 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := verifyAt(now, tt.secret, tt.ts, tt.body, tt.header, tt.tolerance)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("verify = %v, want %v", err, tt.want)
			}
		})
	}
	// the exported wrapper uses the wall clock
	ts := time.Now().Unix()
	if err := Verify("s", itoa(ts), body, Sign("s", ts, body), time.Minute); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func BenchmarkSign(b *testing.B) {
	body := []byte(strings.Repeat(`{"id":"dlv_01HZX","title":"Order shipped","data":{"k":"v"}}`, 16)) // ~1 KB
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = Sign("whsec_0123456789abcdefghijklmnop", 1_700_000_000+int64(i), body)
	}
}

func BenchmarkVerify(b *testing.B) {
	body := []byte(strings.Repeat(`{"id":"dlv_01HZX","title":"Order shipped","data":{"k":"v"}}`, 16))
	ts := time.Now().Unix()
	sig := Sign("whsec_x", ts, body)
	tss := itoa(ts)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Verify("whsec_x", tss, body, sig, 5*time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}

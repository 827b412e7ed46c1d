// Package ids makes sortable, unique identifiers (ULIDs with a type prefix).
package ids

import (
	"crypto/rand"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

var (
	mu      sync.Mutex
	entropy = ulid.Monotonic(rand.Reader, 0)
)

// New returns prefix + "_" + a ULID. IDs made by one process sort by creation time.
func New(prefix string) string {
	mu.Lock()
	id := ulid.MustNew(ulid.Timestamp(time.Now()), entropy)
	mu.Unlock()
	if prefix == "" {
		return id.String()
	}
	return prefix + "_" + id.String()
}

// Random returns n random bytes encoded as base32 (for secrets and tokens).
func Random(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("ids: crypto/rand failed: " + err.Error())
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	out := make([]byte, 0, n*8/5+1)
	var buf uint
	var bits uint
	for _, c := range b {
		buf = buf<<8 | uint(c)
		bits += 8
		for bits >= 5 {
			out = append(out, alphabet[(buf>>(bits-5))&31])
			bits -= 5
		}
	}
	if bits > 0 {
		out = append(out, alphabet[(buf<<(5-bits))&31])
	}
	return string(out)
}

package notify

import (
	"testing"
	"time"

	"herald.dev/platform/httpx"
)

var benchBody = []byte(`{"template":"welcome","data":{"name":"Ada","order":"A-1001"},"recipients":[{"user_id":"u1"}],"channels":["inapp","email"],"priority":"high","category":"orders"}`)

func BenchmarkDecodeStd(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var r SendRequest
		if err := httpx.DecodeJSON(benchBody, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidate(b *testing.B) {
	var r SendRequest
	if err := httpx.DecodeJSON(benchBody, &r); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, p := validate(&r, now); p != nil {
			b.Fatal(p)
		}
	}
}

package notify

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
)

var decodeSeeds = []string{
	string(benchBody),
	`{"template":"t","data":{"n":9007199254740993,"f":-1.5e+10,"z":0,"neg":-0.0,"a":[1,"x",true,false,null,{"b":[]}],"o":{}},"recipients":[{"user_id":"u1"},{"group_id":"g"},{"email":"a@b.co"},{"phone":"+8613800138000"}]}`,
	`{"content":{"*":{"subject":"s","text":"t","html":"<b>h</b>","title":"ti","body":"bo","markdown":"**m**","url":"https://x.y","vendor_template":"SMS_1","params":{"code":"1234"}},"email":null},"recipients":[null]}`,
	`{"template":"t","channels":["inapp",null,"email"],"fallback":[],"meta":{"k":"v","n":null},"priority":null,"kind":"todo","todo_key":"k","locale":"zh-CN","send_at":"2030-01-01T00:00:00Z","expires_at":"2030-01-02T00:00:00+08:00","category":"c"}`,
	`{"template":"\u00e9\u4e2d\ud83d\ude00 \"q\" \\ \/ \b\f\n\r\t","recipients":[]}`,
	`{"template":"\ud83d x \ude00 \ud83d\u0041"}`,
	"{\"template\":\"caf\xc3\xa9 \xff\xfe bad\"}",
	`  {"template" : "t" , "data" : { "a" : 1 , "a" : 2 } }  `,
	`null`,
	`{}`,
	`[1,2]`,
	`"str"`,
	`12`,
	`{"template":5}`,
	`{"recipients":"u1"}`,
	`{"recipients":[5]}`,
	`{"recipients":[{"user_id":1}]}`,
	`{"recipients":[{"nope":"x"}]}`,
	`{"content":{"email":{"nope":"x"}}}`,
	`{"content":[]}`,
	`{"data":[]}`,
	`{"data":"x"}`,
	`{"meta":{"k":1}}`,
	`{"channels":"inapp"}`,
	`{"bogus":{"deep":[1,2,{"x":null}]}}`,
	`{"Template":"t"}`,
	`{"template":"a","template":"b"}`,
	`{"template":`,
	`{"template":"t"`,
	`{"template":"t",}`,
	`{"template":"t"} {}`,
	`{"template":"t"} x`,
	`{"template":"t\x01"}`,
	`{"template":"\q"}`,
	`{"template":"\u12"}`,
	`{"template":"\u12zz"}`,
	`{"data":{"n":01}}`,
	`{"data":{"n":1.}}`,
	`{"data":{"n":1e}}`,
	`{"data":{"n":-}}`,
	`{"data":{"n":+1}}`,
	`{"data":{"t":tru}}`,
	`{"data":{"t":nul}}`,
	`{"data":{"a":[1 2]}}`,
	`{"data":{"a" 1}}`,
	`{"data":{1:2}}`,
	`{"recipients":[{"user_id":"u1"}`,
	`{"data":` + strings.Repeat(`[`, 70) + strings.Repeat(`]`, 70) + `}`,
	`{"data":{"x":` + strings.Repeat(`{"a":`, 30) + `1` + strings.Repeat(`}`, 30) + `}}`,
	``,
	`   `,
	`{"template":"t", "data":{"s":"` + strings.Repeat("é", 40) + `"}}`,
}

func TestDecodeRequestMatchesEncodingJSON(t *testing.T) {
	for _, s := range decodeSeeds {
		checkDecode(t, []byte(s))
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, b) })
}

// checkDecode compares decodeRequest with the strict encoding/json path
// (httpx.DecodeJSON). Where both accept, the results are identical; a
// syntax error for one is a syntax error for the other; decodeRequest may
// refuse more only for its documented reasons.
func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	var mine, std SendRequest
	pm := decodeRequest(b, &mine)
	errStd := httpx.DecodeJSON(b, &std)
	var ps *httpx.Problem
	if errStd != nil {
		ps = errStd.(*httpx.Problem)
	}
	switch {
	case pm == nil && ps == nil:
		if !reflect.DeepEqual(mine, std) {
			t.Fatalf("%q:\n mine %#v\n std  %#v", b, mine, std)
		}
	case pm == nil:
		t.Fatalf("%q: accepted, encoding/json says %v", b, ps)
	case ps == nil:
		if !allowedStricter(pm) {
			t.Fatalf("%q: refused (%v), encoding/json accepts it", b, pm)
		}
	case allowedStricter(pm):
		// refused for its own reasons; encoding/json may see the input differently
	case ps.Code == httpx.CodeMalformed.Name && pm.Code != httpx.CodeMalformed.Name:
		t.Fatalf("%q: encoding/json finds a syntax error (%v), mine says %v", b, ps, pm)
	case pm.Code == httpx.CodeMalformed.Name && ps.Code != httpx.CodeMalformed.Name && !strings.Contains(pm.Detail, "nested"):
		t.Fatalf("%q: mine finds a syntax error (%v), encoding/json says %v", b, pm, ps)
	}
}

// allowedStricter: duplicate fields, names in another letter case (which
// encoding/json matches case-insensitively) and very deep nesting.
func allowedStricter(p *httpx.Problem) bool {
	if strings.Contains(p.Detail, "nested") {
		return true
	}
	for _, fe := range p.Errors {
		if fe.Reason == "appears more than once" || fe.Reason == "unknown field" {
			return true
		}
	}
	return false
}

func TestDecodeRequestProblems(t *testing.T) {
	cases := []struct{ body, code, field, reason string }{
		{`{"template":5}`, "validation_failed", "template", "must be a string, not number"},
		{`{"recipients":[{"user_id":"u"},{"email":true}]}`, "validation_failed", "recipients[1].email", "must be a string, not bool"},
		{`{"content":{"email":{"colour":"red"}}}`, "validation_failed", "content.email.colour", "unknown field"},
		{`{"template":"a","template":"b"}`, "validation_failed", "template", "appears more than once"},
		{`{"bogus":1}`, "validation_failed", "bogus", "unknown field"},
		{`[]`, "validation_failed", "(body)", "must be an object, not array"},
		{`{"bogus":1,"template":`, "malformed_request", "", ""},
		{`{"template":"t"} {}`, "malformed_request", "", ""},
	}
	for _, tc := range cases {
		var r SendRequest
		p := decodeRequest([]byte(tc.body), &r)
		if p == nil || p.Code != tc.code {
			t.Fatalf("%s: %v, want %s", tc.body, p, tc.code)
		}
		if tc.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tc.field || p.Errors[0].Reason != tc.reason) {
			t.Fatalf("%s: %+v, want %s: %s", tc.body, p.Errors, tc.field, tc.reason)
		}
	}
	var r SendRequest
	if p := decodeRequest([]byte(`{"data":{"n":12345678901234567890123}}`), &r); p != nil || r.Data["n"] != json.Number("12345678901234567890123") {
		t.Fatalf("big number: %v %#v", p, r.Data)
	}
	if p := decodeRequest([]byte(`{"channels":["inapp"]}`), &r); p != nil || !reflect.DeepEqual(r.Channels, []domain.Channel{"inapp"}) {
		t.Fatalf("channels: %v %v", p, r.Channels)
	}
}

func BenchmarkDecodeRequest(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var r SendRequest
		if p := decodeRequest(benchBody, &r); p != nil {
			b.Fatal(p)
		}
	}
}

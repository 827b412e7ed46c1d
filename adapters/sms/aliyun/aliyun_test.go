package aliyun

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"herald.dev/adapters/protect"
	"herald.dev/adapters/providers/vendor"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

// The worked example of Aliyun's SMS signature documentation ("HTTP协议及签名"):
// AccessKeyId testId, AccessKeySecret testSecret, a GET SendSms request with
// these parameters signs to zJDF+Lrzhj/ThnlvIToysFRq6t4= (URL-encoded
// zJDF%2BLrzhj%2FThnlvIToysFRq6t4%3D).
func TestSignatureDocumentExample(t *testing.T) {
	p := url.Values{}
	p.Set("SignatureMethod", "HMAC-SHA1")
	p.Set("SignatureNonce", "45e25e9b-0a6f-4070-8c85-2956eda1b466")
	p.Set("AccessKeyId", "testId")
	p.Set("SignatureVersion", "1.0")
	p.Set("Timestamp", "2017-07-12T02:42:19Z")
	p.Set("Format", "XML")
	p.Set("Action", "SendSms")
	p.Set("Version", "2017-05-25")
	p.Set("RegionId", "cn-hangzhou")
	p.Set("PhoneNumbers", "15300000001")
	p.Set("SignName", "阿里云短信测试专用")
	p.Set("TemplateParam", `{"customer":"test"}`)
	p.Set("TemplateCode", "SMS_71390007")
	p.Set("OutId", "123")

	const wantPrefix = "GET&%2F&AccessKeyId%3DtestId%26Action%3DSendSms%26Format%3DXML%26OutId%3D123%26PhoneNumbers%3D15300000001%26RegionId%3Dcn-hangzhou%26SignName%3D%25E9%2598%25BF%25E9%2587%258C%25E4%25BA%2591"
	if s := StringToSign("GET", p); !strings.HasPrefix(s, wantPrefix) {
		t.Fatalf("StringToSign =\n%s\nwant prefix\n%s", s, wantPrefix)
	}
	if got := Sign("GET", p, "testSecret"); got != "zJDF+Lrzhj/ThnlvIToysFRq6t4=" {
		t.Fatalf("Sign = %q, want the documented zJDF+Lrzhj/ThnlvIToysFRq6t4=", got)
	}
	if got := PercentEncode("zJDF+Lrzhj/ThnlvIToysFRq6t4="); got != "zJDF%2BLrzhj%2FThnlvIToysFRq6t4%3D" {
		t.Fatalf("encoded signature %q", got)
	}
}

func TestPercentEncode(t *testing.T) {
	for in, want := range map[string]string{"a b": "a%20b", "*": "%2A", "~": "~", "/": "%2F", "中": "%E4%B8%AD", "a+b": "a%2Bb"} {
		if got := PercentEncode(in); got != want {
			t.Errorf("PercentEncode(%q) = %q, want %q", in, got, want)
		}
	}
}

// verify is an independent check of the signature the server receives.
func verify(method string, form url.Values, secret string) bool {
	enc := func(s string) string {
		var b strings.Builder
		for _, c := range []byte(s) {
			if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(&b, "%%%02X", c)
			}
		}
		return b.String()
	}
	var keys []string
	for k := range form {
		if k != "Signature" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var pairs []string
	for _, k := range keys {
		pairs = append(pairs, enc(k)+"="+enc(form.Get(k)))
	}
	sts := method + "&" + enc("/") + "&" + enc(strings.Join(pairs, "&"))
	mac := hmac.New(sha1.New, []byte(secret+"&"))
	mac.Write([]byte(sts))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil)) == form.Get("Signature")
}

type server struct {
	*httptest.Server
	mu    sync.Mutex
	forms []url.Values
	reply func(w http.ResponseWriter, form url.Values)
}

func newServer(t *testing.T) *server {
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			t.Errorf("request %s %s %s, want POST / form", r.Method, r.URL, r.Header.Get("Content-Type"))
		}
		form, err := url.ParseQuery(string(body))
		if err != nil {
			t.Errorf("body: %v", err)
		}
		if !verify(http.MethodPost, form, "secret-key") {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"RequestId":"r","Code":"SignatureDoesNotMatch","Message":"Specified signature is not matched with our calculation."}`)
			return
		}
		s.mu.Lock()
		s.forms = append(s.forms, form)
		reply := s.reply
		s.mu.Unlock()
		if reply != nil {
			reply(w, form)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"Code": "OK", "Message": "OK", "BizId": "9006197469364984^0", "RequestId": "F655A8D5-B967-440B-8683-DAD6FF8DE990"})
	}))
	t.Cleanup(s.Close)
	return s
}

func client(t *testing.T, s *server) *Client {
	t.Helper()
	c, err := NewClient(vendor.Provider{Name: "ali", Type: Type, Settings: map[string]string{
		"access_key_id": "LTAI-test", "access_key_secret": "secret-key", "sign_name": "Herald", "endpoint": s.URL,
	}}, vendor.Env{HTTP: s.Client(), Now: func() time.Time { return time.Date(2025, 3, 4, 5, 6, 7, 0, time.FixedZone("CST", 8*3600)) }})
	if err != nil {
		t.Fatal(err)
	}
	c.Nonce = func() string { return "nonce-1" }
	return c
}

func delivery(addr string) *contracts.Delivery {
	return &contracts.Delivery{ID: "dlv_1", Channel: domain.ChannelSMS, Address: addr,
		Content: domain.Content{VendorTemplate: "SMS_123", Params: map[string]string{"code": "4821", "ttl": "5"}}}
}

func TestSendRequestShape(t *testing.T) {
	s := newServer(t)
	c := client(t, s)
	res, err := c.Send(context.Background(), delivery("+8613800138000"))
	if err != nil {
		t.Fatal(err)
	}
	if res.ProviderID != "9006197469364984^0" {
		t.Fatalf("ProviderID = %q", res.ProviderID)
	}
	want := map[string]string{
		"AccessKeyId": "LTAI-test", "Action": "SendSms", "Format": "JSON", "RegionId": "cn-hangzhou",
		"SignatureMethod": "HMAC-SHA1", "SignatureNonce": "nonce-1", "SignatureVersion": "1.0",
		"Timestamp": "2025-03-03T21:06:07Z", "Version": "2017-05-25",
		"PhoneNumbers": "13800138000", "SignName": "Herald", "TemplateCode": "SMS_123",
		"TemplateParam": `{"code":"4821","ttl":"5"}`, "OutId": "dlv_1",
	}
	got := s.forms[0]
	for k, v := range want {
		if got.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, got.Get(k), v)
		}
	}
	if len(got) != len(want)+1 { // + Signature
		t.Errorf("form has %d params (%v), want %d", len(got), got, len(want)+1)
	}
	// International numbers keep their country code.
	if _, err := c.Send(context.Background(), delivery("+85261234567")); err != nil {
		t.Fatal(err)
	}
	if p := s.forms[1].Get("PhoneNumbers"); p != "85261234567" {
		t.Fatalf("international PhoneNumbers = %q", p)
	}
}

func TestDefaultTemplateAndNoParams(t *testing.T) {
	s := newServer(t)
	c := client(t, s)
	d := delivery("13800138000")
	d.Content = domain.Content{Text: "hello"}
	if _, err := c.Send(context.Background(), d); err == nil {
		t.Fatal("sent without any template")
	} else if retry, _ := contracts.Classify(err); retry {
		t.Fatalf("missing template must be permanent: %v", err)
	}
	c.TemplateCode = "SMS_DEFAULT"
	if _, err := c.Send(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	f := s.forms[0]
	if f.Get("TemplateCode") != "SMS_DEFAULT" || f.Has("TemplateParam") {
		t.Fatalf("form %v: want the default template and no TemplateParam", f)
	}
}

func TestBadAddressNeverReachesVendor(t *testing.T) {
	s := newServer(t)
	for _, addr := range []string{"", "not-a-phone", "+0123", "12345"} {
		_, err := client(t, s).Send(context.Background(), delivery(addr))
		var se *contracts.SendError
		if !errors.As(err, &se) || se.Retryable {
			t.Fatalf("address %q: %v, want permanent", addr, err)
		}
	}
	if len(s.forms) != 0 {
		t.Fatal("a bad address reached the vendor")
	}
}

func TestWrongSecretIsProviderFault(t *testing.T) {
	s := newServer(t)
	c := client(t, s)
	c.AccessKeySecret = "wrong"
	_, err := c.Send(context.Background(), delivery("+8613800138000"))
	if !protect.IsProviderFault(err) || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Fatalf("err = %v, want a provider fault naming SignatureDoesNotMatch", err)
	}
}

func TestErrorMapping(t *testing.T) {
	type want int
	const (
		recipient want = iota
		fault
		perRecipientLimit
		throttled
		retryable
	)
	cases := []struct {
		code, msg string
		want      want
		after     time.Duration
	}{
		{"isv.MOBILE_NUMBER_ILLEGAL", "非法手机号", recipient, 0},
		{"isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1", perRecipientLimit, time.Minute},
		{"isv.BUSINESS_LIMIT_CONTROL", "触发小时级流控Permits:5", perRecipientLimit, time.Hour},
		{"isv.BUSINESS_LIMIT_CONTROL", "触发天级流控Permits:10", perRecipientLimit, 24 * time.Hour},
		{"Throttling.User", "Request was denied due to user flow control.", throttled, time.Second},
		{"isv.DAY_LIMIT_CONTROL", "触发日发送限额", throttled, time.Hour},
		{"isv.SMS_TEMPLATE_ILLEGAL", "模板不合法", fault, 0},
		{"isv.AMOUNT_NOT_ENOUGH", "账户余额不足", fault, 0},
		{"InvalidAccessKeyId.NotFound", "Specified access key is not found.", fault, 0},
		{"isp.SYSTEM_ERROR", "系统错误", retryable, 0},
		{"isv.SOMETHING_NEW", "?", retryable, 0},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			s := newServer(t)
			s.reply = func(w http.ResponseWriter, _ url.Values) {
				json.NewEncoder(w).Encode(map[string]string{"Code": tc.code, "Message": tc.msg, "RequestId": "rid"})
			}
			_, err := client(t, s).Send(context.Background(), delivery("+8613800138000"))
			retry, after := contracts.Classify(err)
			var ok bool
			switch tc.want {
			case recipient:
				ok = !retry && !protect.IsProviderFault(err) && !protect.ShouldFailover(err)
			case fault:
				ok = !retry && protect.IsProviderFault(err) && protect.ShouldFailover(err)
			case perRecipientLimit:
				ok = retry && after == tc.after && errors.Is(err, protect.ErrRecipientLimited) && !protect.ShouldFailover(err)
			case throttled:
				ok = retry && after == tc.after && errors.Is(err, protect.ErrThrottled) && protect.ShouldFailover(err)
			case retryable:
				ok = retry && protect.ShouldFailover(err)
			}
			if !ok || !strings.Contains(err.Error(), tc.code) {
				t.Fatalf("err = %v (retry %v after %v)", err, retry, after)
			}
		})
	}
}

func TestHTTPFailures(t *testing.T) {
	s := newServer(t)
	s.reply = func(w http.ResponseWriter, _ url.Values) { w.WriteHeader(503) }
	_, err := client(t, s).Send(context.Background(), delivery("+8613800138000"))
	if retry, _ := contracts.Classify(err); !retry {
		t.Fatalf("503: %v", err)
	}
	s.reply = func(w http.ResponseWriter, _ url.Values) { fmt.Fprint(w, "<html>gateway</html>") }
	_, err = client(t, s).Send(context.Background(), delivery("+8613800138000"))
	if retry, _ := contracts.Classify(err); !retry {
		t.Fatalf("non-JSON: %v", err)
	}
}

func TestKindValidation(t *testing.T) {
	fes := Kind.Validate(vendor.Provider{Type: Type, Settings: map[string]string{"access_key_id": "a"}})
	var fields []string
	for _, fe := range fes {
		fields = append(fields, fe.Field)
	}
	if fmt.Sprint(fields) != "[settings.access_key_secret settings.sign_name]" {
		t.Fatalf("fields = %v", fields)
	}
	if !Kind.IsSecret("access_key_secret") || Kind.IsSecret("access_key_id") {
		t.Fatal("secret flags")
	}
}

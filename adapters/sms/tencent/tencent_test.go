package tencent

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"herald.dev/adapters/protect"
	"herald.dev/adapters/providers/vendor"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

// docPayload is the request body of the worked example in Tencent Cloud's
// "Signature v3" document (CVM DescribeInstances, 2019-02-25).
const docPayload = `{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}`

func TestTC3DocumentExample(t *testing.T) {
	const ts = 1551113065
	cr := CanonicalRequest("cvm.tencentcloudapi.com", docPayload)
	wantCR := "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\ncontent-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
	if cr != wantCR {
		t.Fatalf("CanonicalRequest =\n%s\nwant\n%s", cr, wantCR)
	}
	sts := StringToSign(ts, "2019-02-25/cvm/tc3_request", cr)
	wantSTS := "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
	if sts != wantSTS {
		t.Fatalf("StringToSign =\n%s\nwant\n%s", sts, wantSTS)
	}
	// The document's key pair and resulting Authorization.
	got := Authorization("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", "cvm", "cvm.tencentcloudapi.com", docPayload, ts)
	want := "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
	if got != want {
		t.Fatalf("Authorization =\n%s\nwant\n%s", got, want)
	}
	// The current revision of the document masks the key as
	// "Gu5t9xGARNpq86cd98joQYCN3*******" and shows signature 2230eefd….
	if sig := Signature("Gu5t9xGARNpq86cd98joQYCN3*******", "cvm", "2019-02-25", sts); sig != "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c" {
		t.Fatalf("signature with the masked document key = %s", sig)
	}
}

// verify checks a received request's TC3 signature independently.
func verify(r *http.Request, body []byte, secretID, secretKey string) error {
	auth := r.Header.Get("Authorization")
	ts := r.Header.Get("X-TC-Timestamp")
	var sec int64
	fmt.Sscan(ts, &sec)
	date := time.Unix(sec, 0).UTC().Format("2006-01-02")
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	mac := func(k []byte, m string) []byte { h := hmac.New(sha256.New, k); h.Write([]byte(m)); return h.Sum(nil) }
	canon := fmt.Sprintf("POST\n/\n\ncontent-type:%s\nhost:%s\n\ncontent-type;host\n%s", r.Header.Get("Content-Type"), r.Host, sum(string(body)))
	sts := fmt.Sprintf("TC3-HMAC-SHA256\n%s\n%s/sms/tc3_request\n%s", ts, date, sum(canon))
	key := mac(mac(mac([]byte("TC3"+secretKey), date), "sms"), "tc3_request")
	want := fmt.Sprintf("TC3-HMAC-SHA256 Credential=%s/%s/sms/tc3_request, SignedHeaders=content-type;host, Signature=%s", secretID, date, hex.EncodeToString(mac(key, sts)))
	if auth != want {
		return fmt.Errorf("Authorization %q, want %q", auth, want)
	}
	return nil
}

type server struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []Request
	reply  func(w http.ResponseWriter, req Request)
}

func newServer(t *testing.T) *server {
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		for h, v := range map[string]string{"X-TC-Action": "SendSms", "X-TC-Version": "2021-01-11", "X-TC-Region": "ap-guangzhou", "Content-Type": "application/json; charset=utf-8"} {
			if r.Header.Get(h) != v {
				t.Errorf("%s = %q, want %q", h, r.Header.Get(h), v)
			}
		}
		if r.Method != http.MethodPost || r.URL.Path != "/" {
			t.Errorf("%s %s", r.Method, r.URL)
		}
		if err := verify(r, body, "AKID-test", "secret-key"); err != nil {
			fmt.Fprint(w, `{"Response":{"Error":{"Code":"AuthFailure.SignatureFailure","Message":"The provided credentials could not be validated."},"RequestId":"rid"}}`)
			return
		}
		var req Request
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			t.Errorf("body %s: %v", body, err)
		}
		s.mu.Lock()
		s.bodies = append(s.bodies, req)
		reply := s.reply
		s.mu.Unlock()
		if reply != nil {
			reply(w, req)
			return
		}
		fmt.Fprintf(w, `{"Response":{"SendStatusSet":[{"SerialNo":"5000:104571066915","PhoneNumber":%q,"Fee":1,"SessionContext":%q,"Code":"Ok","Message":"send success","IsoCode":"CN"}],"RequestId":"a0aabda6-cf91-4f3e-a81f-9198114a2279"}}`, req.PhoneNumberSet[0], req.SessionContext)
	}))
	t.Cleanup(s.Close)
	return s
}

func client(t *testing.T, s *server, extra map[string]string) *Client {
	t.Helper()
	settings := map[string]string{"secret_id": "AKID-test", "secret_key": "secret-key", "sdk_app_id": "1400006666", "sign_name": "腾讯云", "endpoint": s.URL}
	for k, v := range extra {
		settings[k] = v
	}
	c, err := NewClient(vendor.Provider{Type: Type, Settings: settings}, vendor.Env{HTTP: s.Client(), Now: func() time.Time { return time.Unix(1551113065, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSendRequestShape(t *testing.T) {
	s := newServer(t)
	c := client(t, s, nil)
	d := &contracts.Delivery{ID: "dlv_7", Channel: domain.ChannelSMS, Address: "+8613711112222",
		Content: domain.Content{VendorTemplate: "1110", Params: map[string]string{"2": "5", "1": "4370"}}}
	res, err := c.Send(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if res.ProviderID != "5000:104571066915" {
		t.Fatalf("ProviderID %q", res.ProviderID)
	}
	got := s.bodies[0]
	want := Request{PhoneNumberSet: []string{"+8613711112222"}, SmsSdkAppID: "1400006666", TemplateID: "1110", SignName: "腾讯云",
		TemplateParamSet: []string{"4370", "5"}, SessionContext: "dlv_7"}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Fatalf("request %+v\nwant %+v", got, want)
	}
}

func TestParamOrderSetting(t *testing.T) {
	s := newServer(t)
	c := client(t, s, map[string]string{"param_order": "code, minutes", "template_id": "T9"})
	d := &contracts.Delivery{ID: "d", Address: "13711112222", Content: domain.Content{Params: map[string]string{"minutes": "5", "code": "4370", "app": "Herald"}}}
	if _, err := c.Send(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if got := s.bodies[0]; got.TemplateID != "T9" || fmt.Sprint(got.TemplateParamSet) != "[4370 5 Herald]" || got.PhoneNumberSet[0] != "+8613711112222" {
		t.Fatalf("request %+v", got)
	}
}

func TestWrongKeyIsProviderFault(t *testing.T) {
	s := newServer(t)
	c := client(t, s, map[string]string{"secret_key": "nope"})
	_, err := c.Send(context.Background(), &contracts.Delivery{ID: "d", Address: "+8613711112222", Content: domain.Content{VendorTemplate: "1"}})
	if !protect.IsProviderFault(err) || !strings.Contains(err.Error(), "AuthFailure.SignatureFailure") {
		t.Fatalf("err = %v", err)
	}
}

func TestErrorMapping(t *testing.T) {
	cases := []struct {
		code      string
		perNumber bool // in SendStatusSet rather than Response.Error
		check     func(err error) bool
	}{
		{"InvalidParameterValue.IncorrectPhoneNumber", true, func(err error) bool {
			r, _ := contracts.Classify(err)
			return !r && !protect.ShouldFailover(err)
		}},
		{"LimitExceeded.PhoneNumberThirtySecondLimit", true, func(err error) bool {
			r, a := contracts.Classify(err)
			return r && a == 30*time.Second && !protect.ShouldFailover(err)
		}},
		{"LimitExceeded.PhoneNumberDailyLimit", true, func(err error) bool {
			r, a := contracts.Classify(err)
			return r && a == 24*time.Hour && errors.Is(err, protect.ErrRecipientLimited)
		}},
		{"LimitExceeded.AppDailyLimit", true, func(err error) bool {
			r, a := contracts.Classify(err)
			return r && a == time.Hour && errors.Is(err, protect.ErrThrottled) && protect.ShouldFailover(err)
		}},
		{"RequestLimitExceeded", false, func(err error) bool {
			return errors.Is(err, protect.ErrThrottled)
		}},
		{"FailedOperation.TemplateIncorrectOrUnapproved", true, func(err error) bool {
			return protect.IsProviderFault(err) && protect.ShouldFailover(err)
		}},
		{"FailedOperation.InsufficientBalanceInSmsPackage", false, protect.IsProviderFault},
		{"FailedOperation.PhoneNumberInBlacklist", true, func(err error) bool {
			r, _ := contracts.Classify(err)
			return !r && !protect.IsProviderFault(err)
		}},
		{"InternalError.Timeout", false, func(err error) bool {
			r, _ := contracts.Classify(err)
			return r
		}},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			s := newServer(t)
			s.reply = func(w http.ResponseWriter, req Request) {
				if tc.perNumber {
					fmt.Fprintf(w, `{"Response":{"SendStatusSet":[{"SerialNo":"","PhoneNumber":%q,"Fee":0,"SessionContext":"","Code":%q,"Message":"m","IsoCode":"CN"}],"RequestId":"rid"}}`, req.PhoneNumberSet[0], tc.code)
					return
				}
				fmt.Fprintf(w, `{"Response":{"Error":{"Code":%q,"Message":"m"},"RequestId":"rid"}}`, tc.code)
			}
			_, err := client(t, s, nil).Send(context.Background(), &contracts.Delivery{ID: "d", Address: "+8613711112222", Content: domain.Content{VendorTemplate: "1"}})
			if err == nil || !tc.check(err) || !strings.Contains(err.Error(), tc.code) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFallbackAndFailover runs the vendor channels end to end through the
// binary's wiring against local fakes of the vendor APIs: WeCom refuses the
// recipient for good, so the delivery falls back to SMS; the first SMS vendor
// (Aliyun) is down, so the second (Tencent Cloud) carries the SMS. Both
// deliveries are visible on the message, the SMS linked to the WeCom one.
func TestFallbackAndFailover(t *testing.T) {
	var wecomSends, aliyunCalls atomic.Int64
	wecom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cgi-bin/gettoken":
			w.Write([]byte(`{"errcode":0,"errmsg":"ok","access_token":"TOKEN","expires_in":7200}`))
		case "/cgi-bin/message/send":
			wecomSends.Add(1)
			w.Write([]byte(`{"errcode":81013,"errmsg":"user & party & tag all invalid"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer wecom.Close()
	aliyun := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		aliyunCalls.Add(1)
		w.WriteHeader(503)
	}))
	defer aliyun.Close()
	var mu sync.Mutex
	var tencentPhones []string
	tencent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			PhoneNumberSet []string
			SessionContext string
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		if r.Header.Get("X-TC-Action") != "SendSms" || !strings.HasPrefix(r.Header.Get("Authorization"), "TC3-HMAC-SHA256 ") {
			w.Write([]byte(`{"Response":{"Error":{"Code":"AuthFailure","Message":"bad request"},"RequestId":"r"}}`))
			return
		}
		mu.Lock()
		tencentPhones = append(tencentPhones, body.PhoneNumberSet...)
		mu.Unlock()
		w.Write([]byte(`{"Response":{"SendStatusSet":[{"SerialNo":"2028:1","PhoneNumber":"+8613800138000","Fee":1,"SessionContext":"` +
			body.SessionContext + `","Code":"Ok","Message":"send success","IsoCode":"CN"}],"RequestId":"req-1"}}`))
	}))
	defer tencent.Close()

	cfg := testConfig(t, "")
	cfg.Providers = map[string]map[string]string{
		"corp":    {"type": "wecom_app", "corp_id": "ww1", "corp_secret": "s3cret", "agent_id": "1000002", "endpoint": wecom.URL},
		"aliyun":  {"type": "aliyun_sms", "access_key_id": "LTAI", "access_key_secret": "k", "sign_name": "Herald", "template_code": "SMS_1", "weight": "100", "endpoint": aliyun.URL},
		"tencent": {"type": "tencent_sms", "secret_id": "AKID", "secret_key": "k", "sdk_app_id": "1400006666", "sign_name": "Herald", "template_id": "1110", "weight": "0", "endpoint": tencent.URL},
	}
	h := startHerald(t, cfg)

	st, m := call(t, h.base, h.key, "PUT", "/v1/users/lin", map[string]any{
		"name": "Lin", "phone": "+8613800138000", "identities": map[string]any{"wecom": "LinWei"},
	})
	must(t, st, m, 200, 201)
	st, m = call(t, h.base, h.key, "POST", "/v1/notifications", map[string]any{
		"content":    map[string]any{"*": map[string]any{"title": "Approval needed", "text": "Expense report 42 waits for you."}},
		"recipients": []any{map[string]any{"user_id": "lin"}},
		"channels":   []string{"wecom"}, "fallback": []string{"sms"}, "priority": "high",
	})
	must(t, st, m, 202)
	id := m["id"].(string)

	var ds []any
	eventually(t, 20*time.Second, "a failed WeCom delivery and a sent SMS", func() bool {
		_, m = call(t, h.base, h.key, "GET", "/v1/notifications/"+id, nil)
		ds, _ = m["deliveries"].([]any)
		if len(ds) != 2 {
			return false
		}
		for _, d := range ds {
			dm := d.(map[string]any)
			if dm["channel"] == "sms" && dm["status"] != "sent" {
				return false
			}
		}
		return true
	})
	byChannel := map[string]map[string]any{}
	for _, d := range ds {
		dm := d.(map[string]any)
		byChannel[dm["channel"].(string)] = dm
	}
	wc, sms := byChannel["wecom"], byChannel["sms"]
	if wc == nil || sms == nil || wc["status"] != "failed" || !strings.Contains(strings.ToLower(wc["error"].(string)), "wecom") {
		t.Fatalf("deliveries %v", ds)
	}
	if sms["parent_id"] != wc["id"] || sms["address"] != "+8613800138000" {
		t.Fatalf("sms delivery not linked to the wecom one: %v", sms)
	}
	if wecomSends.Load() != 1 {
		t.Fatalf("a permanent WeCom refusal was retried: %d sends", wecomSends.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if aliyunCalls.Load() == 0 || len(tencentPhones) != 1 || tencentPhones[0] != "+8613800138000" {
		t.Fatalf("failover: aliyun calls %d, tencent phones %v", aliyunCalls.Load(), tencentPhones)
	}
}

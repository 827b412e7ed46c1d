// Package tencent sends SMS through Tencent Cloud SMS (API 3.0, action
// SendSms, version 2021-01-11), signing requests with TC3-HMAC-SHA256:
//
//	CanonicalRequest = "POST\n/\n\n" + "content-type:application/json; charset=utf-8\nhost:<host>\n" + "\n" +
//	                   "content-type;host\n" + hex(sha256(payload))
//	StringToSign     = "TC3-HMAC-SHA256\n" + timestamp + "\n" + date "/sms/tc3_request\n" + hex(sha256(CanonicalRequest))
//	SecretSigning    = HMAC(HMAC(HMAC("TC3"+SecretKey, date), "sms"), "tc3_request")
//	Authorization    = "TC3-HMAC-SHA256 Credential=<SecretId>/<date>/sms/tc3_request, SignedHeaders=content-type;host, Signature=" + hex(HMAC(SecretSigning, StringToSign))
//
// (date is the UTC date of the timestamp). Mapping: PhoneNumberSet is the
// delivery's E.164 number, TemplateId the content's VendorTemplate (or the
// provider's template_id), TemplateParamSet the content's Params in
// template order (keys "1", "2", ... by number, else the provider's
// param_order, else by key), SessionContext the delivery id (echoed in
// receipts and replies; SendSms itself is not idempotent).
package tencent

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"herald.dev/adapters/protect"
	"herald.dev/adapters/providers/vendor"
	"herald.dev/adapters/sms/internal/smsmsg"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

// Type is the provider type name.
const Type = "tencent_sms"

// API constants.
const (
	DefaultEndpoint = "https://sms.tencentcloudapi.com"
	DefaultRegion   = "ap-guangzhou"
	APIVersion      = "2021-01-11"
	Service         = "sms"
	Algorithm       = "TC3-HMAC-SHA256"
	contentType     = "application/json; charset=utf-8"
	// QPS is SendSms's published default request rate (3,000/s).
	QPS = 3000
)

// Kind is the tencent_sms provider kind.
var Kind = vendor.Kind{
	Type:    Type,
	Channel: domain.ChannelSMS,
	Title:   "Tencent Cloud SMS (SendSms 2021-01-11)",
	Fields: []vendor.Field{
		{Key: "secret_id", Required: true, Doc: "API SecretId"},
		{Key: "secret_key", Required: true, Secret: true, Doc: "API SecretKey"},
		{Key: "sdk_app_id", Required: true, Doc: "SmsSdkAppId, e.g. 1400006666"},
		{Key: "sign_name", Doc: "approved signature (required for mainland China numbers)"},
		{Key: "template_id", Doc: "default template id when the rendered content names none"},
		{Key: "param_order", Doc: "comma-separated param names giving the template's {1},{2},... order"},
		{Key: "region", Default: DefaultRegion, Doc: "X-TC-Region: ap-guangzhou, ap-beijing or ap-nanjing"},
		{Key: "sender_id", Doc: "international Sender ID"},
		{Key: "extend_code", Doc: "extension code (must be enabled by Tencent)"},
		{Key: "endpoint", Default: DefaultEndpoint, Doc: "API base URL"},
	},
	Limits:          protect.Options{Rate: QPS},
	AddressRequired: true,
}

func init() {
	Kind.New = func(p vendor.Provider, env vendor.Env) (vendor.Client, error) { return NewClient(p, env) }
	vendor.Register(Kind)
}

// Client is one Tencent Cloud SMS application.
type Client struct {
	SecretID   string
	SecretKey  string
	SdkAppID   string
	SignName   string
	TemplateID string
	ParamOrder []string
	Region     string
	SenderID   string
	ExtendCode string
	Endpoint   *url.URL
	HTTP       *http.Client
	Now        func() time.Time
}

// NewClient builds a client from provider settings.
func NewClient(p vendor.Provider, env vendor.Env) (*Client, error) {
	raw, err := vendor.EndpointSetting(Kind, p, "endpoint")
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(raw)
	return &Client{
		SecretID:   Kind.Setting(p, "secret_id"),
		SecretKey:  Kind.Setting(p, "secret_key"),
		SdkAppID:   Kind.Setting(p, "sdk_app_id"),
		SignName:   Kind.Setting(p, "sign_name"),
		TemplateID: Kind.Setting(p, "template_id"),
		ParamOrder: smsmsg.SplitList(Kind.Setting(p, "param_order")),
		Region:     Kind.Setting(p, "region"),
		SenderID:   Kind.Setting(p, "sender_id"),
		ExtendCode: Kind.Setting(p, "extend_code"),
		Endpoint:   u,
		HTTP:       env.Client(),
		Now:        env.Clock(),
	}, nil
}

// Request is the SendSms request body.
type Request struct {
	PhoneNumberSet   []string `json:"PhoneNumberSet"`
	SmsSdkAppID      string   `json:"SmsSdkAppId"`
	TemplateID       string   `json:"TemplateId"`
	SignName         string   `json:"SignName,omitempty"`
	TemplateParamSet []string `json:"TemplateParamSet"`
	ExtendCode       string   `json:"ExtendCode,omitempty"`
	SessionContext   string   `json:"SessionContext,omitempty"`
	SenderID         string   `json:"SenderId,omitempty"`
}

// Send implements vendor.Client.
func (c *Client) Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	phone, err := smsmsg.Phone(d.Address)
	if err != nil {
		return contracts.Result{}, err
	}
	tmpl, err := smsmsg.Template(d, c.TemplateID)
	if err != nil {
		return contracts.Result{}, err
	}
	body, err := json.Marshal(Request{
		PhoneNumberSet:   []string{phone},
		SmsSdkAppID:      c.SdkAppID,
		TemplateID:       tmpl,
		SignName:         c.SignName,
		TemplateParamSet: smsmsg.Ordered(d.Content.Params, c.ParamOrder),
		ExtendCode:       c.ExtendCode,
		SessionContext:   d.ID,
		SenderID:         c.SenderID,
	})
	if err != nil {
		return contracts.Result{}, contracts.Permanent("encode tencent sms request", err)
	}
	ts := c.Now().Unix()
	req, err := http.NewRequest(http.MethodPost, c.Endpoint.String()+"/", strings.NewReader(string(body)))
	if err != nil {
		return contracts.Result{}, protect.ProviderFault("bad tencent endpoint", err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-TC-Action", "SendSms")
	req.Header.Set("X-TC-Version", APIVersion)
	req.Header.Set("X-TC-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("X-TC-Region", c.Region)
	req.Header.Set("Authorization", Authorization(c.SecretID, c.SecretKey, Service, c.Endpoint.Host, string(body), ts))
	resp, err := vendor.Do(ctx, c.HTTP, req, "tencent sms")
	if err != nil {
		return contracts.Result{}, err
	}
	var out struct {
		Response struct {
			Error *struct {
				Code    string `json:"Code"`
				Message string `json:"Message"`
			} `json:"Error"`
			SendStatusSet []struct {
				SerialNo       string `json:"SerialNo"`
				PhoneNumber    string `json:"PhoneNumber"`
				SessionContext string `json:"SessionContext"`
				Code           string `json:"Code"`
				Message        string `json:"Message"`
			} `json:"SendStatusSet"`
			RequestID string `json:"RequestId"`
		} `json:"Response"`
	}
	if err := vendor.DecodeJSON(resp, &out, "tencent sms"); err != nil {
		return contracts.Result{}, err
	}
	r := out.Response
	if r.Error != nil {
		return contracts.Result{}, Classify(r.Error.Code, r.Error.Message, r.RequestID)
	}
	if len(r.SendStatusSet) != 1 {
		return contracts.Result{}, contracts.Retryable("tencent sms answered without a send status", fmt.Errorf("RequestId %s: %s", r.RequestID, vendor.Snippet(resp.Body)), 0)
	}
	st := r.SendStatusSet[0]
	if !strings.EqualFold(st.Code, "Ok") {
		return contracts.Result{}, Classify(st.Code, st.Message, r.RequestID)
	}
	return contracts.Result{ProviderID: st.SerialNo}, nil
}

// Classify maps a Tencent Cloud error code (request-level Error.Code or a
// number's SendStatus.Code) to Herald's failure classes.
func Classify(code, msg, requestID string) error {
	err := fmt.Errorf("tencent %s: %s (RequestId %s)", code, msg, requestID)
	switch {
	case code == "LimitExceeded.PhoneNumberThirtySecondLimit":
		return protect.RecipientLimited("tencent per-number 30-second limit", err, 30*time.Second)
	case code == "LimitExceeded.PhoneNumberOneHourLimit":
		return protect.RecipientLimited("tencent per-number hourly limit", err, time.Hour)
	case code == "LimitExceeded.PhoneNumberDailyLimit", code == "LimitExceeded.PhoneNumberSameContentDailyLimit":
		return protect.RecipientLimited("tencent per-number daily limit", err, 24*time.Hour)
	case code == "LimitExceeded.DeliveryFrequencyLimit":
		return protect.RecipientLimited("tencent delivery frequency policy", err, time.Minute)
	case strings.HasPrefix(code, "LimitExceeded.") && strings.Contains(code, "DailyLimit"):
		// App-wide daily quotas (AppDailyLimit, AppGlobalDailyLimit, ...).
		return protect.Throttled("tencent application daily quota reached", err, time.Hour)
	case strings.HasPrefix(code, "RequestLimitExceeded"), strings.HasPrefix(code, "LimitExceeded"):
		return protect.Throttled("tencent API rate limit", err, time.Second)
	case code == "InvalidParameterValue.IncorrectPhoneNumber", code == "FailedOperation.PhoneNumberInBlacklist",
		code == "FailedOperation.PhoneNumberOnBlacklist", code == "UnsupportedOperation.UnsupportedRegion",
		code == "InvalidParameterValue.ProhibitedUseUrlInTemplateParameter":
		return contracts.Permanent("tencent rejected the phone number or message", err)
	case code == "FailedOperation.ContainSensitiveWord", code == "InvalidParameterValue.ContentLengthLimit",
		code == "FailedOperation.MarketingSendTimeConstraint":
		return contracts.Permanent("tencent rejected the message content", err)
	case strings.HasPrefix(code, "InternalError"):
		return contracts.Retryable("tencent internal error", err, 0)
	case strings.HasPrefix(code, "AuthFailure"), strings.HasPrefix(code, "UnauthorizedOperation"),
		strings.HasPrefix(code, "FailedOperation"), strings.HasPrefix(code, "InvalidParameter"),
		strings.HasPrefix(code, "MissingParameter"), strings.HasPrefix(code, "UnsupportedOperation"):
		// Signature or template not approved, balance exhausted, SdkAppId
		// or key wrong, template parameters not matching: this account
		// cannot send it, another provider may.
		return protect.ProviderFault("tencent account, signature or template problem", err)
	}
	return contracts.Retryable("tencent error "+code, err, 0)
}

// Authorization builds the TC3-HMAC-SHA256 Authorization header of a POST /
// request with Content-Type application/json; charset=utf-8, signing the
// content-type and host headers.
func Authorization(secretID, secretKey, service, host, payload string, timestamp int64) string {
	date := time.Unix(timestamp, 0).UTC().Format("2006-01-02")
	scope := date + "/" + service + "/tc3_request"
	sig := Signature(secretKey, service, date, StringToSign(timestamp, scope, CanonicalRequest(host, payload)))
	return Algorithm + " Credential=" + secretID + "/" + scope + ", SignedHeaders=content-type;host, Signature=" + sig
}

// CanonicalRequest is step 1 of TC3 for a JSON POST to "/".
func CanonicalRequest(host, payload string) string {
	return "POST\n/\n\n" +
		"content-type:" + contentType + "\nhost:" + strings.ToLower(host) + "\n\n" +
		"content-type;host\n" + sha256hex(payload)
}

// StringToSign is step 2 of TC3.
func StringToSign(timestamp int64, scope, canonicalRequest string) string {
	return Algorithm + "\n" + strconv.FormatInt(timestamp, 10) + "\n" + scope + "\n" + sha256hex(canonicalRequest)
}

// Signature is step 3 of TC3.
func Signature(secretKey, service, date, stringToSign string) string {
	k := hmacSHA256([]byte("TC3"+secretKey), date)
	k = hmacSHA256(k, service)
	k = hmacSHA256(k, "tc3_request")
	return hex.EncodeToString(hmacSHA256(k, stringToSign))
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func sha256hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// Package aliyun sends SMS through Alibaba Cloud SMS (dysmsapi, API version
// 2017-05-25, action SendSms), signing requests with the RPC-style
// signature version 1.0 (HMAC-SHA1):
//
//	CanonicalizedQueryString = "&".join(percentEncode(k) "=" percentEncode(v)), keys sorted, Signature excluded
//	StringToSign = HTTPMethod "&" percentEncode("/") "&" percentEncode(CanonicalizedQueryString)
//	Signature    = Base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))
//
// where percentEncode is RFC 3986 encoding (space as %20, "*" as %2A, "~"
// kept). Requests are POSTed as application/x-www-form-urlencoded to the
// endpoint (default https://dysmsapi.aliyuncs.com/).
//
// Mapping: PhoneNumbers is the delivery's number (mainland numbers without
// +86, others as country code + number), TemplateCode the content's
// VendorTemplate (or the provider's template_code), TemplateParam the
// content's Params as a JSON object, OutId the delivery id (Aliyun echoes
// it in delivery receipts; SendSms itself is not idempotent, so a retry
// after a timeout may send twice).
package aliyun

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"herald.dev/adapters/protect"
	"herald.dev/adapters/providers/vendor"
	"herald.dev/adapters/sms/internal/smsmsg"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

// Type is the provider type name.
const Type = "aliyun_sms"

// API constants.
const (
	DefaultEndpoint = "https://dysmsapi.aliyuncs.com"
	DefaultRegion   = "cn-hangzhou"
	APIVersion      = "2017-05-25"
	// QPS is SendSms's published per-account limit (5,000 calls/s).
	QPS = 5000
)

// Kind is the aliyun_sms provider kind.
var Kind = vendor.Kind{
	Type:    Type,
	Channel: domain.ChannelSMS,
	Title:   "Alibaba Cloud SMS (dysmsapi SendSms)",
	Fields: []vendor.Field{
		{Key: "access_key_id", Required: true, Doc: "AccessKey ID (RAM user with AliyunDysmsFullAccess or SendSms permission)"},
		{Key: "access_key_secret", Required: true, Secret: true, Doc: "AccessKey secret"},
		{Key: "sign_name", Required: true, Doc: "approved SMS signature (签名), e.g. 阿里云短信测试"},
		{Key: "template_code", Doc: "default template code (SMS_...) when the rendered content names none"},
		{Key: "region", Default: DefaultRegion, Doc: "RegionId"},
		{Key: "endpoint", Default: DefaultEndpoint, Doc: "API base URL"},
	},
	Limits:          protect.Options{Rate: QPS},
	AddressRequired: true,
}

func init() {
	Kind.New = func(p vendor.Provider, env vendor.Env) (vendor.Client, error) { return NewClient(p, env) }
	vendor.Register(Kind)
}

// Client is one Aliyun SMS account.
type Client struct {
	AccessKeyID     string
	AccessKeySecret string
	SignName        string
	TemplateCode    string
	Region          string
	Endpoint        string
	HTTP            *http.Client
	Now             func() time.Time
	// Nonce returns SignatureNonce values (default: random UUIDs).
	Nonce func() string
}

// NewClient builds a client from provider settings.
func NewClient(p vendor.Provider, env vendor.Env) (*Client, error) {
	endpoint, err := vendor.EndpointSetting(Kind, p, "endpoint")
	if err != nil {
		return nil, err
	}
	return &Client{
		AccessKeyID:     Kind.Setting(p, "access_key_id"),
		AccessKeySecret: Kind.Setting(p, "access_key_secret"),
		SignName:        Kind.Setting(p, "sign_name"),
		TemplateCode:    Kind.Setting(p, "template_code"),
		Region:          Kind.Setting(p, "region"),
		Endpoint:        endpoint,
		HTTP:            env.Client(),
		Now:             env.Clock(),
		Nonce:           uuid,
	}, nil
}

// PhoneNumber formats an E.164 number the way SendSms takes it: mainland
// numbers as 11 digits, others as country code + number without "+".
func PhoneNumber(e164 string) string {
	if n, ok := strings.CutPrefix(e164, "+86"); ok {
		return n
	}
	return strings.TrimPrefix(e164, "+")
}

// Params returns the signed request parameters of one SendSms call.
func (c *Client) Params(phone, template string, params map[string]string, outID string) (url.Values, error) {
	v := url.Values{}
	v.Set("AccessKeyId", c.AccessKeyID)
	v.Set("Action", "SendSms")
	v.Set("Format", "JSON")
	v.Set("RegionId", c.Region)
	v.Set("SignatureMethod", "HMAC-SHA1")
	v.Set("SignatureNonce", c.Nonce())
	v.Set("SignatureVersion", "1.0")
	v.Set("Timestamp", c.Now().UTC().Format("2006-01-02T15:04:05Z"))
	v.Set("Version", APIVersion)
	v.Set("PhoneNumbers", phone)
	v.Set("SignName", c.SignName)
	v.Set("TemplateCode", template)
	if len(params) > 0 {
		b, err := json.Marshal(params)
		if err != nil {
			return nil, err
		}
		v.Set("TemplateParam", string(b))
	}
	if outID != "" {
		v.Set("OutId", outID)
	}
	v.Set("Signature", Sign(http.MethodPost, v, c.AccessKeySecret))
	return v, nil
}

// Send implements vendor.Client.
func (c *Client) Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	phone, err := smsmsg.Phone(d.Address)
	if err != nil {
		return contracts.Result{}, err
	}
	tmpl, err := smsmsg.Template(d, c.TemplateCode)
	if err != nil {
		return contracts.Result{}, err
	}
	form, err := c.Params(PhoneNumber(phone), tmpl, d.Content.Params, d.ID)
	if err != nil {
		return contracts.Result{}, contracts.Permanent("encode aliyun template params", err)
	}
	req, err := http.NewRequest(http.MethodPost, c.Endpoint+"/", strings.NewReader(form.Encode()))
	if err != nil {
		return contracts.Result{}, protect.ProviderFault("bad aliyun endpoint", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	req.Header.Set("Accept", "application/json")
	resp, err := vendor.Do(ctx, c.HTTP, req, "aliyun sms")
	if err != nil {
		return contracts.Result{}, err
	}
	var out struct {
		Code      string `json:"Code"`
		Message   string `json:"Message"`
		BizID     string `json:"BizId"`
		RequestID string `json:"RequestId"`
	}
	if err := vendor.DecodeJSON(resp, &out, "aliyun sms"); err != nil {
		return contracts.Result{}, err
	}
	if out.Code == "OK" {
		return contracts.Result{ProviderID: out.BizID}, nil
	}
	if out.Code == "" {
		return contracts.Result{}, contracts.Retryable(fmt.Sprintf("aliyun sms answered HTTP %d without a code", resp.Status), fmt.Errorf("%s", vendor.Snippet(resp.Body)), 0)
	}
	return contracts.Result{}, Classify(out.Code, out.Message, out.RequestID)
}

// Classify maps an Aliyun error code to Herald's failure classes.
func Classify(code, msg, requestID string) error {
	err := fmt.Errorf("aliyun %s: %s (RequestId %s)", code, msg, requestID)
	switch {
	case code == "isv.BUSINESS_LIMIT_CONTROL":
		// Per-number flow control (verification codes: 1/min, 5/h, 10/day
		// by default): retry later on the same provider, never fail over.
		return protect.RecipientLimited("aliyun per-number frequency limit", err, limitDelay(msg))
	case strings.HasPrefix(code, "Throttling"):
		return protect.Throttled("aliyun API throttling", err, time.Second)
	case code == "isv.DAY_LIMIT_CONTROL":
		return protect.Throttled("aliyun account daily quota reached", err, time.Hour)
	case code == "isv.MONTH_LIMIT_CONTROL":
		return protect.Throttled("aliyun account monthly quota reached", err, 6*time.Hour)
	case recipientCodes[code]:
		return contracts.Permanent("aliyun rejected the phone number", err)
	case contentCodes[code]:
		return contracts.Permanent("aliyun rejected the message content", err)
	case providerCodes[code], strings.HasPrefix(code, "InvalidAccessKeyId"), strings.HasPrefix(code, "Forbidden"),
		strings.HasPrefix(code, "InvalidTimeStamp"), strings.HasPrefix(code, "MissingParameter"):
		return protect.ProviderFault("aliyun account, signature or template problem", err)
	}
	// isp.SYSTEM_ERROR, InternalError, ServiceUnavailable, SignatureNonceUsed
	// and codes Herald does not know: retry (another provider may take it).
	return contracts.Retryable("aliyun error "+code, err, 0)
}

var recipientCodes = set(
	"isv.MOBILE_NUMBER_ILLEGAL",
	"isv.MOBILE_COUNT_OVER_LIMIT",
	"isv.BLACK_KEY_CONTROL_LIMIT",
	"isv.DOMESTIC_NUMBER_NOT_SUPPORTED",
	"isv.INTERNATIONAL_NUMBER_NOT_SUPPORTED",
	"isv.PHONENUMBER_NOT_SUPPORTED",
)

var contentCodes = set(
	"isv.SMS_CONTENT_ILLEGAL",
	"isv.PARAM_NOT_SUPPORT_URL",
	"isv.PARAM_LENGTH_LIMIT",
)

var providerCodes = set(
	"isv.SMS_TEMPLATE_ILLEGAL",
	"isv.SMS_SIGNATURE_ILLEGAL",
	"isv.SMS_SIGNATURE_SCENE_ILLEGAL",
	"isv.SMS_SIGN_ILLEGAL",
	"isv.SIGN_STATE_ILLEGAL",
	"isv.TEMPLATE_MISSING_PARAMETERS",
	"isv.TEMPLATE_PARAMS_ILLEGAL",
	"isv.INVALID_JSON_PARAM",
	"isv.INVALID_PARAMETERS",
	"isv.AMOUNT_NOT_ENOUGH",
	"isv.OUT_OF_SERVICE",
	"isv.ACCOUNT_NOT_EXISTS",
	"isv.ACCOUNT_ABNORMAL",
	"isv.PRODUCT_UN_SUBSCRIPT",
	"isv.PRODUCT_UNSUBSCRIBE",
	"isv.DENY_IP_RANGE",
	"isv.EXTEND_CODE_ERROR",
	"isp.RAM_PERMISSION_DENY",
	"SignatureDoesNotMatch",
	"IncompleteSignature",
	"InvalidVersion",
	"InvalidAction.NotFound",
)

func set(items ...string) map[string]bool {
	m := make(map[string]bool, len(items))
	for _, s := range items {
		m[s] = true
	}
	return m
}

// limitDelay reads the flow-control window from the message ("触发分钟级流控",
// "触发小时级流控", "触发天级流控").
func limitDelay(msg string) time.Duration {
	switch {
	case strings.Contains(msg, "天") || strings.Contains(strings.ToLower(msg), "day"):
		return 24 * time.Hour
	case strings.Contains(msg, "小时") || strings.Contains(strings.ToLower(msg), "hour"):
		return time.Hour
	}
	return time.Minute
}

// Sign computes the RPC signature (version 1.0, HMAC-SHA1) of params for
// method; a Signature parameter in params is ignored.
func Sign(method string, params url.Values, secret string) string {
	mac := hmac.New(sha1.New, []byte(secret+"&"))
	mac.Write([]byte(StringToSign(method, params)))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// StringToSign builds the string the signature covers.
func StringToSign(method string, params url.Values) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		if k != "Signature" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(PercentEncode(k))
		b.WriteByte('=')
		b.WriteString(PercentEncode(params.Get(k)))
	}
	return method + "&" + PercentEncode("/") + "&" + PercentEncode(b.String())
}

// PercentEncode is Aliyun's RFC 3986 encoding.
func PercentEncode(s string) string {
	e := url.QueryEscape(s)
	return strings.NewReplacer("+", "%20", "*", "%2A", "%7E", "~").Replace(e)
}

func uuid() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("aliyun: crypto/rand: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

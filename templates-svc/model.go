package templatesvc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"time"

	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
)

// EmailVariant is an email: html is rendered with html/template (escaped),
// subject and text with text/template.
type EmailVariant struct {
	Subject string `json:"subject"`
	Text    string `json:"text,omitempty"`
	HTML    string `json:"html,omitempty"`
}

// SMSVariant is a text message, or a vendor-side template id with params.
type SMSVariant struct {
	Text           string            `json:"text,omitempty"`
	VendorTemplate string            `json:"vendor_template,omitempty"`
	Params         map[string]string `json:"params,omitempty"`
}

// InAppVariant is an inbox item.
type InAppVariant struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

// ChatVariant is a message for WeChat, WeCom, DingTalk or QQ: plain text,
// markdown, a card (title, text, url) or a vendor template with params.
type ChatVariant struct {
	Title          string            `json:"title,omitempty"`
	Text           string            `json:"text,omitempty"`
	Markdown       string            `json:"markdown,omitempty"`
	URL            string            `json:"url,omitempty"`
	VendorTemplate string            `json:"vendor_template,omitempty"`
	Params         map[string]string `json:"params,omitempty"`
}

// OTPVariant is a one-time-code message (sent by SMS or email).
type OTPVariant struct {
	Text    string `json:"text"`
	Subject string `json:"subject,omitempty"`
}

// WebhookVariant is a webhook body (empty: the adapter sends its default payload).
type WebhookVariant struct {
	Body string `json:"body,omitempty"`
}

// Variants holds one template's per-channel variants. Chat is shared by
// wechat, wecom, dingtalk and qq when they have no variant of their own.
type Variants struct {
	Email    *EmailVariant   `json:"email,omitempty"`
	SMS      *SMSVariant     `json:"sms,omitempty"`
	InApp    *InAppVariant   `json:"inapp,omitempty"`
	Chat     *ChatVariant    `json:"chat,omitempty"`
	WeChat   *ChatVariant    `json:"wechat,omitempty"`
	WeCom    *ChatVariant    `json:"wecom,omitempty"`
	DingTalk *ChatVariant    `json:"dingtalk,omitempty"`
	QQ       *ChatVariant    `json:"qq,omitempty"`
	OTP      *OTPVariant     `json:"otp,omitempty"`
	Webhook  *WebhookVariant `json:"webhook,omitempty"`
}

// VariantKeys lists the keys accepted under "variants", in output order.
var VariantKeys = []string{"email", "sms", "inapp", "chat", "wechat", "wecom", "dingtalk", "qq", "otp", "webhook"}

// Variable declares a template variable. Sample fills it in previews.
type Variable struct {
	Name        string `json:"name"`
	Required    bool   `json:"required"`
	Sample      any    `json:"sample,omitempty"`
	Description string `json:"description,omitempty"`
}

// Input is the body of a create or update.
type Input struct {
	Code     string              `json:"code"`
	Name     string              `json:"name"`
	Category string              `json:"category,omitempty"`
	Variants Variants            `json:"variants"`
	Locales  map[string]Variants `json:"locales,omitempty"`
	// Variables declares the variables; nil derives them from the templates
	// (every root .name referenced, all required).
	Variables []Variable `json:"variables,omitempty"`
}

// Template is one version of a template as the API returns it.
type Template struct {
	Code     string              `json:"code"`
	Name     string              `json:"name"`
	Category string              `json:"category,omitempty"`
	Version  int                 `json:"version"`
	Channels []domain.Channel    `json:"channels"`
	Variants Variants            `json:"variants"`
	Locales  map[string]Variants `json:"locales,omitempty"`
	// Variables is the declared list, or the derived one when
	// VariablesDerived is true.
	Variables        []Variable `json:"variables"`
	VariablesDerived bool       `json:"variables_derived"`
	// CreatedAt is when the template (this incarnation of the code) was
	// created; UpdatedAt when this version was written.
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Summary is a list entry.
type Summary struct {
	Code      string           `json:"code"`
	Name      string           `json:"name"`
	Category  string           `json:"category,omitempty"`
	Version   int              `json:"version"`
	Channels  []domain.Channel `json:"channels"`
	CreatedAt time.Time        `json:"created_at"`
	UpdatedAt time.Time        `json:"updated_at"`
}

// VersionInfo is an entry of a template's version history.
type VersionInfo struct {
	Version   int              `json:"version"`
	Name      string           `json:"name"`
	Category  string           `json:"category,omitempty"`
	Channels  []domain.Channel `json:"channels"`
	CreatedAt time.Time        `json:"created_at"`
}

// body is what a version row stores.
type body struct {
	Name      string              `json:"name"`
	Category  string              `json:"category,omitempty"`
	Variants  Variants            `json:"variants"`
	Locales   map[string]Variants `json:"locales,omitempty"`
	Variables []Variable          `json:"variables,omitempty"`
	Derive    bool                `json:"derive,omitempty"`
	// CreatedAt is the creation time (ms) of the incarnation this version belongs to.
	CreatedAt int64 `json:"created_at"`
}

func decodeBody(raw []byte) (*body, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var b body
	if err := dec.Decode(&b); err != nil {
		return nil, err
	}
	return &b, nil
}

// ---- strict request decoding with full field paths ----

type rawInput struct {
	Code      string                     `json:"code"`
	Name      string                     `json:"name"`
	Category  string                     `json:"category"`
	Variants  json.RawMessage            `json:"variants"`
	Locales   map[string]json.RawMessage `json:"locales"`
	Variables json.RawMessage            `json:"variables"`
	Version   int                        `json:"version"`
}

type rawVariable struct {
	Name        string `json:"name"`
	Required    *bool  `json:"required"`
	Sample      any    `json:"sample"`
	Description string `json:"description"`
}

// decodeInput strictly decodes a create/update body. Unknown fields and
// wrong types anywhere are reported with their full path
// ("variants.email.subjekt"). It returns the expected version of an update
// (0 when not given).
func decodeInput(data []byte) (Input, int, error) {
	var raw rawInput
	if err := httpx.DecodeJSON(data, &raw); err != nil {
		return Input{}, 0, err
	}
	in := Input{Code: raw.Code, Name: raw.Name, Category: raw.Category}
	var fe fieldErrs
	if isNull(raw.Variants) {
		fe.add("variants", "is required: give at least one channel variant")
	} else {
		in.Variants = decodeVariants(raw.Variants, "variants", &fe)
	}
	if raw.Locales != nil {
		in.Locales = make(map[string]Variants, len(raw.Locales))
		for _, loc := range sortedKeys(raw.Locales) {
			path := "locales." + loc
			if isNull(raw.Locales[loc]) {
				fe.add(path, "must be an object of channel variants")
				continue
			}
			in.Locales[loc] = decodeVariants(raw.Locales[loc], path, &fe)
		}
	}
	if !isNull(raw.Variables) {
		var list []json.RawMessage
		if err := json.Unmarshal(raw.Variables, &list); err != nil {
			fe.add("variables", "must be an array of {name, required, sample}")
		} else {
			in.Variables = make([]Variable, 0, len(list))
			for i, item := range list {
				path := fmt.Sprintf("variables[%d]", i)
				var rv rawVariable
				if !decodeStrict(item, &rv, path, &fe) {
					continue
				}
				v := Variable{Name: rv.Name, Required: true, Sample: rv.Sample, Description: rv.Description}
				if rv.Required != nil {
					v.Required = *rv.Required
				}
				in.Variables = append(in.Variables, v)
			}
		}
	}
	if err := fe.problem(); err != nil {
		return Input{}, 0, err
	}
	return in, raw.Version, nil
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

func decodeVariants(raw json.RawMessage, path string, fe *fieldErrs) Variants {
	var v Variants
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		fe.add(path, "must be an object keyed by channel (%s)", strings.Join(VariantKeys, ", "))
		return v
	}
	for _, k := range sortedKeys(m) {
		item := m[k]
		if isNull(item) {
			continue
		}
		p := path + "." + k
		switch k {
		case "email":
			v.Email = decodeInto[EmailVariant](item, p, fe)
		case "sms":
			v.SMS = decodeInto[SMSVariant](item, p, fe)
		case "inapp":
			v.InApp = decodeInto[InAppVariant](item, p, fe)
		case "chat":
			v.Chat = decodeInto[ChatVariant](item, p, fe)
		case "wechat":
			v.WeChat = decodeInto[ChatVariant](item, p, fe)
		case "wecom":
			v.WeCom = decodeInto[ChatVariant](item, p, fe)
		case "dingtalk":
			v.DingTalk = decodeInto[ChatVariant](item, p, fe)
		case "qq":
			v.QQ = decodeInto[ChatVariant](item, p, fe)
		case "otp":
			v.OTP = decodeInto[OTPVariant](item, p, fe)
		case "webhook":
			v.Webhook = decodeInto[WebhookVariant](item, p, fe)
		default:
			fe.add(p, "unknown channel: want one of %s", strings.Join(VariantKeys, ", "))
		}
	}
	return v
}

func decodeInto[T any](raw json.RawMessage, path string, fe *fieldErrs) *T {
	var v T
	if !decodeStrict(raw, &v, path, fe) {
		return nil
	}
	return &v
}

// decodeStrict decodes raw into v rejecting unknown fields; errors are
// recorded under path.
func decodeStrict(raw json.RawMessage, v any, path string, fe *fieldErrs) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	err := dec.Decode(v)
	if err == nil {
		return true
	}
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		p := path
		if te.Field != "" {
			p += "." + te.Field
		}
		fe.add(p, "must be %s, not %s", jsonType(te.Type), te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		fe.add(path+"."+name, "unknown field")
	case errors.Is(err, io.EOF):
		fe.add(path, "is empty")
	default:
		fe.add(path, "invalid: %v", err)
	}
	return false
}

func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8,
		reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct, reflect.Pointer:
		return "an object"
	}
	return t.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

type fieldErrs []httpx.FieldError

func (f *fieldErrs) add(field, reason string, args ...any) {
	if len(args) > 0 {
		reason = fmt.Sprintf(reason, args...)
	}
	*f = append(*f, httpx.FieldError{Field: field, Reason: reason})
}

func (f fieldErrs) problem() error {
	if len(f) == 0 {
		return nil
	}
	return httpx.CodeValidation.Fields(f...)
}

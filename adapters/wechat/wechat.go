// Package wechat is Herald's WeChat channel: template messages of a WeChat
// Official Account (公众号模板消息) to the user's openid.
//
//	POST {endpoint}/cgi-bin/message/template/send?access_token=TOKEN
//	{"touser": openid, "template_id": ..., "url": ..., "data": {"key": {"value": ...}}, "client_msg_id": delivery id}
//
// The access token comes from GET /cgi-bin/token?grant_type=client_credential
// &appid=APPID&secret=APPSECRET, is cached per provider (one fetch at a time
// across workers), refreshed 5 minutes before its expires_in runs out, and
// refreshed once more whenever WeChat answers 40001, 40014 or 42001, after
// which the send is retried once. client_msg_id is the delivery id: WeChat
// sends one message per openid + client_msg_id within 10 minutes, so a
// retried delivery is not shown twice.
//
// Addressing: Delivery.Address is the openid (it belongs to one Official
// Account, so there is no failover between accounts). Content:
// VendorTemplate (or the provider's template_id) and Params as the
// template's data keys; without Params the text goes to the content_key
// data key (default "content") and the subject to title_key when set.
package wechat

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"herald.dev/adapters/internal/token"
	"herald.dev/adapters/protect"
	"herald.dev/adapters/providers/vendor"
	"herald.dev/adapters/registry"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

// Type is the provider type name.
const Type = "wechat_oa"

// DefaultEndpoint is the WeChat API base URL.
const DefaultEndpoint = "https://api.weixin.qq.com"

// Kind is the wechat_oa provider kind.
var Kind = vendor.Kind{
	Type:    Type,
	Channel: domain.ChannelWeChat,
	Title:   "WeChat Official Account template messages",
	Fields: []vendor.Field{
		{Key: "app_id", Required: true, Doc: "the Official Account's AppID"},
		{Key: "app_secret", Required: true, Secret: true, Doc: "AppSecret"},
		{Key: "template_id", Doc: "default template id when the rendered content names none"},
		{Key: "content_key", Default: "content", Doc: "data key receiving the text when the content has no params"},
		{Key: "title_key", Doc: "data key receiving the subject when the content has no params"},
		{Key: "endpoint", Default: DefaultEndpoint, Doc: "API base URL"},
	},
	// WeChat publishes daily quotas (template messages: 100,000/day by
	// default) rather than a per-second rate; 100/s keeps a burst well
	// inside them and is overridable.
	Limits:          protect.Options{Rate: 100},
	AddressRequired: true,
}

func init() {
	Kind.New = func(p vendor.Provider, env vendor.Env) (vendor.Client, error) { return NewClient(p, env) }
	vendor.Register(Kind)
	registry.Register(domain.ChannelWeChat, func(deps registry.Deps) (contracts.Sender, error) {
		return vendor.NewRouter(domain.ChannelWeChat, deps, vendor.RouterOptions{})
	})
}

// Client is one Official Account.
type Client struct {
	AppID      string
	AppSecret  string
	TemplateID string
	ContentKey string
	TitleKey   string
	Endpoint   string
	http       vendor.Env
	tokens     *token.Cache
}

// NewClient builds a client from provider settings.
func NewClient(p vendor.Provider, env vendor.Env) (*Client, error) {
	endpoint, err := vendor.EndpointSetting(Kind, p, "endpoint")
	if err != nil {
		return nil, err
	}
	c := &Client{
		AppID:      Kind.Setting(p, "app_id"),
		AppSecret:  Kind.Setting(p, "app_secret"),
		TemplateID: Kind.Setting(p, "template_id"),
		ContentKey: Kind.Setting(p, "content_key"),
		TitleKey:   Kind.Setting(p, "title_key"),
		Endpoint:   endpoint,
		http:       env,
	}
	c.tokens = token.New(c.fetchToken, token.Options{Margin: 5 * time.Minute, Now: env.Clock()})
	return c, nil
}

// Tokens exposes the token cache (diagnostics and tests).
func (c *Client) Tokens() *token.Cache { return c.tokens }

type apiError struct {
	ErrCode int    `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
}

func (c *Client) fetchToken(ctx context.Context) (string, time.Duration, error) {
	q := url.Values{"grant_type": {"client_credential"}, "appid": {c.AppID}, "secret": {c.AppSecret}}
	resp, err := vendor.Get(ctx, c.http.Client(), c.Endpoint+"/cgi-bin/token?"+q.Encode(), "wechat token")
	if err != nil {
		return "", 0, err
	}
	var out struct {
		apiError
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := vendor.DecodeJSON(resp, &out, "wechat token"); err != nil {
		return "", 0, err
	}
	if out.ErrCode != 0 || out.AccessToken == "" {
		return "", 0, tokenError(out.ErrCode, out.ErrMsg)
	}
	return out.AccessToken, time.Duration(out.ExpiresIn) * time.Second, nil
}

func tokenError(code int, msg string) error {
	err := fmt.Errorf("wechat token errcode %d: %s", code, msg)
	switch code {
	case -1:
		return contracts.Retryable("wechat is busy", err, 0)
	case 45009, 45011:
		return protect.Throttled("wechat token quota reached", err, time.Minute)
	}
	// 40001/40125 wrong secret, 40013 wrong appid, 40164/89503 caller IP not
	// whitelisted, 40243 AppSecret frozen.
	return protect.ProviderFault("wechat refused the AppID/AppSecret", err)
}

var openidRE = regexp.MustCompile(`^[A-Za-z0-9_-]{6,128}$`)

// Message is the template-send request body.
type Message struct {
	ToUser      string                       `json:"touser"`
	TemplateID  string                       `json:"template_id"`
	URL         string                       `json:"url,omitempty"`
	Data        map[string]map[string]string `json:"data"`
	ClientMsgID string                       `json:"client_msg_id,omitempty"`
}

// BuildMessage maps a delivery onto a template message.
func (c *Client) BuildMessage(d *contracts.Delivery) (Message, error) {
	openid := strings.TrimSpace(d.Address)
	if !openidRE.MatchString(openid) {
		return Message{}, contracts.Permanent("not a WeChat openid", fmt.Errorf("address %q is not an openid", d.Address))
	}
	tmpl := strings.TrimSpace(d.Content.VendorTemplate)
	if tmpl == "" {
		tmpl = c.TemplateID
	}
	if tmpl == "" {
		return Message{}, contracts.Permanent("no WeChat template", fmt.Errorf("delivery %s has no vendor template and the provider has no template_id", d.ID))
	}
	data := map[string]map[string]string{}
	for k, v := range d.Content.Params {
		data[k] = map[string]string{"value": v}
	}
	if len(data) == 0 {
		text := firstNonEmpty(d.Content.Text, d.Content.Body, d.Content.Markdown)
		if text == "" {
			return Message{}, contracts.Permanent("empty WeChat message", fmt.Errorf("delivery %s has neither params nor text", d.ID))
		}
		data[c.ContentKey] = map[string]string{"value": text}
		if c.TitleKey != "" {
			data[c.TitleKey] = map[string]string{"value": firstNonEmpty(d.Content.Subject, d.Content.Title)}
		}
	}
	return Message{ToUser: openid, TemplateID: tmpl, URL: d.Content.URL, Data: data, ClientMsgID: d.ID}, nil
}

// Send implements vendor.Client.
func (c *Client) Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	msg, err := c.BuildMessage(d)
	if err != nil {
		return contracts.Result{}, err
	}
	return token.Use(ctx, c.tokens, func(ctx context.Context, tok string) (contracts.Result, error) {
		u := c.Endpoint + "/cgi-bin/message/template/send?access_token=" + url.QueryEscape(tok)
		resp, err := vendor.PostJSON(ctx, c.http.Client(), u, msg, nil, "wechat template send")
		if err != nil {
			return contracts.Result{}, err
		}
		var out struct {
			apiError
			MsgID int64 `json:"msgid"`
		}
		if err := vendor.DecodeJSON(resp, &out, "wechat template send"); err != nil {
			return contracts.Result{}, err
		}
		if out.ErrCode != 0 {
			return contracts.Result{}, Classify(out.ErrCode, out.ErrMsg)
		}
		return contracts.Result{ProviderID: fmt.Sprint(out.MsgID)}, nil
	})
}

// Classify maps a WeChat errcode of the send API to Herald's failure classes.
func Classify(code int, msg string) error {
	err := fmt.Errorf("wechat errcode %d: %s", code, msg)
	switch code {
	case 40001, 40014, 42001:
		return contracts.Retryable("wechat rejected the access token", fmt.Errorf("%w: %w", token.ErrRejected, err), 0)
	case -1:
		return contracts.Retryable("wechat is busy", err, 0)
	case 45009:
		return protect.Throttled("wechat daily API quota reached", err, time.Hour)
	case 45011, 45047:
		return protect.Throttled("wechat API rate limit", err, time.Minute)
	case 40003, 43004, 43019, 43101, 40130, 50002:
		// Invalid openid, user does not follow the account, user blocked it
		// or refuses its messages.
		return contracts.Permanent("wechat refused the recipient", err)
	case 47001, 47003, 44002:
		return contracts.Permanent("wechat refused the message data", err)
	}
	if code >= 40000 && code < 50000 {
		// 40037 invalid template_id, 40013 invalid appid, 48001 api
		// unauthorized, 40164 IP not whitelisted, ...
		return protect.ProviderFault("wechat account or template problem", err)
	}
	return contracts.Retryable("wechat error", err, 0)
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if strings.TrimSpace(v) != "" {
			return v
		}
	}
	return ""
}

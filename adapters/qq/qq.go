// Package qq is Herald's QQ channel: single-chat (C2C) messages of an
// official QQ bot (QQ 机器人开放平台, API v2) to the user's openid.
//
//	POST https://bots.qq.com/app/getAppAccessToken {"appId": ..., "clientSecret": ...}
//	  -> {"access_token": ..., "expires_in": "7200"}
//	POST {endpoint}/v2/users/{openid}/messages   Authorization: QQBot <access_token>
//	  {"content": ..., "msg_type": 0, "msg_id": ..., "msg_seq": N}
//
// The token is cached per bot and refreshed 50 seconds before it expires
// (the platform issues a new token only in the last 60 seconds of the old
// one, which stays valid meanwhile) and once more when the API answers 401
// or a token error code (11241-11244), after which the send is retried once.
//
// Limits (QQ bot platform, single chat): active messages are limited to 4
// per user per month, and the platform stopped offering active push on
// 2025-04-21; replies (passive messages) are allowed within 60 minutes of
// the user's message, at most 5 per message. A delivery becomes a reply
// when Delivery.Data carries "qq_msg_id" (the user's message id) or
// "qq_event_id" (an interaction/friend-add event id). Replies carry msg_seq
// derived from the delivery id: the platform refuses the same msg_id +
// msg_seq twice, so a retried delivery is not shown twice (that refusal is
// reported as success). Without either key the message is sent as an
// active message, which the platform may refuse; the refusal is permanent.
package qq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
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
const Type = "qq_bot"

// Endpoints and Data keys.
const (
	DefaultEndpoint      = "https://api.sgroup.qq.com"
	SandboxEndpoint      = "https://sandbox.api.sgroup.qq.com"
	DefaultTokenEndpoint = "https://bots.qq.com"
	DataMsgID            = "qq_msg_id"
	DataEventID          = "qq_event_id"
)

// Kind is the qq_bot provider kind.
var Kind = vendor.Kind{
	Type:    Type,
	Channel: domain.ChannelQQ,
	Title:   "QQ bot (open platform API v2, single chat)",
	Fields: []vendor.Field{
		{Key: "app_id", Required: true, Doc: "the bot's AppID"},
		{Key: "client_secret", Required: true, Secret: true, Doc: "the bot's AppSecret (clientSecret)"},
		{Key: "msg_type", Default: "text", Doc: "text, or markdown (native markdown needs the platform's permission)"},
		{Key: "endpoint", Default: DefaultEndpoint, Doc: "OpenAPI base URL (" + SandboxEndpoint + " for the sandbox)"},
		{Key: "token_endpoint", Default: DefaultTokenEndpoint, Doc: "token service base URL"},
	},
	Limits:          protect.Options{Rate: 20},
	AddressRequired: true,
}

func init() {
	Kind.New = func(p vendor.Provider, env vendor.Env) (vendor.Client, error) { return NewClient(p, env) }
	vendor.Register(Kind)
	registry.Register(domain.ChannelQQ, func(deps registry.Deps) (contracts.Sender, error) {
		return vendor.NewRouter(domain.ChannelQQ, deps, vendor.RouterOptions{})
	})
}

// Client is one QQ bot.
type Client struct {
	AppID         string
	ClientSecret  string
	MsgType       string
	Endpoint      string
	TokenEndpoint string
	env           vendor.Env
	tokens        *token.Cache
}

// NewClient builds a bot client from provider settings.
func NewClient(p vendor.Provider, env vendor.Env) (*Client, error) {
	endpoint, err := vendor.EndpointSetting(Kind, p, "endpoint")
	if err != nil {
		return nil, err
	}
	tokenEndpoint, err := vendor.EndpointSetting(Kind, p, "token_endpoint")
	if err != nil {
		return nil, err
	}
	mt := Kind.Setting(p, "msg_type")
	if mt != "text" && mt != "markdown" {
		return nil, vendor.Invalid("msg_type", "want text or markdown, got %q", mt)
	}
	c := &Client{AppID: Kind.Setting(p, "app_id"), ClientSecret: Kind.Setting(p, "client_secret"), MsgType: mt,
		Endpoint: endpoint, TokenEndpoint: tokenEndpoint, env: env}
	c.tokens = token.New(c.fetchToken, token.Options{Margin: 50 * time.Second, Now: env.Clock()})
	return c, nil
}

// Tokens exposes the token cache.
func (c *Client) Tokens() *token.Cache { return c.tokens }

// flexInt accepts a JSON number or a numeric string ("7200").
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*f = 0
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	*f = flexInt(n)
	return err
}

// apiError is the platform's error body.
type apiError struct {
	Code    int    `json:"code"`
	ErrCode int    `json:"err_code"`
	Message string `json:"message"`
	TraceID string `json:"trace_id"`
}

func (c *Client) fetchToken(ctx context.Context) (string, time.Duration, error) {
	body := map[string]string{"appId": c.AppID, "clientSecret": c.ClientSecret}
	resp, err := vendor.PostJSON(ctx, c.env.Client(), c.TokenEndpoint+"/app/getAppAccessToken", body, nil, "qq getAppAccessToken")
	if err != nil {
		return "", 0, err
	}
	var out struct {
		apiError
		AccessToken string  `json:"access_token"`
		ExpiresIn   flexInt `json:"expires_in"`
	}
	if err := vendor.DecodeJSON(resp, &out, "qq getAppAccessToken"); err != nil {
		return "", 0, err
	}
	if out.AccessToken == "" || out.ExpiresIn <= 0 {
		err := fmt.Errorf("qq getAppAccessToken HTTP %d code %d: %s", resp.Status, out.Code, out.Message)
		if out.Code == 100001 {
			return "", 0, protect.Throttled("qq token rate limit", err, time.Second)
		}
		// 100016 invalid appid or secret, ...
		return "", 0, protect.ProviderFault("qq refused the appId/clientSecret", err)
	}
	return out.AccessToken, time.Duration(out.ExpiresIn) * time.Second, nil
}

var openidRE = regexp.MustCompile(`^[A-Za-z0-9_-]{8,128}$`)

// Message is the C2C message body.
type Message struct {
	Content  string    `json:"content"`
	MsgType  int       `json:"msg_type"`
	Markdown *Markdown `json:"markdown,omitempty"`
	MsgID    string    `json:"msg_id,omitempty"`
	EventID  string    `json:"event_id,omitempty"`
	MsgSeq   int       `json:"msg_seq,omitempty"`
}

// Markdown is a native markdown body.
type Markdown struct {
	Content string `json:"content"`
}

// MsgSeq derives the reply sequence number of a delivery (1..2^31-1).
func MsgSeq(deliveryID string) int {
	h := fnv.New32a()
	h.Write([]byte(deliveryID))
	if n := int(h.Sum32() & 0x7fffffff); n != 0 {
		return n
	}
	return 1
}

// BuildMessage maps a delivery onto a C2C message.
func (c *Client) BuildMessage(d *contracts.Delivery) (string, Message, error) {
	openid := strings.TrimSpace(d.Address)
	if !openidRE.MatchString(openid) {
		return "", Message{}, contracts.Permanent("not a QQ openid", fmt.Errorf("address %q is not an openid", d.Address))
	}
	text := plainText(d.Content)
	if text == "" && d.Content.Markdown == "" {
		return "", Message{}, contracts.Permanent("empty QQ message", fmt.Errorf("delivery %s has no text", d.ID))
	}
	m := Message{Content: firstNonEmpty(text, d.Content.Markdown), MsgType: 0}
	if c.MsgType == "markdown" && d.Content.Markdown != "" {
		m = Message{Content: " ", MsgType: 2, Markdown: &Markdown{Content: d.Content.Markdown}}
	}
	if s, _ := d.Data[DataMsgID].(string); s != "" {
		m.MsgID = s
	}
	if s, _ := d.Data[DataEventID].(string); s != "" {
		m.EventID = s
	}
	if m.MsgID != "" || m.EventID != "" {
		m.MsgSeq = MsgSeq(d.ID)
	}
	return openid, m, nil
}

// Send implements vendor.Client.
func (c *Client) Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	openid, msg, err := c.BuildMessage(d)
	if err != nil {
		return contracts.Result{}, err
	}
	u := c.Endpoint + "/v2/users/" + url.PathEscape(openid) + "/messages"
	return token.Use(ctx, c.tokens, func(ctx context.Context, tok string) (contracts.Result, error) {
		h := http.Header{"Authorization": {"QQBot " + tok}, "X-Union-Appid": {c.AppID}}
		resp, err := vendor.PostJSON(ctx, c.env.Client(), u, msg, h, "qq send")
		if err != nil {
			return contracts.Result{}, err
		}
		if resp.Status >= 200 && resp.Status < 300 {
			var out struct {
				ID string `json:"id"`
			}
			json.Unmarshal(resp.Body, &out)
			return contracts.Result{ProviderID: out.ID}, nil
		}
		var out apiError
		if err := vendor.DecodeJSON(resp, &out, "qq send"); err != nil {
			return contracts.Result{}, err
		}
		if out.Code == 0 {
			out.Code = out.ErrCode
		}
		if out.Code == CodeDuplicateSeq && msg.MsgSeq != 0 {
			// The same reply (msg_id + msg_seq) was already accepted: an
			// earlier attempt of this delivery got through.
			return contracts.Result{}, nil
		}
		return contracts.Result{}, Classify(resp.Status, out)
	})
}

// CodeDuplicateSeq is the platform's answer to a repeated msg_id + msg_seq.
const CodeDuplicateSeq = 40054005

// Classify maps an HTTP status and platform code to Herald's failure classes.
func Classify(status int, e apiError) error {
	err := fmt.Errorf("qq HTTP %d code %d: %s (trace %s)", status, e.Code, e.Message, e.TraceID)
	switch {
	case status == http.StatusUnauthorized || e.Code >= 11241 && e.Code <= 11244:
		return contracts.Retryable("qq rejected the access token", errors.Join(token.ErrRejected, err), 0)
	case e.Code == 22009:
		return contracts.Permanent("qq message quota exceeded (4 active messages per user a month; 5 replies per message within 60 minutes)", err)
	case e.Code == 304026 || e.Code == 304027 || e.Code == 40034028:
		return contracts.Permanent("qq reply window passed or the replied message is unknown", err)
	case e.Code == 11281 || e.Code == 11252 || e.Code == 11263 || e.Code == 304082 || e.Code == 304083:
		return contracts.Retryable("qq asks to retry", err, 0)
	case e.Code == 20028 || e.Code == 1100100 || e.Code == 304045 || e.Code == 304049 || e.Code == 304050:
		return protect.Throttled("qq rate limit", err, time.Minute)
	case e.Code >= 11250 && e.Code <= 11275, e.Code == 304003, e.Code == 304004, e.Code == 304014, e.Code == 304018:
		// Wrong appid, missing permission, bot banned, URL not registered,
		// no markdown permission, bot not connected.
		return protect.ProviderFault("qq bot permission or configuration problem", err)
	case status >= 400 && status < 500:
		return contracts.Permanent("qq refused the message", err)
	}
	return contracts.Retryable("qq error", err, 0)
}

func plainText(c domain.Content) string {
	subject := strings.TrimSpace(firstNonEmpty(c.Subject, c.Title))
	text := strings.TrimSpace(firstNonEmpty(c.Text, c.Body))
	switch {
	case subject == "":
		return text
	case text == "":
		return subject
	}
	return subject + "\n" + text
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if strings.TrimSpace(v) != "" {
			return v
		}
	}
	return ""
}

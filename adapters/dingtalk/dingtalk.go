// Package dingtalk is Herald's DingTalk (钉钉) channel, with two provider
// kinds:
//
// dingtalk_robot posts to a group's custom robot:
//
//	POST {endpoint}/robot/send?access_token=TOKEN&timestamp=MS&sign=SIGN
//	sign = urlEncode(base64(HmacSHA256(key = secret, msg = timestamp + "\n" + secret)))
//
// (timestamp in milliseconds; the signature is added when the robot's
// "加签" secret is configured). DingTalk limits a robot to 20 messages a
// minute. The robot ignores the delivery address.
//
// dingtalk_work sends work notifications (工作通知) of an internal app to a
// member's userid:
//
//	POST {endpoint}/topapi/message/corpconversation/asyncsend_v2?access_token=TOKEN
//	{"agent_id": N, "userid_list": userid, "msg": {...}}
//
// with the app access token from GET /gettoken?appkey=KEY&appsecret=SECRET,
// cached per provider, refreshed 5 minutes before expiry and once more on
// errcode 40014, 42001 or 40001 (also when reported as sub_code of errcode
// 88), after which the send is retried once. The API has no idempotency
// field; DingTalk itself delivers identical content to the same member at
// most once a day.
//
// Content: markdown when the content has Markdown, an action card when it
// has a URL (work notices), else text (subject and text).
package dingtalk

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
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

// Provider type names.
const (
	TypeRobot = "dingtalk_robot"
	TypeWork  = "dingtalk_work"
)

// DefaultEndpoint is the DingTalk open API base URL.
const DefaultEndpoint = "https://oapi.dingtalk.com"

// RobotKind is the dingtalk_robot provider kind.
var RobotKind = vendor.Kind{
	Type:    TypeRobot,
	Channel: domain.ChannelDingTalk,
	Title:   "DingTalk custom group robot",
	Fields: []vendor.Field{
		{Key: "access_token", Required: true, Secret: true, Doc: "the access_token of the robot's webhook URL"},
		{Key: "secret", Secret: true, Doc: "the robot's signing secret (SEC...), when 加签 is enabled"},
		{Key: "msgtype", Default: "auto", Doc: "auto (markdown when the content has markdown, else text), text or markdown"},
		{Key: "at_mobiles", Doc: "comma-separated mobile numbers to @"},
		{Key: "at_user_ids", Doc: "comma-separated userids to @"},
		{Key: "at_all", Default: "false", Doc: "true = @everyone"},
		{Key: "endpoint", Default: DefaultEndpoint, Doc: "API base URL"},
	},
	Limits: protect.Options{Rate: 20.0 / 60, Burst: 20},
}

// WorkKind is the dingtalk_work provider kind.
var WorkKind = vendor.Kind{
	Type:    TypeWork,
	Channel: domain.ChannelDingTalk,
	Title:   "DingTalk work notifications (asyncsend_v2)",
	Fields: []vendor.Field{
		{Key: "app_key", Required: true, Doc: "the internal app's AppKey"},
		{Key: "app_secret", Required: true, Secret: true, Doc: "AppSecret"},
		{Key: "agent_id", Required: true, Doc: "the app's AgentId"},
		{Key: "endpoint", Default: DefaultEndpoint, Doc: "API base URL"},
	},
	// The open API allows 20 calls per second per app for this method.
	Limits:          protect.Options{Rate: 20},
	AddressRequired: true,
}

func init() {
	RobotKind.New = func(p vendor.Provider, env vendor.Env) (vendor.Client, error) { return NewRobot(p, env) }
	WorkKind.New = func(p vendor.Provider, env vendor.Env) (vendor.Client, error) { return NewWork(p, env) }
	vendor.Register(RobotKind)
	vendor.Register(WorkKind)
	registry.Register(domain.ChannelDingTalk, func(deps registry.Deps) (contracts.Sender, error) {
		return vendor.NewRouter(domain.ChannelDingTalk, deps, vendor.RouterOptions{})
	})
}

// Sign returns the robot signature of a millisecond timestamp:
// base64(HmacSHA256(secret, timestamp + "\n" + secret)), before URL encoding.
func Sign(secret string, timestampMillis int64) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(timestampMillis, 10) + "\n" + secret))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

type apiError struct {
	ErrCode int    `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
	SubCode string `json:"sub_code"`
}

// Robot is one custom robot.
type Robot struct {
	AccessToken string
	Secret      string
	MsgType     string
	At          At
	Endpoint    string
	env         vendor.Env
}

// At names who a robot message mentions.
type At struct {
	AtMobiles []string `json:"atMobiles,omitempty"`
	AtUserIDs []string `json:"atUserIds,omitempty"`
	IsAtAll   bool     `json:"isAtAll"`
}

// NewRobot builds a robot client from provider settings.
func NewRobot(p vendor.Provider, env vendor.Env) (*Robot, error) {
	endpoint, err := vendor.EndpointSetting(RobotKind, p, "endpoint")
	if err != nil {
		return nil, err
	}
	mt := RobotKind.Setting(p, "msgtype")
	if mt != "auto" && mt != "text" && mt != "markdown" {
		return nil, vendor.Invalid("msgtype", "want auto, text or markdown, got %q", mt)
	}
	all, err := strconv.ParseBool(RobotKind.Setting(p, "at_all"))
	if err != nil {
		return nil, vendor.Invalid("at_all", "want true or false, got %q", p.Settings["at_all"])
	}
	return &Robot{
		AccessToken: RobotKind.Setting(p, "access_token"), Secret: RobotKind.Setting(p, "secret"), MsgType: mt,
		At:       At{AtMobiles: split(RobotKind.Setting(p, "at_mobiles")), AtUserIDs: split(RobotKind.Setting(p, "at_user_ids")), IsAtAll: all},
		Endpoint: endpoint, env: env,
	}, nil
}

// RobotURL returns the signed webhook URL for a millisecond timestamp.
func (r *Robot) RobotURL(timestampMillis int64) string {
	q := url.Values{"access_token": {r.AccessToken}}
	if r.Secret != "" {
		q.Set("timestamp", strconv.FormatInt(timestampMillis, 10))
		q.Set("sign", Sign(r.Secret, timestampMillis))
	}
	return r.Endpoint + "/robot/send?" + q.Encode()
}

// Markdown is a markdown body.
type Markdown struct {
	Title string `json:"title"`
	Text  string `json:"text"`
}

// Text is a text body.
type Text struct {
	Content string `json:"content"`
}

// RobotMessage is the robot/send request body.
type RobotMessage struct {
	MsgType  string    `json:"msgtype"`
	Text     *Text     `json:"text,omitempty"`
	Markdown *Markdown `json:"markdown,omitempty"`
	At       At        `json:"at"`
}

// BuildMessage maps a delivery onto a robot message.
func (r *Robot) BuildMessage(d *contracts.Delivery) (RobotMessage, error) {
	c := d.Content
	mt := r.MsgType
	if mt == "auto" {
		mt = "text"
		if c.Markdown != "" {
			mt = "markdown"
		}
	}
	m := RobotMessage{MsgType: mt, At: r.At}
	if mt == "markdown" {
		m.Markdown = &Markdown{Title: title(c), Text: firstNonEmpty(c.Markdown, plainText(c))}
	} else {
		m.Text = &Text{Content: firstNonEmpty(plainText(c), c.Markdown)}
	}
	if plainText(c) == "" && c.Markdown == "" {
		return RobotMessage{}, contracts.Permanent("empty DingTalk message", fmt.Errorf("delivery %s has no text", d.ID))
	}
	return m, nil
}

// Send implements vendor.Client.
func (r *Robot) Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	msg, err := r.BuildMessage(d)
	if err != nil {
		return contracts.Result{}, err
	}
	resp, err := vendor.PostJSON(ctx, r.env.Client(), r.RobotURL(r.env.Clock()().UnixMilli()), msg, nil, "dingtalk robot")
	if err != nil {
		return contracts.Result{}, err
	}
	var out apiError
	if err := vendor.DecodeJSON(resp, &out, "dingtalk robot"); err != nil {
		return contracts.Result{}, err
	}
	if out.ErrCode != 0 {
		return contracts.Result{}, Classify(out)
	}
	return contracts.Result{}, nil
}

// Work is one internal app sending work notifications.
type Work struct {
	AppKey    string
	AppSecret string
	AgentID   int64
	Endpoint  string
	env       vendor.Env
	tokens    *token.Cache
}

// NewWork builds a work-notification client from provider settings.
func NewWork(p vendor.Provider, env vendor.Env) (*Work, error) {
	endpoint, err := vendor.EndpointSetting(WorkKind, p, "endpoint")
	if err != nil {
		return nil, err
	}
	agent, err := strconv.ParseInt(WorkKind.Setting(p, "agent_id"), 10, 64)
	if err != nil || agent <= 0 {
		return nil, vendor.Invalid("agent_id", "want the numeric AgentId, got %q", p.Settings["agent_id"])
	}
	w := &Work{AppKey: WorkKind.Setting(p, "app_key"), AppSecret: WorkKind.Setting(p, "app_secret"), AgentID: agent, Endpoint: endpoint, env: env}
	w.tokens = token.New(w.fetchToken, token.Options{Margin: 5 * time.Minute, Now: env.Clock()})
	return w, nil
}

// Tokens exposes the token cache.
func (w *Work) Tokens() *token.Cache { return w.tokens }

func (w *Work) fetchToken(ctx context.Context) (string, time.Duration, error) {
	q := url.Values{"appkey": {w.AppKey}, "appsecret": {w.AppSecret}}
	resp, err := vendor.Get(ctx, w.env.Client(), w.Endpoint+"/gettoken?"+q.Encode(), "dingtalk gettoken")
	if err != nil {
		return "", 0, err
	}
	var out struct {
		apiError
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := vendor.DecodeJSON(resp, &out, "dingtalk gettoken"); err != nil {
		return "", 0, err
	}
	if out.ErrCode != 0 || out.AccessToken == "" {
		err := fmt.Errorf("dingtalk gettoken errcode %d (%s): %s", out.ErrCode, out.SubCode, out.ErrMsg)
		switch {
		case out.ErrCode == -1:
			return "", 0, contracts.Retryable("dingtalk is busy", err, 0)
		case throttleCodes[out.ErrCode] || throttleCodes[atoi(out.SubCode)]:
			return "", 0, protect.Throttled("dingtalk gettoken rate limit", err, time.Second)
		}
		// 40089 invalid appkey/appsecret, 43004?, 60020 IP not allowed, ...
		return "", 0, protect.ProviderFault("dingtalk refused the appkey/appsecret", err)
	}
	return out.AccessToken, time.Duration(out.ExpiresIn) * time.Second, nil
}

// WorkMessage is the asyncsend_v2 request body.
type WorkMessage struct {
	AgentID    int64   `json:"agent_id"`
	UseridList string  `json:"userid_list"`
	Msg        WorkMsg `json:"msg"`
}

// WorkMsg is a work-notification message.
type WorkMsg struct {
	MsgType    string      `json:"msgtype"`
	Text       *Text       `json:"text,omitempty"`
	Markdown   *Markdown   `json:"markdown,omitempty"`
	ActionCard *ActionCard `json:"action_card,omitempty"`
}

// ActionCard is a single-button action card.
type ActionCard struct {
	Title       string `json:"title"`
	Markdown    string `json:"markdown"`
	SingleTitle string `json:"single_title"`
	SingleURL   string `json:"single_url"`
}

var useridRE = regexp.MustCompile(`^[A-Za-z0-9_.@$-]{1,64}$`)

// BuildMessage maps a delivery onto a work notification.
func (w *Work) BuildMessage(d *contracts.Delivery) (WorkMessage, error) {
	user := strings.TrimSpace(d.Address)
	if !useridRE.MatchString(user) {
		return WorkMessage{}, contracts.Permanent("not a DingTalk userid", fmt.Errorf("address %q is not a userid", d.Address))
	}
	c := d.Content
	if plainText(c) == "" && c.Markdown == "" {
		return WorkMessage{}, contracts.Permanent("empty DingTalk message", fmt.Errorf("delivery %s has no text", d.ID))
	}
	m := WorkMessage{AgentID: w.AgentID, UseridList: user}
	switch {
	case c.URL != "":
		m.Msg = WorkMsg{MsgType: "action_card", ActionCard: &ActionCard{Title: title(c), Markdown: firstNonEmpty(c.Markdown, plainText(c)), SingleTitle: "查看详情", SingleURL: c.URL}}
	case c.Markdown != "":
		m.Msg = WorkMsg{MsgType: "markdown", Markdown: &Markdown{Title: title(c), Text: c.Markdown}}
	default:
		m.Msg = WorkMsg{MsgType: "text", Text: &Text{Content: plainText(c)}}
	}
	return m, nil
}

// Send implements vendor.Client.
func (w *Work) Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	msg, err := w.BuildMessage(d)
	if err != nil {
		return contracts.Result{}, err
	}
	return token.Use(ctx, w.tokens, func(ctx context.Context, tok string) (contracts.Result, error) {
		u := w.Endpoint + "/topapi/message/corpconversation/asyncsend_v2?access_token=" + url.QueryEscape(tok)
		resp, err := vendor.PostJSON(ctx, w.env.Client(), u, msg, nil, "dingtalk asyncsend_v2")
		if err != nil {
			return contracts.Result{}, err
		}
		var out struct {
			apiError
			TaskID json.Number `json:"task_id"`
		}
		if err := vendor.DecodeJSON(resp, &out, "dingtalk asyncsend_v2"); err != nil {
			return contracts.Result{}, err
		}
		if out.ErrCode != 0 {
			return contracts.Result{}, Classify(out.apiError)
		}
		return contracts.Result{ProviderID: out.TaskID.String()}, nil
	})
}

var tokenCodes = map[int]bool{40014: true, 42001: true, 40001: true}

var throttleCodes = map[int]bool{90002: true, 90005: true, 90006: true, 90018: true, 90019: true}

// Classify maps a DingTalk errcode (and sub_code) to Herald's failure classes.
func Classify(e apiError) error {
	err := fmt.Errorf("dingtalk errcode %d: %s", e.ErrCode, e.ErrMsg)
	if e.SubCode != "" {
		err = fmt.Errorf("dingtalk errcode %d (sub_code %s): %s", e.ErrCode, e.SubCode, e.ErrMsg)
	}
	sub := atoi(e.SubCode)
	switch {
	case tokenCodes[e.ErrCode] || tokenCodes[sub]:
		return contracts.Retryable("dingtalk rejected the access token", fmt.Errorf("%w: %w", token.ErrRejected, err), 0)
	case e.ErrCode == -1:
		return contracts.Retryable("dingtalk is busy", err, 0)
	case e.ErrCode == 410100:
		// "发送速度太快而限流": a robot over 20 messages a minute is
		// throttled for 10 minutes.
		return protect.Throttled("dingtalk robot throttled", err, 10*time.Minute)
	case e.ErrCode == 130101 || e.ErrCode == 130102:
		return protect.Throttled("dingtalk robot rate limit", err, time.Minute)
	case throttleCodes[e.ErrCode] || throttleCodes[sub]:
		return protect.Throttled("dingtalk API rate limit", err, time.Second)
	case e.ErrCode == 33012 || e.ErrCode == 60121 || e.ErrCode == 60011:
		return contracts.Permanent("dingtalk refused the recipient", err)
	case e.ErrCode == 40035 || e.ErrCode == 400002 || e.ErrCode == 43009:
		return contracts.Permanent("dingtalk refused the message", err)
	case e.ErrCode == 310000 || e.ErrCode == 300001 || e.ErrCode == 300005 || e.ErrCode >= 400000 && e.ErrCode < 500000 ||
		e.ErrCode >= 40000 && e.ErrCode < 50000 || e.ErrCode == 88:
		// 310000: signature mismatch, keyword missing or IP not in the
		// robot's whitelist; 300001/400xxx: robot token invalid or robot
		// disabled; 4xxxx: app credentials or permissions.
		return protect.ProviderFault("dingtalk robot or app problem", err)
	}
	return contracts.Retryable("dingtalk error", err, 0)
}

func atoi(s string) int { n, _ := strconv.Atoi(strings.TrimSpace(s)); return n }

func title(c domain.Content) string {
	return firstNonEmpty(c.Subject, c.Title, "通知")
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

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

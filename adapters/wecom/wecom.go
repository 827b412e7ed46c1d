// Package wecom is Herald's WeCom (企业微信) channel, with two provider kinds:
//
// wecom_app sends application messages to a member's userid:
//
//	POST {endpoint}/cgi-bin/message/send?access_token=TOKEN
//	{"touser": userid, "msgtype": "text"|"markdown"|"textcard", "agentid": N, ...,
//	 "enable_duplicate_check": 1, "duplicate_check_interval": 1800}
//
// with the corp access token from GET /cgi-bin/gettoken?corpid=ID&corpsecret=SECRET,
// cached per provider, refreshed 5 minutes before expiry and once more on
// errcode 40014, 42001 or 40001 (then the send is retried once). Duplicate
// checking is on by default (duplicate_check_interval 1800 s, setting
// "0" turns it off): WeCom drops an identical message to the same member
// within the interval, so a retry whose first attempt did reach WeCom is not
// shown twice. WeCom has no per-message id field, so the delivery id is not
// sent.
//
// wecom_robot posts to a group robot webhook, POST
// {endpoint}/cgi-bin/webhook/send?key=KEY (text or markdown); it ignores the
// delivery address. WeCom limits a robot to 20 messages a minute.
//
// An addressed delivery goes to the app's wecom_app providers and an
// unaddressed one to its robots (Delivery.Data["provider"] picks one by
// name). The text message is the subject and text; a content with Markdown
// is sent as markdown; one with a URL as a textcard.
package wecom

import (
	"context"
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
	TypeApp   = "wecom_app"
	TypeRobot = "wecom_robot"
)

// DefaultEndpoint is the WeCom API base URL.
const DefaultEndpoint = "https://qyapi.weixin.qq.com"

// AppKind is the wecom_app provider kind.
var AppKind = vendor.Kind{
	Type:    TypeApp,
	Channel: domain.ChannelWeCom,
	Title:   "WeCom application messages",
	Fields: []vendor.Field{
		{Key: "corp_id", Required: true, Doc: "企业ID (corpid)"},
		{Key: "corp_secret", Required: true, Secret: true, Doc: "the application's Secret"},
		{Key: "agent_id", Required: true, Doc: "the application's AgentId"},
		{Key: "msgtype", Default: "auto", Doc: "auto (markdown when the content has markdown, textcard when it has a URL, else text), text, markdown or textcard"},
		{Key: "duplicate_check_interval", Default: "1800", Doc: "seconds WeCom suppresses an identical message (0 = no duplicate check, max 14400)"},
		{Key: "safe", Default: "0", Doc: "1 = confidential message (text and textcard)"},
		{Key: "endpoint", Default: DefaultEndpoint, Doc: "API base URL"},
	},
	// WeCom allows 10,000 calls a minute per API per corp (~166/s); one
	// app may message a member at most 30 times a minute.
	Limits:          protect.Options{Rate: 150},
	AddressRequired: true,
}

// RobotKind is the wecom_robot provider kind.
var RobotKind = vendor.Kind{
	Type:    TypeRobot,
	Channel: domain.ChannelWeCom,
	Title:   "WeCom group robot webhook",
	Fields: []vendor.Field{
		{Key: "key", Required: true, Secret: true, Doc: "the robot webhook key (the key= of its URL)"},
		{Key: "msgtype", Default: "auto", Doc: "auto (markdown when the content has markdown, else text), text or markdown"},
		{Key: "mentioned_list", Doc: "comma-separated userids to @ in text messages (@all for everyone)"},
		{Key: "mentioned_mobile_list", Doc: "comma-separated mobile numbers to @ in text messages"},
		{Key: "endpoint", Default: DefaultEndpoint, Doc: "API base URL"},
	},
	// 20 messages per minute per robot.
	Limits: protect.Options{Rate: 20.0 / 60, Burst: 20},
}

func init() {
	AppKind.New = func(p vendor.Provider, env vendor.Env) (vendor.Client, error) { return NewApp(p, env) }
	RobotKind.New = func(p vendor.Provider, env vendor.Env) (vendor.Client, error) { return NewRobot(p, env) }
	vendor.Register(AppKind)
	vendor.Register(RobotKind)
	registry.Register(domain.ChannelWeCom, func(deps registry.Deps) (contracts.Sender, error) {
		return vendor.NewRouter(domain.ChannelWeCom, deps, vendor.RouterOptions{})
	})
}

type apiError struct {
	ErrCode int    `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
}

// App is one WeCom application.
type App struct {
	CorpID      string
	CorpSecret  string
	AgentID     int64
	MsgType     string
	DupInterval int
	Safe        int
	Endpoint    string
	env         vendor.Env
	tokens      *token.Cache
}

// NewApp builds an application client from provider settings.
func NewApp(p vendor.Provider, env vendor.Env) (*App, error) {
	endpoint, err := vendor.EndpointSetting(AppKind, p, "endpoint")
	if err != nil {
		return nil, err
	}
	agent, err := strconv.ParseInt(AppKind.Setting(p, "agent_id"), 10, 64)
	if err != nil || agent <= 0 {
		return nil, vendor.Invalid("agent_id", "want the numeric AgentId, got %q", p.Settings["agent_id"])
	}
	mt := AppKind.Setting(p, "msgtype")
	if mt != "auto" && mt != "text" && mt != "markdown" && mt != "textcard" {
		return nil, vendor.Invalid("msgtype", "want auto, text, markdown or textcard, got %q", mt)
	}
	dup, err := strconv.Atoi(AppKind.Setting(p, "duplicate_check_interval"))
	if err != nil || dup < 0 || dup > 14400 {
		return nil, vendor.Invalid("duplicate_check_interval", "want seconds between 0 and 14400, got %q", p.Settings["duplicate_check_interval"])
	}
	safe := AppKind.Setting(p, "safe")
	if safe != "0" && safe != "1" {
		return nil, vendor.Invalid("safe", "want 0 or 1, got %q", safe)
	}
	a := &App{
		CorpID: AppKind.Setting(p, "corp_id"), CorpSecret: AppKind.Setting(p, "corp_secret"), AgentID: agent,
		MsgType: mt, DupInterval: dup, Safe: int(safe[0] - '0'), Endpoint: endpoint, env: env,
	}
	a.tokens = token.New(a.fetchToken, token.Options{Margin: 5 * time.Minute, Now: env.Clock()})
	return a, nil
}

// Tokens exposes the token cache.
func (a *App) Tokens() *token.Cache { return a.tokens }

func (a *App) fetchToken(ctx context.Context) (string, time.Duration, error) {
	q := url.Values{"corpid": {a.CorpID}, "corpsecret": {a.CorpSecret}}
	resp, err := vendor.Get(ctx, a.env.Client(), a.Endpoint+"/cgi-bin/gettoken?"+q.Encode(), "wecom gettoken")
	if err != nil {
		return "", 0, err
	}
	var out struct {
		apiError
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := vendor.DecodeJSON(resp, &out, "wecom gettoken"); err != nil {
		return "", 0, err
	}
	if out.ErrCode != 0 || out.AccessToken == "" {
		err := fmt.Errorf("wecom gettoken errcode %d: %s", out.ErrCode, out.ErrMsg)
		switch out.ErrCode {
		case -1:
			return "", 0, contracts.Retryable("wecom is busy", err, 0)
		case 45009, 45033:
			return "", 0, protect.Throttled("wecom gettoken rate limit", err, time.Minute)
		}
		// 40013 invalid corpid, 40001/40091 invalid secret, 60020 IP not allowed.
		return "", 0, protect.ProviderFault("wecom refused the corpid/secret", err)
	}
	return out.AccessToken, time.Duration(out.ExpiresIn) * time.Second, nil
}

var useridRE = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,64}$`)

// AppMessage is the message/send request body.
type AppMessage struct {
	ToUser                 string    `json:"touser"`
	MsgType                string    `json:"msgtype"`
	AgentID                int64     `json:"agentid"`
	Text                   *TextBody `json:"text,omitempty"`
	Markdown               *TextBody `json:"markdown,omitempty"`
	TextCard               *TextCard `json:"textcard,omitempty"`
	Safe                   int       `json:"safe"`
	EnableDuplicateCheck   int       `json:"enable_duplicate_check"`
	DuplicateCheckInterval int       `json:"duplicate_check_interval,omitempty"`
}

// TextBody is a text or markdown body.
type TextBody struct {
	Content             string   `json:"content"`
	MentionedList       []string `json:"mentioned_list,omitempty"`
	MentionedMobileList []string `json:"mentioned_mobile_list,omitempty"`
}

// TextCard is a text card.
type TextCard struct {
	Title       string `json:"title"`
	Description string `json:"description"`
	URL         string `json:"url"`
	BtnTxt      string `json:"btntxt,omitempty"`
}

// BuildMessage maps a delivery onto an application message.
func (a *App) BuildMessage(d *contracts.Delivery) (AppMessage, error) {
	user := strings.TrimSpace(d.Address)
	if !useridRE.MatchString(user) || strings.EqualFold(user, "@all") {
		return AppMessage{}, contracts.Permanent("not a WeCom userid", fmt.Errorf("address %q is not a userid", d.Address))
	}
	m := AppMessage{ToUser: user, AgentID: a.AgentID, Safe: a.Safe}
	if a.DupInterval > 0 {
		m.EnableDuplicateCheck, m.DuplicateCheckInterval = 1, a.DupInterval
	}
	mt := a.MsgType
	c := d.Content
	if mt == "auto" {
		switch {
		case c.Markdown != "":
			mt = "markdown"
		case c.URL != "":
			mt = "textcard"
		default:
			mt = "text"
		}
	}
	if mt == "textcard" && c.URL == "" {
		mt = "text"
	}
	m.MsgType = mt
	switch mt {
	case "markdown":
		m.Markdown = &TextBody{Content: firstNonEmpty(c.Markdown, PlainText(c))}
	case "textcard":
		m.TextCard = &TextCard{
			Title:       truncate(firstNonEmpty(c.Subject, c.Title, "通知"), 128),
			Description: truncate(firstNonEmpty(c.Text, c.Body, c.Markdown), 512),
			URL:         c.URL, BtnTxt: "详情",
		}
	default:
		m.Text = &TextBody{Content: truncate(PlainText(c), 2048)}
	}
	if m.Text != nil && m.Text.Content == "" || m.Markdown != nil && m.Markdown.Content == "" {
		return AppMessage{}, contracts.Permanent("empty WeCom message", fmt.Errorf("delivery %s has no text", d.ID))
	}
	return m, nil
}

// Send implements vendor.Client.
func (a *App) Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	msg, err := a.BuildMessage(d)
	if err != nil {
		return contracts.Result{}, err
	}
	return token.Use(ctx, a.tokens, func(ctx context.Context, tok string) (contracts.Result, error) {
		u := a.Endpoint + "/cgi-bin/message/send?access_token=" + url.QueryEscape(tok)
		resp, err := vendor.PostJSON(ctx, a.env.Client(), u, msg, nil, "wecom message/send")
		if err != nil {
			return contracts.Result{}, err
		}
		var out struct {
			apiError
			InvalidUser    string `json:"invaliduser"`
			UnlicensedUser string `json:"unlicenseduser"`
			MsgID          string `json:"msgid"`
		}
		if err := vendor.DecodeJSON(resp, &out, "wecom message/send"); err != nil {
			return contracts.Result{}, err
		}
		if out.ErrCode != 0 {
			return contracts.Result{}, Classify(out.ErrCode, out.ErrMsg)
		}
		if out.InvalidUser != "" {
			return contracts.Result{}, contracts.Permanent("wecom does not know the userid", fmt.Errorf("invaliduser %q", out.InvalidUser))
		}
		if out.UnlicensedUser != "" {
			return contracts.Result{}, contracts.Permanent("the WeCom member has no interface license", fmt.Errorf("unlicenseduser %q", out.UnlicensedUser))
		}
		return contracts.Result{ProviderID: out.MsgID}, nil
	})
}

// Classify maps a WeCom errcode to Herald's failure classes.
func Classify(code int, msg string) error {
	err := fmt.Errorf("wecom errcode %d: %s", code, msg)
	switch code {
	case 40014, 42001, 40001:
		return contracts.Retryable("wecom rejected the access token", fmt.Errorf("%w: %w", token.ErrRejected, err), 0)
	case -1:
		return contracts.Retryable("wecom is busy", err, 0)
	case 45009:
		return protect.Throttled("wecom API rate limit", err, time.Minute)
	case 45033:
		return protect.Throttled("wecom concurrency limit", err, time.Second)
	case 40003, 60111, 81013, 82001, 81012:
		return contracts.Permanent("wecom refused the recipient", err)
	case 44004, 45002, 40008, 40058:
		return contracts.Permanent("wecom refused the message", err)
	case 93000, 93004, 40056, 60020, 60011, 301002, 48002, 40013, 40091, 41001:
		return protect.ProviderFault("wecom robot, app or permission problem", err)
	}
	if code >= 40000 && code < 50000 || code >= 60000 && code < 70000 || code >= 90000 && code < 100000 {
		return protect.ProviderFault("wecom rejected the request", err)
	}
	return contracts.Retryable("wecom error", err, 0)
}

// Robot is one group robot.
type Robot struct {
	Key       string
	MsgType   string
	Mentioned []string
	Mobiles   []string
	Endpoint  string
	env       vendor.Env
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
	return &Robot{Key: RobotKind.Setting(p, "key"), MsgType: mt, Endpoint: endpoint, env: env,
		Mentioned: split(RobotKind.Setting(p, "mentioned_list")), Mobiles: split(RobotKind.Setting(p, "mentioned_mobile_list"))}, nil
}

// RobotMessage is the webhook/send request body.
type RobotMessage struct {
	MsgType  string    `json:"msgtype"`
	Text     *TextBody `json:"text,omitempty"`
	Markdown *TextBody `json:"markdown,omitempty"`
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
	var m RobotMessage
	if mt == "markdown" {
		m = RobotMessage{MsgType: "markdown", Markdown: &TextBody{Content: truncate(firstNonEmpty(c.Markdown, PlainText(c)), 4096)}}
	} else {
		m = RobotMessage{MsgType: "text", Text: &TextBody{Content: truncate(PlainText(c), 2048), MentionedList: r.Mentioned, MentionedMobileList: r.Mobiles}}
	}
	if (m.Text != nil && m.Text.Content == "") || (m.Markdown != nil && m.Markdown.Content == "") {
		return RobotMessage{}, contracts.Permanent("empty WeCom message", fmt.Errorf("delivery %s has no text", d.ID))
	}
	return m, nil
}

// Send implements vendor.Client.
func (r *Robot) Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	msg, err := r.BuildMessage(d)
	if err != nil {
		return contracts.Result{}, err
	}
	u := r.Endpoint + "/cgi-bin/webhook/send?key=" + url.QueryEscape(r.Key)
	resp, err := vendor.PostJSON(ctx, r.env.Client(), u, msg, nil, "wecom robot")
	if err != nil {
		return contracts.Result{}, err
	}
	var out apiError
	if err := vendor.DecodeJSON(resp, &out, "wecom robot"); err != nil {
		return contracts.Result{}, err
	}
	if out.ErrCode != 0 {
		return contracts.Result{}, Classify(out.ErrCode, out.ErrMsg)
	}
	return contracts.Result{}, nil
}

// PlainText renders the subject and text of a content as one message.
func PlainText(c domain.Content) string {
	subject := strings.TrimSpace(firstNonEmpty(c.Subject, c.Title))
	text := strings.TrimSpace(firstNonEmpty(c.Text, c.Body, c.Markdown))
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

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

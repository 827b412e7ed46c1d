package notify

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
)

// Limits of a send request.
const (
	MaxRecipients     = 1000
	MaxIdempotencyKey = 255
	maxTemplateCode   = 64
	maxCategory       = 128
	maxTodoKey        = 255
	maxLocale         = 35
	maxUserID         = 128
	maxEmail          = 254
	maxMetaKeys       = 32
	maxMetaKey        = 64
	maxMetaValue      = 1024
	maxFieldErrors    = 50
)

// SendRequest is the body of POST /v1/notifications.
type SendRequest struct {
	Template   string                    `json:"template,omitempty"`
	Content    map[string]domain.Content `json:"content,omitempty"`
	Data       map[string]any            `json:"data,omitempty"`
	Recipients []domain.Recipient        `json:"recipients"`
	Channels   []domain.Channel          `json:"channels,omitempty"`
	Priority   string                    `json:"priority,omitempty"`
	Kind       string                    `json:"kind,omitempty"`
	Category   string                    `json:"category,omitempty"`
	SendAt     string                    `json:"send_at,omitempty"`
	ExpiresAt  string                    `json:"expires_at,omitempty"`
	TodoKey    string                    `json:"todo_key,omitempty"`
	Locale     string                    `json:"locale,omitempty"`
	Fallback   []domain.Channel          `json:"fallback,omitempty"`
	Meta       map[string]string         `json:"meta,omitempty"`
}

// checked is a validated request with its parsed values.
type checked struct {
	priority  domain.Priority
	kind      domain.Kind
	sendAt    time.Time
	expiresAt time.Time
	channels  []domain.Channel
	fallback  []domain.Channel
}

// fieldErrors collects per-field problems, capped so a request with a
// thousand bad recipients still gets a readable answer.
type fieldErrors struct {
	list    []httpx.FieldError
	dropped int
}

func (f *fieldErrors) add(field, reason string) {
	if len(f.list) >= maxFieldErrors {
		f.dropped++
		return
	}
	f.list = append(f.list, httpx.FieldError{Field: field, Reason: reason})
}

func (f *fieldErrors) problem() *httpx.Problem {
	if len(f.list) == 0 {
		return nil
	}
	p := httpx.CodeValidation.Fields(f.list...)
	if f.dropped > 0 {
		p.Detail += fmt.Sprintf(" (%d more not listed)", f.dropped)
	}
	return p
}

// validate checks r by hand (no reflection: this is the accept hot path)
// and returns every bad field at once.
func validate(r *SendRequest, now time.Time) (checked, *httpx.Problem) {
	var fe fieldErrors
	var out checked

	switch {
	case r.Template == "" && len(r.Content) == 0:
		fe.add("template", "is required unless content is given")
	case r.Template != "" && r.Content != nil:
		fe.add("content", "cannot be combined with template: send one of them")
	case r.Template != "":
		if len(r.Template) > maxTemplateCode {
			fe.add("template", fmt.Sprintf("must be at most %d characters", maxTemplateCode))
		}
	default:
		for key, c := range r.Content {
			field := "content." + key
			if key != "*" && !domain.Channel(key).Valid() {
				fe.add(field, "must be \"*\" or a known channel ("+knownChannels()+")")
				continue
			}
			if c.Subject == "" && c.Text == "" && c.HTML == "" && c.Title == "" && c.Body == "" && c.Markdown == "" && c.VendorTemplate == "" {
				fe.add(field, "is empty: give at least one of subject, text, html, title, body, markdown")
			}
			if c.URL != "" && !validURL(c.URL) {
				fe.add(field+".url", "must be an absolute http(s) URL")
			}
		}
	}

	switch n := len(r.Recipients); {
	case n == 0:
		fe.add("recipients", "must have at least 1 item")
	case n > MaxRecipients:
		fe.add("recipients", fmt.Sprintf("must have at most %d items", MaxRecipients))
	default:
		for i := range r.Recipients {
			checkRecipient(&fe, i, &r.Recipients[i])
		}
	}

	out.channels = checkChannels(&fe, "channels", r.Channels)
	out.fallback = checkChannels(&fe, "fallback", r.Fallback)

	var err error
	if out.priority, err = domain.ParsePriority(r.Priority); err != nil {
		fe.add("priority", "must be one of: high, medium, low")
	}
	out.kind = domain.KindNotice
	if r.Kind != "" {
		if out.kind = domain.Kind(r.Kind); !out.kind.Valid() {
			fe.add("kind", "must be one of: notice, reminder, todo")
		}
	}
	if len(r.Category) > maxCategory {
		fe.add("category", fmt.Sprintf("must be at most %d characters", maxCategory))
	}
	switch {
	case out.kind == domain.KindTodo && strings.TrimSpace(r.TodoKey) == "":
		fe.add("todo_key", "is required when kind is todo")
	case out.kind != domain.KindTodo && r.TodoKey != "" && out.kind.Valid():
		fe.add("todo_key", "is only allowed when kind is todo")
	case len(r.TodoKey) > maxTodoKey:
		fe.add("todo_key", fmt.Sprintf("must be at most %d characters", maxTodoKey))
	}
	if r.Locale != "" && !validLocale(r.Locale) {
		fe.add("locale", "must be a language tag such as zh-CN")
	}
	if len(r.Meta) > maxMetaKeys {
		fe.add("meta", fmt.Sprintf("must have at most %d keys", maxMetaKeys))
	} else {
		for k, v := range r.Meta {
			if k == "" || len(k) > maxMetaKey {
				fe.add("meta", fmt.Sprintf("keys must be 1 to %d characters", maxMetaKey))
			} else if len(v) > maxMetaValue {
				fe.add("meta."+k, fmt.Sprintf("must be at most %d characters", maxMetaValue))
			}
		}
	}

	sendOK := true
	if r.SendAt != "" {
		if out.sendAt, err = parseTime(r.SendAt); err != nil {
			fe.add("send_at", "must be an RFC 3339 time such as 2030-01-02T15:04:05Z")
			sendOK = false
		}
	}
	if r.ExpiresAt != "" {
		if out.expiresAt, err = parseTime(r.ExpiresAt); err != nil {
			fe.add("expires_at", "must be an RFC 3339 time such as 2030-01-02T15:04:05Z")
		} else if !out.expiresAt.After(now) {
			fe.add("expires_at", "must be in the future")
		} else if sendOK && !out.sendAt.IsZero() && !out.expiresAt.After(out.sendAt) {
			fe.add("expires_at", "must be after send_at")
		}
	}
	return out, fe.problem()
}

func checkRecipient(fe *fieldErrors, i int, rc *domain.Recipient) {
	set := 0
	for _, v := range [...]string{rc.UserID, rc.GroupID, rc.Email, rc.Phone} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		fe.add(indexed("recipients", i), "needs exactly one of user_id, group_id, email, phone")
		return
	}
	switch {
	case rc.UserID != "":
		if len(rc.UserID) > maxUserID || strings.TrimSpace(rc.UserID) != rc.UserID {
			fe.add(indexed("recipients", i)+".user_id", fmt.Sprintf("must be at most %d characters without surrounding spaces", maxUserID))
		}
	case rc.GroupID != "":
		if len(rc.GroupID) > maxUserID || strings.TrimSpace(rc.GroupID) != rc.GroupID {
			fe.add(indexed("recipients", i)+".group_id", fmt.Sprintf("must be at most %d characters without surrounding spaces", maxUserID))
		}
	case rc.Email != "":
		if !validEmail(rc.Email) {
			fe.add(indexed("recipients", i)+".email", "must be a valid email address")
		}
	default:
		if !validE164(rc.Phone) {
			fe.add(indexed("recipients", i)+".phone", "must be an E.164 phone number such as +8613800138000")
		}
	}
}

func checkChannels(fe *fieldErrors, field string, chs []domain.Channel) []domain.Channel {
	if len(chs) == 0 {
		return nil
	}
	out := chs[:0:0]
	for i, ch := range chs {
		if !ch.Valid() {
			fe.add(indexed(field, i), fmt.Sprintf("unknown channel %q (want one of %s)", ch, knownChannels()))
			continue
		}
		dup := false
		for _, have := range out {
			if have == ch {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, ch)
		}
	}
	return out
}

func indexed(field string, i int) string { return field + "[" + strconv.Itoa(i) + "]" }

var channelList = func() string {
	names := make([]string, len(domain.KnownChannels))
	for i, c := range domain.KnownChannels {
		names[i] = string(c)
	}
	return strings.Join(names, ", ")
}()

func knownChannels() string { return channelList }

// parseTime accepts RFC 3339 with or without fractional seconds.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

// validEmail is a pragmatic check: one @, a non-empty local part of at most
// 64 bytes, a dotted domain of letters, digits, hyphens, no spaces.
func validEmail(s string) bool {
	if len(s) > maxEmail || !utf8.ValidString(s) {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at > 64 || at == len(s)-1 {
		return false
	}
	local, dom := s[:at], s[at+1:]
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c <= ' ' || c == '@' || c == '"' || c == '(' || c == ')' || c == ',' || c == ':' || c == ';' || c == '<' || c == '>' || c == '[' || c == ']' || c == '\\' || c == 0x7f {
			return false
		}
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return false
	}
	labels := strings.Split(dom, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r > 0x7f) {
				return false
			}
		}
	}
	return true
}

// validE164 checks +<country code><number>, 2 to 15 digits, no leading zero.
func validE164(s string) bool {
	if len(s) < 3 || len(s) > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9' {
		return false
	}
	for i := 2; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validLocale accepts BCP 47-like tags: letters, digits and hyphens, starting with a letter.
func validLocale(s string) bool {
	if len(s) > maxLocale || len(s) < 2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	c := s[0]
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func validURL(s string) bool {
	rest, ok := strings.CutPrefix(s, "https://")
	if !ok {
		rest, ok = strings.CutPrefix(s, "http://")
	}
	return ok && rest != "" && rest[0] != '/' && !strings.ContainsAny(s, " \t\r\n")
}

// validIdempotencyKey: 1 to 255 visible ASCII characters.
func validIdempotencyKey(s string) bool {
	if s == "" || len(s) > MaxIdempotencyKey {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

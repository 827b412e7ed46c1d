package profilesvc

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
)

// ValidID reports whether s is a valid user, group or category id:
// 1-128 characters of [A-Za-z0-9_.:@-].
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == '.', c == ':', c == '@', c == '-':
		default:
			return false
		}
	}
	return true
}

const idReason = "must be 1-128 characters of letters, digits and _ . : @ -"

// validCategory: categories follow the id alphabet but at most 64 characters; "*" is reserved.
func validCategory(s string) bool { return len(s) <= 64 && ValidID(s) }

const categoryReason = "must be 1-64 characters of letters, digits and _ . : @ -"

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

// tzCache memoises time.LoadLocation results (imports validate millions of rows).
var tzCache sync.Map // string -> bool

func validTimezone(tz string) bool {
	if tz == "Local" || tz == "" || len(tz) > 64 {
		return false
	}
	if v, ok := tzCache.Load(tz); ok {
		return v.(bool)
	}
	_, err := time.LoadLocation(tz)
	ok := err == nil
	tzCache.Store(tz, ok)
	return ok
}

var localeCache sync.Map // string -> bool

func validLocale(s string) bool {
	if len(s) > 64 {
		return false
	}
	if v, ok := localeCache.Load(s); ok {
		return v.(bool)
	}
	ok := httpx.Validator().Var(s, "bcp47_language_tag") == nil
	localeCache.Store(s, ok)
	return ok
}

func validEmail(s string) bool {
	return len(s) <= 254 && httpx.Validator().Var(s, "email") == nil
}

// validPhone requires E.164 with the leading "+", e.g. +8613800138000.
func validPhone(s string) bool {
	if len(s) < 9 || len(s) > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9' {
		return false
	}
	for i := 2; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func validWebhookURL(s string) bool {
	if len(s) > 2048 {
		return false
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return false
	}
	return u.Hostname() != ""
}

// normalize trims surrounding spaces from every text field.
func (in *UserInput) normalize() {
	in.ID = strings.TrimSpace(in.ID)
	in.Name = strings.TrimSpace(in.Name)
	in.Email = strings.TrimSpace(in.Email)
	in.Phone = strings.TrimSpace(in.Phone)
	in.Locale = strings.TrimSpace(in.Locale)
	in.Timezone = strings.TrimSpace(in.Timezone)
	in.WebhookURL = strings.TrimSpace(in.WebhookURL)
	in.Identities.WeChat = strings.TrimSpace(in.Identities.WeChat)
	in.Identities.WeCom = strings.TrimSpace(in.Identities.WeCom)
	in.Identities.DingTalk = strings.TrimSpace(in.Identities.DingTalk)
	in.Identities.QQ = strings.TrimSpace(in.Identities.QQ)
	if in.Groups != nil { // copied: callers may share one slice between inputs
		gs := make([]string, len(in.Groups))
		for i, g := range in.Groups {
			gs[i] = strings.TrimSpace(g)
		}
		in.Groups = gs
	}
}

// validate checks every field except group existence (which needs the store).
func (in *UserInput) validate(withID bool) fieldErrs {
	var fe fieldErrs
	if withID && !ValidID(in.ID) {
		fe.add("id", idReason)
	}
	if len(in.Name) > MaxNameLen {
		fe.add("name", "must be at most %d characters", MaxNameLen)
	}
	if in.Email != "" && !validEmail(in.Email) {
		fe.add("email", "must be a valid email address")
	}
	if in.Phone != "" && !validPhone(in.Phone) {
		fe.add("phone", "must be an E.164 phone number such as +8613800138000")
	}
	if in.Locale != "" && !validLocale(in.Locale) {
		fe.add("locale", "must be a BCP 47 language tag such as zh-CN")
	}
	if in.Timezone != "" && !validTimezone(in.Timezone) {
		fe.add("timezone", "must be an IANA time zone such as Asia/Shanghai")
	}
	if in.WebhookURL != "" && !validWebhookURL(in.WebhookURL) {
		fe.add("webhook_url", "must be an absolute http or https URL without credentials")
	}
	for _, id := range [...]struct{ name, v string }{
		{"identities.wechat", in.Identities.WeChat}, {"identities.wecom", in.Identities.WeCom},
		{"identities.dingtalk", in.Identities.DingTalk}, {"identities.qq", in.Identities.QQ},
	} {
		if len(id.v) > 128 {
			fe.add(id.name, "must be at most 128 characters")
		}
	}
	if len(in.Groups) > MaxGroupsPerUser {
		fe.add("groups", "must have at most %d items", MaxGroupsPerUser)
	} else {
		seen := make(map[string]bool, len(in.Groups))
		for i, g := range in.Groups {
			switch {
			case !ValidID(g):
				fe.add("groups["+strconv.Itoa(i)+"]", idReason)
			case seen[g]:
				fe.add("groups["+strconv.Itoa(i)+"]", "is listed twice")
			}
			seen[g] = true
		}
	}
	return fe
}

func (in *GroupInput) normalize() {
	in.ID = strings.TrimSpace(in.ID)
	in.Name = strings.TrimSpace(in.Name)
	in.Kind = strings.TrimSpace(in.Kind)
	in.Parent = strings.TrimSpace(in.Parent)
	if in.Kind == "" {
		in.Kind = KindGroup
	}
}

func (in *GroupInput) validate() fieldErrs {
	var fe fieldErrs
	if !ValidID(in.ID) {
		fe.add("id", idReason)
	}
	if len(in.Name) > MaxNameLen {
		fe.add("name", "must be at most %d characters", MaxNameLen)
	}
	if in.Kind != KindGroup && in.Kind != KindModule {
		fe.add("kind", "must be one of: group, module")
	}
	if in.Parent != "" {
		if !ValidID(in.Parent) {
			fe.add("parent", idReason)
		} else if in.Parent == in.ID {
			fe.add("parent", "a group cannot be its own parent")
		}
	}
	return fe
}

// parseClock parses "HH:MM" into minutes after midnight.
func parseClock(s string) (int, bool) {
	if len(s) != 5 || s[2] != ':' {
		return 0, false
	}
	h, err1 := strconv.Atoi(s[:2])
	m, err2 := strconv.Atoi(s[3:])
	if err1 != nil || err2 != nil || h < 0 || h > 23 || m < 0 || m > 59 {
		return 0, false
	}
	return h*60 + m, true
}

func formatClock(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

// prefRow is one stored preference: category "*" holds the channel defaults.
type prefRow struct {
	category string
	channel  string
	allowed  bool
}

// compiled preferences, ready to store.
type compiledPrefs struct {
	rows       []prefRow
	unsub      []string
	quietStart int
	quietEnd   int
}

func (p *Preferences) compile() (compiledPrefs, error) {
	var fe fieldErrs
	out := compiledPrefs{quietStart: -1, quietEnd: -1}
	for _, ch := range sortedKeys(p.Channels) {
		if !domain.Channel(ch).Valid() {
			fe.add("channels."+ch, "is not a known channel")
			continue
		}
		out.rows = append(out.rows, prefRow{"*", ch, p.Channels[ch]})
	}
	if len(p.Categories) > MaxCategories {
		fe.add("categories", "must have at most %d categories", MaxCategories)
	}
	for _, cat := range sortedKeys(p.Categories) {
		if !validCategory(cat) {
			fe.add("categories."+cat, categoryReason)
			continue
		}
		chs := p.Categories[cat]
		for _, ch := range sortedKeys(chs) {
			if !domain.Channel(ch).Valid() {
				fe.add("categories."+cat+"."+ch, "is not a known channel")
				continue
			}
			out.rows = append(out.rows, prefRow{cat, ch, chs[ch]})
		}
	}
	if len(p.Unsubscribed) > MaxUnsubscribed {
		fe.add("unsubscribed", "must have at most %d items", MaxUnsubscribed)
	}
	seen := map[string]bool{}
	for i, cat := range p.Unsubscribed {
		if !validCategory(cat) {
			fe.add("unsubscribed["+strconv.Itoa(i)+"]", categoryReason)
			continue
		}
		if !seen[cat] {
			out.unsub = append(out.unsub, cat)
		}
		seen[cat] = true
	}
	if q := p.QuietHours; q != nil {
		s, ok1 := parseClock(q.Start)
		e, ok2 := parseClock(q.End)
		if !ok1 {
			fe.add("quiet_hours.start", "must be a time of day HH:MM such as 22:00")
		}
		if !ok2 {
			fe.add("quiet_hours.end", "must be a time of day HH:MM such as 07:00")
		}
		if ok1 && ok2 && s == e {
			fe.add("quiet_hours.end", "must differ from start")
		}
		out.quietStart, out.quietEnd = s, e
	}
	return out, fe.problem()
}

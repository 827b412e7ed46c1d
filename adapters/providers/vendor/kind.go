// Package vendor is the common ground of Herald's vendor channels (SMS,
// WeChat, WeCom, DingTalk, QQ): the provider kinds each vendor package
// registers (aliyun_sms, tencent_sms, wechat_oa, ...) with their settings
// schema, the Provider record apps and the config file configure, the
// HTTP helper that classifies vendor failures without leaking credentials,
// and the Router that turns a channel's providers into a contracts.Sender
// (weighted choice, failover, per-provider protect.Guard, client cache).
//
// It imports no vendor package; vendor packages import it and register
// their Kind from init.
package vendor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"herald.dev/adapters/protect"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
)

// Client sends one delivery through one provider account.
type Client interface {
	Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error)
}

// Env is what a kind's constructor may use.
type Env struct {
	HTTP *http.Client
	Now  func() time.Time
	Logf func(format string, args ...any)
}

// Clock returns Now or time.Now.
func (e Env) Clock() func() time.Time {
	if e.Now != nil {
		return e.Now
	}
	return time.Now
}

// Client returns HTTP or http.DefaultClient.
func (e Env) Client() *http.Client {
	if e.HTTP != nil {
		return e.HTTP
	}
	return http.DefaultClient
}

// Field describes one setting of a kind.
type Field struct {
	Key      string
	Required bool
	// Secret settings are masked (all but the last 4 characters) whenever
	// they are shown.
	Secret  bool
	Default string
	Doc     string
}

// Kind is one type of provider, e.g. "aliyun_sms".
type Kind struct {
	Type    string
	Channel domain.Channel
	Title   string
	Fields  []Field
	// Limits are the guard defaults from the vendor's published quotas;
	// the settings rate, burst, breaker_failures and breaker_timeout
	// override them per provider.
	Limits protect.Options
	// New builds a client; it returns a *SettingError for a bad value.
	New func(p Provider, env Env) (Client, error)
	// AddressRequired is false for kinds that ignore Delivery.Address
	// (group robots).
	AddressRequired bool
}

// CommonFields are accepted by every kind.
var CommonFields = []Field{
	{Key: "rate", Doc: "sends per second allowed to this provider (default: the vendor's published quota)"},
	{Key: "burst", Doc: "sends allowed at once (default: the rate)"},
	{Key: "max_wait", Doc: "longest a send waits for the rate limit before it is deferred, e.g. 500ms (default 1s)"},
	{Key: "breaker_failures", Doc: "consecutive failures that open the circuit (default 5)"},
	{Key: "breaker_timeout", Doc: "how long an open circuit stays open, e.g. 30s (default 30s)"},
}

// SettingError names a bad setting.
type SettingError struct {
	Key    string
	Reason string
}

func (e *SettingError) Error() string { return "setting " + e.Key + ": " + e.Reason }

// Invalid returns a *SettingError.
func Invalid(key, format string, args ...any) error {
	return &SettingError{Key: key, Reason: fmt.Sprintf(format, args...)}
}

var (
	kindsMu sync.RWMutex
	kinds   = map[string]Kind{}
)

// Register adds a kind; it panics on a duplicate or incomplete kind. Call it
// from init.
func Register(k Kind) {
	if k.Type == "" || k.Channel == "" || k.New == nil {
		panic("vendor: Register needs Type, Channel and New")
	}
	kindsMu.Lock()
	defer kindsMu.Unlock()
	if _, dup := kinds[k.Type]; dup {
		panic("vendor: kind " + k.Type + " registered twice")
	}
	kinds[k.Type] = k
}

// Lookup returns a registered kind.
func Lookup(typ string) (Kind, bool) {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	k, ok := kinds[typ]
	return k, ok
}

// Types lists the registered kind names, sorted.
func Types() []string {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	out := make([]string, 0, len(kinds))
	for t := range kinds {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// field returns the kind's (or a common) field.
func (k Kind) field(key string) (Field, bool) {
	for _, f := range k.Fields {
		if f.Key == key {
			return f, true
		}
	}
	for _, f := range CommonFields {
		if f.Key == key {
			return f, true
		}
	}
	return Field{}, false
}

// IsSecret reports whether a setting of this kind is a credential.
func (k Kind) IsSecret(key string) bool {
	f, ok := k.field(key)
	return ok && f.Secret
}

// Setting returns p's value for key, or the kind's default.
func (k Kind) Setting(p Provider, key string) string {
	if v := strings.TrimSpace(p.Settings[key]); v != "" {
		return v
	}
	f, _ := k.field(key)
	return f.Default
}

// Validate checks p's settings against the kind: unknown and missing keys,
// the common guard settings, and whatever the kind's constructor rejects.
// Field names are "settings.<key>".
func (k Kind) Validate(p Provider) []httpx.FieldError {
	var out []httpx.FieldError
	keys := make([]string, 0, len(p.Settings))
	for key := range p.Settings {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if _, ok := k.field(key); !ok {
			out = append(out, httpx.FieldError{Field: "settings." + key, Reason: fmt.Sprintf("unknown setting for %s (known: %s)", k.Type, strings.Join(k.keys(), ", "))})
		}
	}
	for _, f := range k.Fields {
		if f.Required && strings.TrimSpace(p.Settings[f.Key]) == "" {
			out = append(out, httpx.FieldError{Field: "settings." + f.Key, Reason: "is required for " + k.Type})
		}
	}
	if _, err := k.GuardOptions(p); err != nil {
		out = append(out, settingFieldError(err))
	}
	if len(out) > 0 {
		return out
	}
	if _, err := k.New(p, Env{}); err != nil {
		out = append(out, settingFieldError(err))
	}
	return out
}

func settingFieldError(err error) httpx.FieldError {
	var se *SettingError
	if errors.As(err, &se) {
		return httpx.FieldError{Field: "settings." + se.Key, Reason: se.Reason}
	}
	return httpx.FieldError{Field: "settings", Reason: err.Error()}
}

func (k Kind) keys() []string {
	var out []string
	for _, f := range k.Fields {
		out = append(out, f.Key)
	}
	for _, f := range CommonFields {
		out = append(out, f.Key)
	}
	return out
}

// GuardOptions returns the kind's limits with p's overrides applied.
func (k Kind) GuardOptions(p Provider) (protect.Options, error) {
	o := k.Limits
	if v := strings.TrimSpace(p.Settings["rate"]); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return o, Invalid("rate", "want a number of sends per second >= 0 (0 = unlimited), got %q", v)
		}
		o.Rate = f
		o.Burst = 0
	}
	if v := strings.TrimSpace(p.Settings["burst"]); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return o, Invalid("burst", "want an integer >= 1, got %q", v)
		}
		o.Burst = n
	}
	if v := strings.TrimSpace(p.Settings["max_wait"]); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > time.Minute {
			return o, Invalid("max_wait", "want a duration between 0s and 1m, got %q", v)
		}
		if d == 0 {
			d = -1 // never wait
		}
		o.MaxWait = d
	}
	if v := strings.TrimSpace(p.Settings["breaker_failures"]); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return o, Invalid("breaker_failures", "want an integer >= 1, got %q", v)
		}
		o.FailureThreshold = n
	}
	if v := strings.TrimSpace(p.Settings["breaker_timeout"]); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > time.Hour {
			return o, Invalid("breaker_timeout", "want a duration between 1s and 1h, got %q", v)
		}
		o.OpenTimeout = d
	}
	return o, nil
}

// EndpointSetting parses a base-URL setting (scheme and host, optional path
// prefix), trimming a trailing slash.
func EndpointSetting(k Kind, p Provider, key string) (string, error) {
	raw := k.Setting(p, key)
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", Invalid(key, "want an http(s) base URL such as %q, got %q", defaultOf(k, key), raw)
	}
	return strings.TrimRight(raw, "/"), nil
}

func defaultOf(k Kind, key string) string {
	f, _ := k.field(key)
	return f.Default
}

// Mask hides all but the last 4 characters of a secret ("****abcd"); values
// of 4 characters or fewer are hidden entirely.
func Mask(v string) string {
	r := []rune(v)
	if len(r) <= 4 {
		return strings.Repeat("*", len(r))
	}
	return strings.Repeat("*", len(r)-4) + string(r[len(r)-4:])
}

// MaskSettings returns a copy of settings with the kind's secrets masked.
// Settings of an unknown kind are all masked.
func MaskSettings(typ string, settings map[string]string) map[string]string {
	k, known := Lookup(typ)
	out := make(map[string]string, len(settings))
	for key, v := range settings {
		if !known || k.IsSecret(key) {
			v = Mask(v)
		}
		out[key] = v
	}
	return out
}

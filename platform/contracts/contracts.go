// Package contracts declares the interfaces that cross module boundaries.
// Modules never import each other: templates-svc implements Renderer,
// profile-svc implements Directory, services implements Inbox, analytics
// implements Tracker, every adapter implements Sender; the herald binary
// wires them together.
package contracts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"herald.dev/platform/domain"
)

// ---- templates ----

// ErrTemplateNotFound means the app has no template with that code (or version).
var ErrTemplateNotFound = errors.New("template not found")

// MissingVariableError names a declared variable absent from the data.
type MissingVariableError struct {
	Variables []string
}

func (e *MissingVariableError) Error() string {
	return fmt.Sprintf("missing template variables: %v", e.Variables)
}

// TemplateInfo describes the version a send will use.
type TemplateInfo struct {
	Code     string
	Version  int
	Category string
	// Channels lists the channels the template has variants for.
	Channels []domain.Channel
}

// Renderer renders stored templates. Implementations cache parsed templates.
type Renderer interface {
	// Check verifies the template exists and that data carries every declared
	// variable; it returns the latest version, which the send records.
	Check(ctx context.Context, appID, code string, data map[string]any) (TemplateInfo, error)
	// Render renders one channel's variant of a version (0 = latest) for a
	// locale, falling back to the template's default locale.
	Render(ctx context.Context, appID, code string, version int, locale string, ch domain.Channel, data map[string]any) (domain.Content, error)
}

// ---- profiles ----

// ErrUserNotFound means the app has no such user; ErrGroupNotFound likewise for groups.
var (
	ErrUserNotFound  = errors.New("user not found")
	ErrGroupNotFound = errors.New("group not found")
)

// QuietHours is a daily window in the user's time zone, in minutes after
// midnight. Start > End means the window wraps past midnight.
type QuietHours struct {
	Start int `json:"start"`
	End   int `json:"end"`
}

// Profile is what the pipeline needs to know about a recipient.
type Profile struct {
	UserID   string
	Name     string
	Email    string
	Phone    string
	Locale   string
	Timezone string
	// Identities: "wechat", "wecom", "dingtalk", "qq" -> the user's id there.
	Identities map[string]string
	// WebhookURL overrides the app's webhook URL for this user.
	WebhookURL string
	// OptOut[category][channel] = true means the user opted out; category "*"
	// applies to every category.
	OptOut map[string]map[domain.Channel]bool
	// OptIn[category][channel] = true records an explicit opt-in (it overrides "*").
	OptIn map[string]map[domain.Channel]bool
	// Unsubscribed categories receive nothing.
	Unsubscribed map[string]bool
	Quiet        *QuietHours
}

// Allows reports whether the user accepts category on ch, and why not.
func (p *Profile) Allows(category string, ch domain.Channel) (bool, string) {
	if p == nil {
		return true, ""
	}
	if category != "" && p.Unsubscribed[category] {
		return false, "unsubscribed from category " + category
	}
	if category != "" {
		if p.OptIn[category][ch] {
			return true, ""
		}
		if p.OptOut[category][ch] {
			return false, fmt.Sprintf("opted out of %s on %s", category, ch)
		}
	}
	if p.OptOut["*"][ch] {
		return false, fmt.Sprintf("opted out of %s", ch)
	}
	return true, ""
}

// QuietUntil returns the end of the quiet period containing now, or the zero
// time when now is outside quiet hours (or the user has none).
func (p *Profile) QuietUntil(now time.Time) time.Time {
	if p == nil || p.Quiet == nil || p.Quiet.Start == p.Quiet.End {
		return time.Time{}
	}
	loc := time.UTC
	if p.Timezone != "" {
		if l, err := time.LoadLocation(p.Timezone); err == nil {
			loc = l
		}
	}
	local := now.In(loc)
	mins := local.Hour()*60 + local.Minute()
	s, e := p.Quiet.Start, p.Quiet.End
	midnight := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, loc)
	at := func(dayOffset, m int) time.Time {
		return midnight.AddDate(0, 0, dayOffset).Add(time.Duration(m) * time.Minute)
	}
	if s < e {
		if mins >= s && mins < e {
			return at(0, e)
		}
		return time.Time{}
	}
	// wraps midnight, e.g. 22:00-07:00
	if mins >= s {
		return at(1, e)
	}
	if mins < e {
		return at(0, e)
	}
	return time.Time{}
}

// Address returns the profile's address on ch ("" when it has none).
// Webhook returns the user's own URL ("" means the app's URL); in-app, console
// and bench address the user id.
func (p *Profile) Address(ch domain.Channel) string {
	switch ch {
	case domain.ChannelEmail:
		return p.Email
	case domain.ChannelSMS:
		return p.Phone
	case domain.ChannelOTP:
		if p.Phone != "" {
			return p.Phone
		}
		return p.Email
	case domain.ChannelWeChat, domain.ChannelWeCom, domain.ChannelDingTalk, domain.ChannelQQ:
		return p.Identities[string(ch)]
	case domain.ChannelWebhook:
		return p.WebhookURL
	case domain.ChannelInApp, domain.ChannelConsole, domain.ChannelBench:
		return p.UserID
	}
	return ""
}

// Directory resolves recipients. Implementations read through a cache.
type Directory interface {
	// Profiles loads the given users of an app; unknown ids are absent from the map.
	Profiles(ctx context.Context, appID string, userIDs []string) (map[string]*Profile, error)
	// GroupMembers streams a group's members (nested groups expanded, each user
	// once) in batches of at most batch profiles; it returns ErrGroupNotFound
	// for an unknown group.
	GroupMembers(ctx context.Context, appID, groupID string, batch int, fn func([]*Profile) error) error
}

// ---- delivery ----

// Delivery is one (message, recipient, channel) hand-off to an adapter.
type Delivery struct {
	ID             string
	AppID          string
	NotificationID string
	UserID         string // "" for direct addresses
	Channel        domain.Channel
	Address        string
	Priority       domain.Priority
	Kind           domain.Kind
	Category       string
	TodoKey        string
	Content        domain.Content
	Data           map[string]any
	Attempt        int
	Profile        *Profile
	CreatedAt      time.Time
}

// Result is what an adapter reports for a successful hand-off.
type Result struct {
	// ProviderID is the vendor's message id, when it returns one.
	ProviderID string
	// Delivered is true when the channel confirms delivery (in-app), false
	// when it only accepted the message (sent).
	Delivered bool
}

// Sender is a channel adapter.
type Sender interface {
	Channel() domain.Channel
	Send(ctx context.Context, d *Delivery) (Result, error)
}

// SendError classifies an adapter failure.
type SendError struct {
	Retryable  bool
	RetryAfter time.Duration // a vendor's requested delay (429 Retry-After), 0 if none
	Reason     string
	Err        error
}

func (e *SendError) Error() string {
	kind := "permanent"
	if e.Retryable {
		kind = "retryable"
	}
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", kind, e.Reason, e.Err)
	}
	return kind + ": " + e.Reason
}

func (e *SendError) Unwrap() error { return e.Err }

// Retryable wraps err as a retryable failure.
func Retryable(reason string, err error, after time.Duration) error {
	return &SendError{Retryable: true, RetryAfter: after, Reason: reason, Err: err}
}

// Permanent wraps err as a permanent failure.
func Permanent(reason string, err error) error {
	return &SendError{Reason: reason, Err: err}
}

// Classify returns whether err should be retried and any requested delay.
// Errors that are not *SendError count as retryable (an adapter bug or an
// unexpected network failure should not lose the message).
func Classify(err error) (retry bool, after time.Duration) {
	var se *SendError
	if errors.As(err, &se) {
		return se.Retryable, se.RetryAfter
	}
	return !errors.Is(err, context.Canceled), 0
}

// ---- inbox ----

// InboxItem is one in-app message in a user's inbox.
type InboxItem struct {
	ID             string
	AppID          string
	UserID         string
	NotificationID string
	DeliveryID     string
	Kind           domain.Kind
	Category       string
	Title          string
	Body           string
	TodoKey        string
	Data           map[string]any
	CreatedAt      time.Time
}

// Inbox stores in-app items and pushes them to live connections. Deliver is
// idempotent on DeliveryID: a redelivered item is neither stored nor pushed twice.
type Inbox interface {
	Deliver(ctx context.Context, item InboxItem) error
}

// ---- tracking ----

// Event types recorded by the tracker.
const (
	EventAccepted  = "accepted"
	EventScheduled = "scheduled"
	EventQueued    = "queued"
	EventSent      = "sent"
	EventDelivered = "delivered"
	EventFailed    = "failed"
	EventRetrying  = "retrying"
	EventSkipped   = "skipped"
	EventExpired   = "expired"
	EventRead      = "read"
	EventDone      = "done"
)

// Event is one state change.
type Event struct {
	AppID          string          `json:"app_id"`
	NotificationID string          `json:"notification_id"`
	DeliveryID     string          `json:"delivery_id,omitempty"`
	UserID         string          `json:"user_id,omitempty"`
	Channel        domain.Channel  `json:"channel,omitempty"`
	Category       string          `json:"category,omitempty"`
	Priority       domain.Priority `json:"priority,omitempty"`
	Type           string          `json:"type"`
	Error          string          `json:"error,omitempty"`
	At             time.Time       `json:"at"`
	// LatencyMS is the time from acceptance to this event, when known.
	LatencyMS int64 `json:"latency_ms,omitempty"`
}

// Tracker records events. Track must not block the hot path: implementations
// buffer and write in batches.
type Tracker interface {
	Track(events ...Event)
}

// NopTracker drops events.
type NopTracker struct{}

// Track implements Tracker.
func (NopTracker) Track(...Event) {}

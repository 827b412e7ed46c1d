// Package domain holds Herald's shared vocabulary: priorities, channels,
// message kinds and delivery states. Every module speaks these types.
package domain

import (
	"fmt"
	"time"
)

// Priority selects the lane a notification travels on.
type Priority string

const (
	PriorityHigh   Priority = "high"
	PriorityMedium Priority = "medium"
	PriorityLow    Priority = "low"
)

// Priorities lists the lanes from most to least urgent.
var Priorities = []Priority{PriorityHigh, PriorityMedium, PriorityLow}

// Valid reports whether p is one of the three lanes.
func (p Priority) Valid() bool {
	return p == PriorityHigh || p == PriorityMedium || p == PriorityLow
}

// Rank is 0 for high, 1 for medium and 2 for low.
func (p Priority) Rank() int {
	switch p {
	case PriorityHigh:
		return 0
	case PriorityLow:
		return 2
	default:
		return 1
	}
}

// Channel names a delivery channel. Adapters register under these names.
type Channel string

const (
	ChannelInApp    Channel = "inapp"
	ChannelEmail    Channel = "email"
	ChannelSMS      Channel = "sms"
	ChannelOTP      Channel = "otp"
	ChannelWebhook  Channel = "webhook"
	ChannelWeChat   Channel = "wechat"
	ChannelWeCom    Channel = "wecom"
	ChannelDingTalk Channel = "dingtalk"
	ChannelQQ       Channel = "qq"
	ChannelConsole  Channel = "console"
	ChannelBench    Channel = "bench"
)

// KnownChannels lists every channel name Herald understands.
var KnownChannels = []Channel{ChannelInApp, ChannelEmail, ChannelSMS, ChannelOTP, ChannelWebhook,
	ChannelWeChat, ChannelWeCom, ChannelDingTalk, ChannelQQ, ChannelConsole, ChannelBench}

// Valid reports whether c is a known channel name.
func (c Channel) Valid() bool {
	for _, k := range KnownChannels {
		if c == k {
			return true
		}
	}
	return false
}

// Kind is the in-app message kind.
type Kind string

const (
	KindNotice   Kind = "notice"
	KindReminder Kind = "reminder"
	KindTodo     Kind = "todo"
)

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return k == KindNotice || k == KindReminder || k == KindTodo }

// MessageStatus is the lifecycle state of a notification as a whole.
type MessageStatus string

const (
	MessageAccepted   MessageStatus = "accepted"   // durable, not yet dispatched
	MessageScheduled  MessageStatus = "scheduled"  // waiting for send_at or a quiet period to end
	MessageQueued     MessageStatus = "queued"     // on a lane
	MessageProcessing MessageStatus = "processing" // deliveries created, some still open
	MessageDone       MessageStatus = "done"       // every delivery reached a final state
	MessageExpired    MessageStatus = "expired"    // expires_at passed before dispatch
	MessageCancelled  MessageStatus = "cancelled"
)

// DeliveryStatus is the state of one (message, recipient, channel) delivery.
type DeliveryStatus string

const (
	DeliveryPending   DeliveryStatus = "pending"
	DeliveryQueued    DeliveryStatus = "queued"
	DeliverySent      DeliveryStatus = "sent"
	DeliveryDelivered DeliveryStatus = "delivered"
	DeliveryFailed    DeliveryStatus = "failed"
	DeliverySkipped   DeliveryStatus = "skipped"
	DeliveryExpired   DeliveryStatus = "expired"
)

// Final reports whether no further attempt will be made for the delivery.
func (s DeliveryStatus) Final() bool {
	switch s {
	case DeliverySent, DeliveryDelivered, DeliveryFailed, DeliverySkipped, DeliveryExpired:
		return true
	}
	return false
}

// Recipient is one entry of a send request: exactly one field is set.
type Recipient struct {
	UserID  string `json:"user_id,omitempty"`
	GroupID string `json:"group_id,omitempty"`
	Email   string `json:"email,omitempty"`
	Phone   string `json:"phone,omitempty"`
}

// String renders the recipient for logs and errors.
func (r Recipient) String() string {
	switch {
	case r.UserID != "":
		return "user:" + r.UserID
	case r.GroupID != "":
		return "group:" + r.GroupID
	case r.Email != "":
		return "email:" + r.Email
	case r.Phone != "":
		return "phone:" + r.Phone
	}
	return "empty"
}

// Content is rendered content for one channel.
type Content struct {
	Subject string `json:"subject,omitempty"` // email subject, in-app title, card title
	Text    string `json:"text,omitempty"`    // plain text body (sms, email text, chat)
	HTML    string `json:"html,omitempty"`    // email html
	Title   string `json:"title,omitempty"`   // in-app title
	Body    string `json:"body,omitempty"`    // in-app body
	// Markdown is a markdown body for chat channels that accept it.
	Markdown string `json:"markdown,omitempty"`
	// URL is an optional link (text card, template message).
	URL string `json:"url,omitempty"`
	// VendorTemplate and Params carry vendor-side template ids (SMS, WeChat).
	VendorTemplate string            `json:"vendor_template,omitempty"`
	Params         map[string]string `json:"params,omitempty"`
}

// Millis converts a time to Unix milliseconds, the storage unit for times.
func Millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// FromMillis converts Unix milliseconds back to a UTC time; 0 is the zero time.
func FromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// ParsePriority parses a priority, defaulting an empty string to medium.
func ParsePriority(s string) (Priority, error) {
	if s == "" {
		return PriorityMedium, nil
	}
	p := Priority(s)
	if !p.Valid() {
		return "", fmt.Errorf("unknown priority %q (want high, medium or low)", s)
	}
	return p, nil
}

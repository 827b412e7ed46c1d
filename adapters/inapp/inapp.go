// Package inapp delivers to the user's in-app inbox (and, through the inbox,
// to live WebSocket connections) via contracts.Inbox.
package inapp

import (
	"context"
	"fmt"

	"herald.dev/adapters/registry"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

func init() {
	registry.Register(domain.ChannelInApp, func(deps registry.Deps) (contracts.Sender, error) {
		if deps.Inbox == nil {
			return nil, fmt.Errorf("inapp: no inbox wired: %w", registry.ErrNotConfigured)
		}
		return New(deps.Inbox), nil
	})
}

var _ contracts.Sender = (*Adapter)(nil)

// Adapter writes inbox items.
type Adapter struct {
	inbox contracts.Inbox
}

// New returns an in-app adapter writing to inbox.
func New(inbox contracts.Inbox) *Adapter { return &Adapter{inbox: inbox} }

// Channel implements contracts.Sender.
func (a *Adapter) Channel() domain.Channel { return domain.ChannelInApp }

// Send stores the item. The inbox is idempotent on the delivery id, so a
// retried delivery is neither stored nor pushed twice. A store failure is
// retryable; a delivery without a user id is permanent.
func (a *Adapter) Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	if err := ctx.Err(); err != nil {
		return contracts.Result{}, fmt.Errorf("inapp send %s: %w", d.ID, err)
	}
	if d.UserID == "" {
		return contracts.Result{}, contracts.Permanent("in-app needs a user_id", fmt.Errorf("delivery %s is addressed to %q", d.ID, d.Address))
	}
	item := Item(d)
	if err := a.inbox.Deliver(ctx, item); err != nil {
		if ctx.Err() != nil {
			return contracts.Result{}, fmt.Errorf("inapp send %s: %w", d.ID, ctx.Err())
		}
		return contracts.Result{}, contracts.Retryable("inbox write failed", fmt.Errorf("deliver %s to %s: %w", d.ID, d.UserID, err), 0)
	}
	return contracts.Result{Delivered: true}, nil
}

// Item builds the inbox item for a delivery: the title is Content.Title
// falling back to Subject, the body Content.Body falling back to Text (then
// Markdown).
func Item(d *contracts.Delivery) contracts.InboxItem {
	title := first(d.Content.Title, d.Content.Subject)
	body := first(d.Content.Body, d.Content.Text, d.Content.Markdown)
	kind := d.Kind
	if kind == "" {
		kind = domain.KindNotice
	}
	return contracts.InboxItem{
		AppID:          d.AppID,
		UserID:         d.UserID,
		NotificationID: d.NotificationID,
		DeliveryID:     d.ID,
		Kind:           kind,
		Category:       d.Category,
		Title:          title,
		Body:           body,
		TodoKey:        d.TodoKey,
		Data:           d.Data,
		CreatedAt:      d.CreatedAt,
	}
}

func first(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

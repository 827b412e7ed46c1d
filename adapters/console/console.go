// Package console is the development channel: it logs what it would send
// (channel, delivery, user, title) and always succeeds.
package console

import (
	"context"
	"fmt"

	"herald.dev/adapters/registry"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

func init() {
	registry.Register(domain.ChannelConsole, func(deps registry.Deps) (contracts.Sender, error) {
		return New(deps.Log), nil
	})
}

var _ contracts.Sender = (*Adapter)(nil)

// Adapter logs deliveries.
type Adapter struct {
	logf func(string, ...any)
}

// New returns a console adapter logging through logf.
func New(logf func(string, ...any)) *Adapter { return &Adapter{logf: logf} }

// Channel implements contracts.Sender.
func (a *Adapter) Channel() domain.Channel { return domain.ChannelConsole }

// Send logs one line per delivery. It fails only when ctx is already done.
func (a *Adapter) Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	if err := ctx.Err(); err != nil {
		return contracts.Result{}, fmt.Errorf("console send %s: %w", d.ID, err)
	}
	user := d.UserID
	if user == "" {
		user = d.Address
	}
	a.logf("console: channel=%s delivery=%s notification=%s app=%s user=%s priority=%s title=%q",
		d.Channel, d.ID, d.NotificationID, d.AppID, user, d.Priority, Title(d.Content))
	return contracts.Result{}, nil
}

// Title picks the best one-line title of a content.
func Title(c domain.Content) string {
	for _, s := range []string{c.Title, c.Subject, c.Text, c.Body, c.Markdown} {
		if s != "" {
			return s
		}
	}
	return ""
}

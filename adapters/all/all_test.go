package all

import (
	"slices"
	"testing"

	"herald.dev/adapters/registry"
	"herald.dev/platform/domain"
)

func TestCoreChannelsRegistered(t *testing.T) {
	names := registry.Names()
	for _, ch := range []domain.Channel{domain.ChannelBench, domain.ChannelConsole, domain.ChannelEmail, domain.ChannelInApp, domain.ChannelWebhook} {
		if !slices.Contains(names, ch) {
			t.Errorf("%s is not registered (registered: %v)", ch, names)
		}
	}
	for _, n := range names {
		if !n.Valid() {
			t.Errorf("registered channel %q is not a known domain.Channel", n)
		}
	}
}

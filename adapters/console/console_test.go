package console

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"

	"herald.dev/adapters/adaptertest"
	"herald.dev/adapters/registry"
	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) logf(f string, a ...any) {
	l.mu.Lock()
	l.l = append(l.l, fmt.Sprintf(f, a...))
	l.mu.Unlock()
}

func (l *lines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.l...)
}

var deliveryRe = regexp.MustCompile(`delivery=(\S+)`)

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{
		Channel: domain.ChannelConsole,
		Setup: func(t *testing.T) *adaptertest.Env {
			var out lines
			senders, err := registry.Build(registry.Deps{Config: config.Defaults(), Logf: out.logf}, domain.ChannelConsole)
			if err != nil {
				t.Fatal(err)
			}
			return &adaptertest.Env{
				Sender:  senders[domain.ChannelConsole],
				Address: func(*contracts.Delivery) {},
				Seen: func() []string {
					var ids []string
					for _, l := range out.all() {
						if m := deliveryRe.FindStringSubmatch(l); m != nil {
							ids = append(ids, m[1])
						}
					}
					return ids
				},
			}
		},
	})
}

func TestSendLogs(t *testing.T) {
	tests := []struct {
		name string
		d    contracts.Delivery
		want []string
	}{
		{"user and title", contracts.Delivery{ID: "d1", UserID: "u1", Channel: "console", Content: domain.Content{Title: "Hi", Subject: "S"}},
			[]string{"delivery=d1", "user=u1", `title="Hi"`, "channel=console"}},
		{"direct address, subject fallback", contracts.Delivery{ID: "d2", Address: "a@b.c", Content: domain.Content{Subject: "主题"}},
			[]string{"user=a@b.c", `title="主题"`}},
		{"text fallback", contracts.Delivery{ID: "d3", Content: domain.Content{Text: "only text"}},
			[]string{`title="only text"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out lines
			res, err := New(out.logf).Send(context.Background(), &tt.d)
			if err != nil || res.Delivered {
				t.Fatalf("Send = %+v, %v", res, err)
			}
			got := out.all()
			if len(got) != 1 {
				t.Fatalf("logged %d lines", len(got))
			}
			for _, w := range tt.want {
				if !strings.Contains(got[0], w) {
					t.Errorf("line %q lacks %q", got[0], w)
				}
			}
		})
	}
}

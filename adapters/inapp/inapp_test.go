package inapp

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"herald.dev/adapters/adaptertest"
	"herald.dev/adapters/registry"
	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

// fakeInbox is idempotent on DeliveryID like the real one, and records every call.
type fakeInbox struct {
	mu     sync.Mutex
	calls  adaptertest.Log
	items  map[string]contracts.InboxItem
	fail   adaptertest.Failer
	gate   adaptertest.Gate
	failed error
}

func newFakeInbox() *fakeInbox { return &fakeInbox{items: map[string]contracts.InboxItem{}} }

func (f *fakeInbox) Deliver(ctx context.Context, item contracts.InboxItem) error {
	f.gate.Wait(ctx)
	if err := ctx.Err(); err != nil {
		return err
	}
	if f.fail.Take() {
		return errors.New("database is locked")
	}
	if f.failed != nil {
		return f.failed
	}
	f.calls.Add(item.DeliveryID)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.items[item.DeliveryID]; !dup {
		f.items[item.DeliveryID] = item
	}
	return nil
}

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{
		Channel: domain.ChannelInApp,
		Setup: func(t *testing.T) *adaptertest.Env {
			inbox := newFakeInbox()
			senders, err := registry.Build(registry.Deps{Config: config.Defaults(), Inbox: inbox}, domain.ChannelInApp)
			if err != nil {
				t.Fatal(err)
			}
			return &adaptertest.Env{
				Sender:     senders[domain.ChannelInApp],
				Address:    func(d *contracts.Delivery) { d.UserID = "user_1"; d.Address = "user_1" },
				Seen:       inbox.calls.IDs,
				FailNext:   inbox.fail.Arm,
				BadAddress: func(d *contracts.Delivery) { d.UserID = ""; d.Address = "someone@example.com" },
				Stall:      inbox.gate.Arm,
			}
		},
	})
}

func TestFactoryNeedsInbox(t *testing.T) {
	_, err := registry.Build(registry.Deps{Config: config.Defaults()}, domain.ChannelInApp)
	if !errors.Is(err, registry.ErrNotConfigured) {
		t.Fatalf("err = %v, want ErrNotConfigured", err)
	}
}

func TestItem(t *testing.T) {
	created := time.Unix(1_700_000_000, 0).UTC()
	base := contracts.Delivery{ID: "dlv_1", AppID: "app_1", NotificationID: "ntf_1", UserID: "u1",
		Kind: domain.KindTodo, Category: "approval", TodoKey: "leave-42", Data: map[string]any{"k": "v"}, CreatedAt: created}
	tests := []struct {
		name        string
		content     domain.Content
		kind        domain.Kind
		title, body string
	}{
		{"title and body", domain.Content{Title: "T", Body: "B", Subject: "S", Text: "X"}, domain.KindTodo, "T", "B"},
		{"subject and text fallback", domain.Content{Subject: "主题", Text: "正文"}, domain.KindTodo, "主题", "正文"},
		{"markdown fallback", domain.Content{Subject: "S", Markdown: "**m**"}, domain.KindTodo, "S", "**m**"},
		{"empty kind is notice", domain.Content{Title: "T"}, "", "T", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := base
			d.Content = tt.content
			d.Kind = tt.kind
			got := Item(&d)
			want := contracts.InboxItem{AppID: "app_1", UserID: "u1", NotificationID: "ntf_1", DeliveryID: "dlv_1",
				Kind: domain.KindTodo, Category: "approval", Title: tt.title, Body: tt.body, TodoKey: "leave-42",
				Data: map[string]any{"k": "v"}, CreatedAt: created}
			if tt.kind == "" {
				want.Kind = domain.KindNotice
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Item = %+v\nwant   %+v", got, want)
			}
		})
	}
}

func TestSend(t *testing.T) {
	tests := []struct {
		name      string
		user      string
		storeErr  error
		delivered bool
		retry     bool
		wantErr   string
	}{
		{"delivered", "u1", nil, true, false, ""},
		{"no user id", "", nil, false, false, "in-app needs a user_id"},
		{"store failure", "u1", errors.New("disk full"), false, true, "disk full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inbox := newFakeInbox()
			inbox.failed = tt.storeErr
			res, err := New(inbox).Send(context.Background(), &contracts.Delivery{ID: "d1", UserID: tt.user, Address: "x@y.z"})
			if tt.wantErr == "" {
				if err != nil || res.Delivered != tt.delivered {
					t.Fatalf("Send = %+v, %v", res, err)
				}
				return
			}
			if err == nil || !contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if retry, _ := contracts.Classify(err); retry != tt.retry {
				t.Fatalf("retry = %v, want %v (%v)", retry, tt.retry, err)
			}
			if tt.storeErr != nil && !errors.Is(err, tt.storeErr) {
				t.Fatalf("err %v does not wrap the store error", err)
			}
		})
	}
}

func TestRedeliveryStoredOnce(t *testing.T) {
	inbox := newFakeInbox()
	a := New(inbox)
	d := &contracts.Delivery{ID: "d1", UserID: "u1", Content: domain.Content{Title: "v1"}}
	for i := range 3 {
		d.Attempt = i + 1
		if _, err := a.Send(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(inbox.items); n != 1 {
		t.Fatalf("inbox holds %d items, want 1", n)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

type fakeSender struct {
	ch     domain.Channel
	closed bool
}

func (f *fakeSender) Channel() domain.Channel { return f.ch }
func (f *fakeSender) Send(context.Context, *contracts.Delivery) (contracts.Result, error) {
	return contracts.Result{}, nil
}
func (f *fakeSender) Close() error { f.closed = true; return nil }

func register(t *testing.T, name domain.Channel, f Factory) {
	t.Helper()
	Register(name, f)
	t.Cleanup(func() { unregister(name) })
}

func ok(name domain.Channel) Factory {
	return func(Deps) (contracts.Sender, error) { return &fakeSender{ch: name}, nil }
}

func TestRegisterPanics(t *testing.T) {
	register(t, "t-dup", ok("t-dup"))
	tests := []struct {
		name string
		ch   domain.Channel
		f    Factory
		want string
	}{
		{"duplicate", "t-dup", ok("t-dup"), "registered twice"},
		{"empty name", "", ok(""), "empty channel name"},
		{"nil factory", "t-nil", nil, "nil factory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), tt.want) {
					t.Fatalf("panic = %v, want one containing %q", r, tt.want)
				}
			}()
			Register(tt.ch, tt.f)
		})
	}
}

func TestNamesSorted(t *testing.T) {
	register(t, "t-b", ok("t-b"))
	register(t, "t-a", ok("t-a"))
	names := Names()
	if !slices.IsSorted(names) {
		t.Fatalf("Names not sorted: %v", names)
	}
	if !slices.Contains(names, "t-a") || !slices.Contains(names, "t-b") {
		t.Fatalf("Names = %v, want t-a and t-b", names)
	}
	if _, found := Lookup("t-a"); !found {
		t.Fatal("Lookup(t-a) not found")
	}
}

func TestBuild(t *testing.T) {
	register(t, "t-ok", ok("t-ok"))
	register(t, "t-off", func(Deps) (contracts.Sender, error) {
		return nil, fmt.Errorf("no host: %w", ErrNotConfigured)
	})
	register(t, "t-liar", ok("other"))
	register(t, "t-broken", func(Deps) (contracts.Sender, error) { return nil, errors.New("boom") })
	register(t, "t-nil", func(Deps) (contracts.Sender, error) { return nil, nil })

	tests := []struct {
		name    string
		names   []domain.Channel
		want    []domain.Channel
		wantErr string
	}{
		{"named", []domain.Channel{"t-ok"}, []domain.Channel{"t-ok"}, ""},
		{"repeated name", []domain.Channel{"t-ok", "t-ok"}, []domain.Channel{"t-ok"}, ""},
		{"unknown", []domain.Channel{"t-nope"}, nil, "unknown channel"},
		{"named but not configured", []domain.Channel{"t-off"}, nil, "channel not configured"},
		{"wrong channel", []domain.Channel{"t-liar"}, nil, `reports channel "other"`},
		{"factory error", []domain.Channel{"t-broken"}, nil, "build adapter t-broken: boom"},
		{"nil sender", []domain.Channel{"t-nil"}, nil, "no sender"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Build(Deps{Config: config.Defaults()}, tt.names...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("built %v, want %v", got, tt.want)
			}
			for _, n := range tt.want {
				if got[n] == nil || got[n].Channel() != n {
					t.Fatalf("built[%s] = %v", n, got[n])
				}
			}
		})
	}
}

func TestBuildAllSkipsNotConfigured(t *testing.T) {
	register(t, "t-ok", ok("t-ok"))
	register(t, "t-off", func(Deps) (contracts.Sender, error) {
		return nil, fmt.Errorf("no host: %w", ErrNotConfigured)
	})
	var logged []string
	deps := Deps{Config: config.Defaults(), Logf: func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }}
	got, err := Build(deps)
	if err != nil {
		t.Fatal(err)
	}
	if got["t-ok"] == nil {
		t.Fatal("t-ok not built")
	}
	if _, built := got["t-off"]; built {
		t.Fatal("t-off built although not configured")
	}
	if len(logged) != 1 || !strings.Contains(logged[0], "t-off disabled") {
		t.Fatalf("logged %q", logged)
	}
	if err := Close(got); err != nil {
		t.Fatal(err)
	}
	if !got["t-ok"].(*fakeSender).closed {
		t.Fatal("Close did not close the sender")
	}
}

type fakeProviders map[string]map[string]string

func (f fakeProviders) ProviderConfig(_ context.Context, appID, provider string) (map[string]string, bool, error) {
	if appID == "broken" {
		return nil, false, errors.New("db down")
	}
	s, ok := f[appID+"/"+provider]
	return s, ok, nil
}

func TestProvider(t *testing.T) {
	cfg := config.Defaults()
	cfg.Providers = map[string]map[string]string{"sms": {"key": "default", "sign": "Herald"}}
	deps := Deps{Config: cfg, Providers: fakeProviders{"app1/sms": {"key": "app1"}}}
	tests := []struct {
		name, app, provider string
		want                map[string]string
		found               bool
		wantErr             bool
	}{
		{"app override replaces defaults", "app1", "sms", map[string]string{"key": "app1"}, true, false},
		{"default", "app2", "sms", map[string]string{"key": "default", "sign": "Herald"}, true, false},
		{"none", "app2", "wechat", nil, false, false},
		{"lookup error", "broken", "sms", nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found, err := deps.Provider(context.Background(), tt.app, tt.provider)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if found != tt.found || fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v %v, want %v %v", got, found, tt.want, tt.found)
			}
		})
	}
}

func TestDepsDefaults(t *testing.T) {
	var d Deps
	if d.Client() == nil || d.Client() != d.Client() {
		t.Fatal("Client() should return one shared client")
	}
	if d.Clock()().IsZero() {
		t.Fatal("Clock() returned the zero time")
	}
	fixed := time.Unix(100, 0)
	d.Now = func() time.Time { return fixed }
	if !d.Clock()().Equal(fixed) {
		t.Fatal("Clock() ignored Now")
	}
}

// Package registry holds the channel adapters by name.
//
// Each adapter package registers a Factory from its init function
// (Caddy-style); the herald binary blank-imports herald.dev/adapters/all and
// calls Build with the dependencies it has wired. Registering the same name
// twice panics, so two packages can never silently shadow each other.
package registry

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"herald.dev/platform/auth"
	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

// ErrNotConfigured is returned (wrapped) by a factory whose channel lacks the
// configuration or dependency it needs (no SMTP host, no inbox, ...). Build
// skips such channels when it builds everything, and fails when the channel
// was asked for by name.
var ErrNotConfigured = errors.New("channel not configured")

// Factory builds a channel adapter from the shared dependencies.
type Factory func(Deps) (contracts.Sender, error)

// AppLookup loads an app (its webhook URL and signing secret). *auth.Store
// implements it.
type AppLookup interface {
	GetApp(ctx context.Context, id string) (auth.App, error)
}

// ProviderLookup returns an app's own settings for a vendor provider ("sms",
// "wechat", ...): found is false when the app has not configured it, in which
// case the defaults under config.Providers apply.
type ProviderLookup interface {
	ProviderConfig(ctx context.Context, appID, provider string) (settings map[string]string, found bool, err error)
}

// HandOffObserver is told about every hand-off of the bench adapter
// (*bench.Recorder implements it); load generators use it to measure
// end-to-end latency.
type HandOffObserver interface {
	Record(d *contracts.Delivery, at time.Time)
}

// Deps are the dependencies a factory may use. Only Config is required;
// factories that need a missing dependency return ErrNotConfigured.
type Deps struct {
	Config config.Config
	// Logf logs one line; nil means log.Printf.
	Logf func(format string, args ...any)
	// Inbox stores in-app items (the inapp adapter).
	Inbox contracts.Inbox
	// Apps loads app settings (the webhook adapter's URL and secret).
	Apps AppLookup
	// Providers loads per-app vendor settings (sms, wechat, wecom, ...).
	Providers ProviderLookup
	// HTTPClient is used by vendor adapters that call fixed vendor
	// endpoints; nil means a shared client with sane timeouts. The webhook
	// adapter always uses its own SSRF-guarded transport.
	HTTPClient *http.Client
	// Now is the clock (tests fix it); nil means time.Now.
	Now func() time.Time
	// Observer receives the bench adapter's hand-offs; nil means the bench
	// adapter keeps its own recorder.
	Observer HandOffObserver
}

// Log logs through Logf, or the standard logger when it is nil.
func (d Deps) Log(format string, args ...any) {
	if d.Logf != nil {
		d.Logf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// Clock returns Now, or time.Now when it is nil.
func (d Deps) Clock() func() time.Time {
	if d.Now != nil {
		return d.Now
	}
	return time.Now
}

var (
	defaultClientOnce sync.Once
	defaultClient     *http.Client
)

// Client returns HTTPClient, or a shared client (30 s timeout, pooled
// keep-alive connections) when it is nil.
func (d Deps) Client() *http.Client {
	if d.HTTPClient != nil {
		return d.HTTPClient
	}
	defaultClientOnce.Do(func() {
		tr := &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
		defaultClient = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	})
	return defaultClient
}

// Provider returns the settings for a vendor provider as seen by an app: the
// app's own settings when it has configured the provider (they replace the
// defaults as a whole, so credentials of two accounts are never mixed),
// otherwise config.Providers[provider]. found is false when neither exists.
func (d Deps) Provider(ctx context.Context, appID, provider string) (settings map[string]string, found bool, err error) {
	if d.Providers != nil && appID != "" {
		s, ok, err := d.Providers.ProviderConfig(ctx, appID, provider)
		if err != nil {
			return nil, false, fmt.Errorf("provider %s for app %s: %w", provider, appID, err)
		}
		if ok {
			return s, true, nil
		}
	}
	s, ok := d.Config.Providers[provider]
	return s, ok, nil
}

var (
	mu        sync.RWMutex
	factories = map[domain.Channel]Factory{}
)

// Register adds a factory under name. It panics on an empty name, a nil
// factory or a name registered twice; call it from init.
func Register(name domain.Channel, f Factory) {
	if name == "" {
		panic("registry: Register with an empty channel name")
	}
	if f == nil {
		panic("registry: Register " + string(name) + " with a nil factory")
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := factories[name]; dup {
		panic("registry: channel " + string(name) + " registered twice")
	}
	factories[name] = f
}

// Lookup returns the factory registered under name.
func Lookup(name domain.Channel) (Factory, bool) {
	mu.RLock()
	defer mu.RUnlock()
	f, ok := factories[name]
	return f, ok
}

// Names lists the registered channels, sorted.
func Names() []domain.Channel {
	mu.RLock()
	out := make([]domain.Channel, 0, len(factories))
	for n := range factories {
		out = append(out, n)
	}
	mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Build builds the named adapters. With no names it builds every registered
// adapter and leaves out (logging why) those whose factory reports
// ErrNotConfigured; a named channel that is unknown, not configured or fails
// to build is an error. A built adapter must report the channel it was
// registered under.
func Build(deps Deps, names ...domain.Channel) (map[domain.Channel]contracts.Sender, error) {
	all := len(names) == 0
	if all {
		names = Names()
	}
	out := make(map[domain.Channel]contracts.Sender, len(names))
	for _, name := range names {
		if _, done := out[name]; done {
			continue
		}
		f, ok := Lookup(name)
		if !ok {
			return nil, fmt.Errorf("build adapter %s: unknown channel (registered: %v)", name, Names())
		}
		s, err := f(deps)
		if err != nil {
			if all && errors.Is(err, ErrNotConfigured) {
				deps.Log("adapters: %s disabled: %v", name, err)
				continue
			}
			return nil, fmt.Errorf("build adapter %s: %w", name, err)
		}
		if s == nil {
			return nil, fmt.Errorf("build adapter %s: factory returned no sender", name)
		}
		if got := s.Channel(); got != name {
			return nil, fmt.Errorf("build adapter %s: sender reports channel %q", name, got)
		}
		out[name] = s
	}
	return out, nil
}

// unregister removes a name; tests use it to keep the global map clean.
func unregister(name domain.Channel) {
	mu.Lock()
	delete(factories, name)
	mu.Unlock()
}

// Close closes every sender that holds resources (implements io.Closer,
// e.g. the email adapter's SMTP connection pool) and joins their errors.
func Close(senders map[domain.Channel]contracts.Sender) error {
	var errs []error
	for name, s := range senders {
		if c, ok := s.(interface{ Close() error }); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close adapter %s: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

package vendor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"herald.dev/adapters/protect"
	"herald.dev/adapters/registry"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

// DataProvider is the Delivery.Data key that pins a delivery to one named
// provider of its channel (e.g. a WeCom robot rather than the WeCom app).
const DataProvider = "provider"

// RouterOptions tune a Router.
type RouterOptions struct {
	// Failover tries the channel's next provider when one fails retryably,
	// is throttled, has its circuit open or reports a provider fault. Only
	// sound where an address means the same thing at every provider (SMS:
	// a phone number); an openid or userid belongs to one account.
	Failover bool
	// Chooser returns a number in [0, n); it picks providers by weight.
	// Default: math/rand/v2.IntN.
	Chooser func(n int) int
	// MaxClients bounds the cache of built clients (default 4096).
	MaxClients int
}

// Router is the contracts.Sender of one vendor channel. For each delivery
// it resolves the app's providers for the channel (the app's own, else the
// config defaults), picks one by weight, sends through that provider's
// guard and, with Failover, moves on to the next provider while failures
// are worth it.
type Router struct {
	ch       domain.Channel
	deps     registry.Deps
	defaults []Provider
	opt      RouterOptions

	mu      sync.Mutex
	clients map[string]*entry
}

type entry struct {
	fp     string
	client Client
	guard  *protect.Guard
	err    error
	used   time.Time
}

// NewRouter builds the router of channel ch. It fails on a malformed
// config default, and with registry.ErrNotConfigured when the channel has
// no default provider and no per-app provider store is wired.
func NewRouter(ch domain.Channel, deps registry.Deps, opt RouterOptions) (*Router, error) {
	if opt.Chooser == nil {
		opt.Chooser = rand.IntN
	}
	if opt.MaxClients <= 0 {
		opt.MaxClients = 4096
	}
	all, err := ParseDefaults(deps.Config.Providers)
	if err != nil {
		return nil, err
	}
	var defaults []Provider
	for _, p := range all {
		if p.Channel() == ch {
			defaults = append(defaults, p)
		}
	}
	if len(defaults) == 0 {
		if _, ok := deps.Providers.(Lister); !ok {
			return nil, fmt.Errorf("%s: no provider of types %s in config providers and no per-app provider store: %w",
				ch, strings.Join(TypesFor(ch), ", "), registry.ErrNotConfigured)
		}
	}
	return &Router{ch: ch, deps: deps, defaults: defaults, opt: opt, clients: map[string]*entry{}}, nil
}

// TypesFor lists the kinds serving ch.
func TypesFor(ch domain.Channel) []string {
	var out []string
	for _, t := range Types() {
		if k, _ := Lookup(t); k.Channel == ch {
			out = append(out, t)
		}
	}
	return out
}

// Channel implements contracts.Sender.
func (r *Router) Channel() domain.Channel { return r.ch }

// Providers returns the providers serving an app on this channel, sorted by
// name: the app's own when it has any for the channel, else the defaults.
func (r *Router) Providers(ctx context.Context, appID string) ([]Provider, error) {
	if l, ok := r.deps.Providers.(Lister); ok && appID != "" {
		own, err := l.AppProviders(ctx, appID)
		if err != nil {
			return nil, err
		}
		var mine []Provider
		for _, p := range own {
			if p.Channel() == r.ch {
				mine = append(mine, p)
			}
		}
		if len(mine) > 0 {
			sort.Slice(mine, func(i, j int) bool { return mine[i].Name < mine[j].Name })
			return mine, nil
		}
	}
	return r.defaults, nil
}

// Send implements contracts.Sender.
func (r *Router) Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	if err := ctx.Err(); err != nil {
		return contracts.Result{}, fmt.Errorf("%s send %s: %w", r.ch, d.ID, err)
	}
	provs, err := r.Providers(ctx, d.AppID)
	if err != nil {
		if ctx.Err() != nil {
			return contracts.Result{}, fmt.Errorf("%s send %s: %w", r.ch, d.ID, ctx.Err())
		}
		return contracts.Result{}, contracts.Retryable("load "+string(r.ch)+" providers", err, 0)
	}
	if len(provs) == 0 {
		return contracts.Result{}, contracts.Permanent(fmt.Sprintf("no %s provider configured", r.ch),
			fmt.Errorf("app %s has no provider of types %s and there is no default", d.AppID, strings.Join(TypesFor(r.ch), ", ")))
	}
	if pin, _ := d.Data[DataProvider].(string); pin != "" {
		var found []Provider
		for _, p := range provs {
			if p.Name == pin {
				found = append(found, p)
			}
		}
		if len(found) == 0 {
			return contracts.Result{}, contracts.Permanent(fmt.Sprintf("%s provider %q not configured", r.ch, pin), nil)
		}
		provs = found
	} else {
		provs = preferAddressing(provs, strings.TrimSpace(d.Address) != "")
	}
	order := r.Order(provs)
	if !r.opt.Failover {
		order = order[:1]
	}
	var errs []error
	for _, p := range order {
		res, err := r.sendVia(ctx, p, d)
		if err == nil {
			res.ProviderID = p.Name + "/" + res.ProviderID
			return res, nil
		}
		if ctx.Err() != nil {
			return res, err
		}
		errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
		if !protect.ShouldFailover(err) {
			break
		}
	}
	if len(errs) == 1 {
		return contracts.Result{}, errors.Unwrap(errs[0])
	}
	return contracts.Result{}, combine(r.ch, errs)
}

// preferAddressing keeps the providers whose kind matches the delivery: an
// addressed delivery goes to kinds that address people (a WeCom app rather
// than a group robot), an unaddressed one to kinds that need no address.
// When no provider matches, all are kept.
func preferAddressing(provs []Provider, addressed bool) []Provider {
	var keep []Provider
	for _, p := range provs {
		if k, ok := Lookup(p.Type); ok && k.AddressRequired == addressed {
			keep = append(keep, p)
		}
	}
	if len(keep) == 0 {
		return provs
	}
	return keep
}

// combine summarises the failures of every provider tried: retryable if
// any was (with the shortest requested delay), else permanent.
func combine(ch domain.Channel, errs []error) error {
	joined := errors.Join(errs...)
	retry := false
	var after time.Duration
	for _, e := range errs {
		if ok, a := contracts.Classify(e); ok {
			if !retry || (a > 0 && (after == 0 || a < after)) {
				after = a
			}
			retry = true
		}
	}
	reason := fmt.Sprintf("all %d %s providers failed", len(errs), ch)
	if retry {
		return contracts.Retryable(reason, joined, after)
	}
	return contracts.Permanent(reason, joined)
}

func (r *Router) sendVia(ctx context.Context, p Provider, d *contracts.Delivery) (contracts.Result, error) {
	e := r.entry(p)
	if e.err != nil {
		return contracts.Result{}, protect.ProviderFault("provider "+p.Name+" is misconfigured", e.err)
	}
	return e.guard.Do(ctx, func(ctx context.Context) (contracts.Result, error) {
		return e.client.Send(ctx, d)
	})
}

// Guard returns the guard of a provider as this router uses it (nil when
// the provider has not been used or failed to build).
func (r *Router) Guard(p Provider) *protect.Guard {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.clients[cacheKey(p)]; e != nil && e.fp == p.Fingerprint() {
		return e.guard
	}
	return nil
}

func cacheKey(p Provider) string { return p.AppID + "\x00" + p.Name }

// entry returns the cached client and guard of p, building them when p is
// new or its settings changed.
func (r *Router) entry(p Provider) *entry {
	key, fp := cacheKey(p), p.Fingerprint()
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.clients[key]; e != nil && e.fp == fp {
		e.used = now
		return e
	}
	e := &entry{fp: fp, used: now}
	k, ok := Lookup(p.Type)
	if !ok {
		e.err = fmt.Errorf("unknown provider type %q", p.Type)
	} else if o, err := k.GuardOptions(p); err != nil {
		e.err = err
	} else {
		env := Env{HTTP: r.deps.Client(), Now: r.deps.Clock(), Logf: r.deps.Log}
		o.Now = r.deps.Clock()
		e.client, e.err = k.New(p, env)
		e.guard = protect.New(p.Name, o)
	}
	if len(r.clients) >= r.opt.MaxClients {
		r.evictLocked()
	}
	r.clients[key] = e
	return e
}

// evictLocked drops the least recently used half of the cache.
func (r *Router) evictLocked() {
	type kv struct {
		k string
		t time.Time
	}
	all := make([]kv, 0, len(r.clients))
	for k, e := range r.clients {
		all = append(all, kv{k, e.used})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].t.Before(all[j].t) })
	for _, x := range all[:len(all)/2+1] {
		delete(r.clients, x.k)
	}
}

// Order returns provs in the order they are tried: each position drawn by
// weight from the providers not yet placed (weight-0 providers come last,
// by name).
func (r *Router) Order(provs []Provider) []Provider {
	rest := append([]Provider(nil), provs...)
	out := make([]Provider, 0, len(provs))
	for len(rest) > 0 {
		total := 0
		for _, p := range rest {
			total += max(p.Weight, 0)
		}
		if total == 0 {
			return append(out, rest...)
		}
		n := r.opt.Chooser(total)
		i := 0
		for ; i < len(rest); i++ {
			w := max(rest[i].Weight, 0)
			if n < w {
				break
			}
			n -= w
		}
		if i >= len(rest) { // a chooser out of range: take the last weighted one
			for i = len(rest) - 1; i > 0 && rest[i].Weight <= 0; i-- {
			}
		}
		out = append(out, rest[i])
		rest = append(rest[:i], rest[i+1:]...)
	}
	return out
}

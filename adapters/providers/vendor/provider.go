package vendor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"herald.dev/platform/domain"
)

// Provider is one configured vendor account: an app's own (AppID set) or a
// default from the config file (AppID empty).
type Provider struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Weight is the provider's share of its channel's traffic; 0 keeps it
	// as a failover standby only.
	Weight    int               `json:"weight"`
	Settings  map[string]string `json:"settings"`
	AppID     string            `json:"-"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
}

// Fingerprint identifies the provider's effective configuration; a cached
// client is rebuilt when it changes.
func (p Provider) Fingerprint() string {
	keys := make([]string, 0, len(p.Settings))
	for k := range p.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", p.Name, p.Type)
	for _, k := range keys {
		fmt.Fprintf(h, "%s\x00%s\x00", k, p.Settings[k])
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Channel returns the channel the provider's kind serves ("" if unknown).
func (p Provider) Channel() domain.Channel {
	k, ok := Lookup(p.Type)
	if !ok {
		return ""
	}
	return k.Channel
}

// Lister lists an app's own providers. The providers service implements it;
// the router finds it by asserting registry.Deps.Providers to it.
type Lister interface {
	AppProviders(ctx context.Context, appID string) ([]Provider, error)
}

// DefaultWeight applies when a provider names no weight.
const DefaultWeight = 1

// MaxWeight bounds a provider's weight.
const MaxWeight = 1_000_000

// ParseDefault turns one config.Config.Providers entry into a Provider: the
// "type" key selects the kind and "weight" the traffic share; every other
// key is a setting.
func ParseDefault(name string, raw map[string]string) (Provider, error) {
	p := Provider{Name: name, Weight: DefaultWeight, Settings: map[string]string{}}
	for k, v := range raw {
		switch k {
		case "type":
			p.Type = strings.TrimSpace(v)
		case "weight":
			w, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || w < 0 || w > MaxWeight {
				return p, fmt.Errorf("providers.%s.weight: want an integer between 0 and %d, got %q", name, MaxWeight, v)
			}
			p.Weight = w
		default:
			p.Settings[k] = v
		}
	}
	if p.Type == "" {
		return p, fmt.Errorf("providers.%s.type is required (one of %s)", name, strings.Join(Types(), ", "))
	}
	k, ok := Lookup(p.Type)
	if !ok {
		return p, fmt.Errorf("providers.%s.type: unknown type %q (known: %s)", name, p.Type, strings.Join(Types(), ", "))
	}
	if fes := k.Validate(p); len(fes) > 0 {
		var parts []string
		for _, fe := range fes {
			parts = append(parts, fmt.Sprintf("providers.%s.%s: %s", name, strings.TrimPrefix(fe.Field, "settings."), fe.Reason))
		}
		return p, fmt.Errorf("%s", strings.Join(parts, "; "))
	}
	return p, nil
}

// ParseDefaults parses the whole config map, sorted by name.
func ParseDefaults(cfg map[string]map[string]string) ([]Provider, error) {
	names := make([]string, 0, len(cfg))
	for n := range cfg {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]Provider, 0, len(names))
	for _, n := range names {
		p, err := ParseDefault(n, cfg[n])
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

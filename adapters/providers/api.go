package providers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"herald.dev/adapters/protect"
	"herald.dev/adapters/providers/vendor"
	"herald.dev/platform/auth"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
	"herald.dev/platform/ids"
)

// Mount adds the /providers routes to a router that is already under /v1
// behind auth.Middleware.
func (s *Service) Mount(r fiber.Router) {
	r.Get("/providers", s.list)
	r.Post("/providers", s.create)
	r.Get("/providers/:name", s.get)
	r.Put("/providers/:name", s.update)
	r.Delete("/providers/:name", s.delete)
	r.Post("/providers/:name/test", s.test)
}

// View is a provider as the API shows it: secret settings masked.
type View struct {
	Name      string            `json:"name"`
	Type      string            `json:"type"`
	Channel   domain.Channel    `json:"channel"`
	Weight    int               `json:"weight"`
	Settings  map[string]string `json:"settings"`
	Source    string            `json:"source"` // "app" or "default"
	Active    *bool             `json:"active,omitempty"`
	CreatedAt *time.Time        `json:"created_at,omitempty"`
	UpdatedAt *time.Time        `json:"updated_at,omitempty"`
}

func view(p vendor.Provider, source string) View {
	v := View{Name: p.Name, Type: p.Type, Channel: p.Channel(), Weight: p.Weight, Settings: vendor.MaskSettings(p.Type, p.Settings), Source: source}
	if !p.CreatedAt.IsZero() {
		c, u := p.CreatedAt, p.UpdatedAt
		v.CreatedAt, v.UpdatedAt = &c, &u
	}
	return v
}

type createReq struct {
	Name     string            `json:"name" validate:"required,max=64"`
	Type     string            `json:"type" validate:"required,max=32"`
	Weight   *int              `json:"weight" validate:"omitempty,min=0,max=1000000"`
	Settings map[string]string `json:"settings" validate:"required,max=64,dive,keys,max=64,endkeys,max=8192"`
}

type updateReq struct {
	Type     string            `json:"type" validate:"omitempty,max=32"`
	Weight   *int              `json:"weight" validate:"omitempty,min=0,max=1000000"`
	Settings map[string]string `json:"settings" validate:"required,max=64,dive,keys,max=64,endkeys,max=8192"`
}

type testReq struct {
	To       string            `json:"to" validate:"max=256"`
	Text     string            `json:"text" validate:"max=2000"`
	Template string            `json:"template" validate:"max=128"`
	Params   map[string]string `json:"params" validate:"max=32,dive,keys,max=64,endkeys,max=512"`
}

// validate checks a provider against its kind; field names are JSON paths.
func validate(p vendor.Provider) error {
	k, ok := vendor.Lookup(p.Type)
	if !ok {
		return httpx.Invalid("type", "unknown provider type %q (known: %s)", p.Type, strings.Join(vendor.Types(), ", "))
	}
	if fes := k.Validate(p); len(fes) > 0 {
		return httpx.CodeValidation.Fields(fes...)
	}
	return nil
}

func trimSettings(in map[string]string) map[string]string {
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = strings.TrimSpace(v)
	}
	return out
}

func (s *Service) create(c *fiber.Ctx) error {
	var req createReq
	if err := httpx.Bind(c, &req); err != nil {
		return err
	}
	if !NamePattern.MatchString(req.Name) {
		return httpx.Invalid("name", "use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit")
	}
	p := vendor.Provider{Name: req.Name, Type: req.Type, Weight: vendor.DefaultWeight, Settings: trimSettings(req.Settings)}
	if req.Weight != nil {
		p.Weight = *req.Weight
	}
	if err := validate(p); err != nil {
		return err
	}
	out, err := s.Create(c.UserContext(), auth.AppID(c), p)
	if errors.Is(err, ErrExists) {
		return httpx.CodeConflict.New("provider %q already exists: PUT /v1/providers/%s changes it", p.Name, p.Name)
	}
	if err != nil {
		return err
	}
	c.Location("/v1/providers/" + out.Name)
	return c.Status(http.StatusCreated).JSON(view(out, "app"))
}

func (s *Service) list(c *fiber.Ctx) error {
	own, err := s.List(c.UserContext(), auth.AppID(c))
	if err != nil {
		return err
	}
	mine := map[domain.Channel]bool{}
	views := make([]View, 0, len(own))
	for _, p := range own {
		mine[p.Channel()] = true
		views = append(views, view(p, "app"))
	}
	defaults := make([]View, 0, len(s.defaults))
	for _, p := range s.defaults {
		v := view(p, "default")
		active := !mine[p.Channel()]
		v.Active = &active
		defaults = append(defaults, v)
	}
	return c.JSON(fiber.Map{"providers": views, "defaults": defaults})
}

func (s *Service) get(c *fiber.Ctx) error {
	name := c.Params("name")
	p, err := s.Get(c.UserContext(), auth.AppID(c), name)
	if errors.Is(err, ErrNotFound) {
		return httpx.NotFound("provider", name)
	}
	if err != nil {
		return err
	}
	return c.JSON(view(p, "app"))
}

func (s *Service) update(c *fiber.Ctx) error {
	var req updateReq
	if err := httpx.Bind(c, &req); err != nil {
		return err
	}
	name := c.Params("name")
	out, err := s.Update(c.UserContext(), auth.AppID(c), name, func(cur vendor.Provider) (vendor.Provider, error) {
		next := vendor.Provider{Name: cur.Name, Type: cur.Type, Weight: cur.Weight, Settings: trimSettings(req.Settings)}
		if req.Type != "" {
			next.Type = req.Type
		}
		if req.Weight != nil {
			next.Weight = *req.Weight
		}
		// A secret sent back exactly as the API showed it (masked) keeps
		// its stored value.
		if k, ok := vendor.Lookup(next.Type); ok && next.Type == cur.Type {
			for key, v := range next.Settings {
				if old, had := cur.Settings[key]; had && k.IsSecret(key) && v == vendor.Mask(old) {
					next.Settings[key] = old
				}
			}
		}
		if err := validate(next); err != nil {
			return next, err
		}
		return next, nil
	})
	if errors.Is(err, ErrNotFound) {
		return httpx.NotFound("provider", name)
	}
	if err != nil {
		return err
	}
	return c.JSON(view(out, "app"))
}

func (s *Service) delete(c *fiber.Ctx) error {
	name := c.Params("name")
	err := s.Delete(c.UserContext(), auth.AppID(c), name)
	if errors.Is(err, ErrNotFound) {
		return httpx.NotFound("provider", name)
	}
	if err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

// TestTimeout bounds a test send.
const TestTimeout = 20 * time.Second

// test sends one message through the named provider (the app's own, or a
// config default of that name) without the router: no weights, failover,
// rate limit or breaker, so the answer is exactly the vendor's.
func (s *Service) test(c *fiber.Ctx) error {
	var req testReq
	if err := httpx.Bind(c, &req); err != nil {
		return err
	}
	appID, name := auth.AppID(c), c.Params("name")
	p, err := s.Get(c.UserContext(), appID, name)
	if errors.Is(err, ErrNotFound) {
		found := false
		for _, d := range s.defaults {
			if d.Name == name {
				p, found = d, true
			}
		}
		if !found {
			return httpx.NotFound("provider", name)
		}
	} else if err != nil {
		return err
	}
	k, ok := vendor.Lookup(p.Type)
	if !ok {
		return httpx.Invalid("type", "unknown provider type %q", p.Type)
	}
	to := strings.TrimSpace(req.To)
	if k.AddressRequired && to == "" {
		return httpx.Invalid("to", "is required for %s providers (%s)", p.Type, addressHint(k.Channel))
	}
	client, err := k.New(p, vendor.Env{HTTP: s.http, Now: s.now})
	if err != nil {
		return httpx.Invalid("settings", "%v", err)
	}
	text := req.Text
	if text == "" {
		text = fmt.Sprintf("Herald test message from provider %s (%s)", p.Name, p.Type)
	}
	d := &contracts.Delivery{
		ID: ids.New("test"), AppID: appID, Channel: k.Channel, Address: to, Priority: domain.PriorityHigh, Kind: domain.KindNotice,
		Content:   domain.Content{Subject: "Herald test", Text: text, VendorTemplate: req.Template, Params: req.Params},
		Attempt:   1,
		CreatedAt: s.now().UTC(),
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), TestTimeout)
	defer cancel()
	res, err := client.Send(ctx, d)
	if err != nil {
		retry, after := contracts.Classify(err)
		class := "permanent"
		switch {
		case protect.IsProviderFault(err):
			class = "provider_fault"
		case retry:
			class = "retryable"
		}
		body := fiber.Map{
			"type":        "https://herald.dev/problems/provider_test_failed",
			"title":       "The provider did not accept the test message",
			"status":      http.StatusBadGateway,
			"code":        "provider_test_failed",
			"detail":      err.Error(),
			"instance":    c.Path(),
			"request_id":  httpx.RequestID(c),
			"provider":    p.Name,
			"failure":     class,
			"retry_after": int(after / time.Second),
			"delivery_id": d.ID,
		}
		c.Status(http.StatusBadGateway)
		return c.JSON(body, "application/problem+json")
	}
	return c.JSON(fiber.Map{"ok": true, "provider": p.Name, "type": p.Type, "channel": k.Channel, "delivery_id": d.ID, "provider_message_id": res.ProviderID})
}

func addressHint(ch domain.Channel) string {
	switch ch {
	case domain.ChannelSMS:
		return "an E.164 phone number"
	case domain.ChannelWeChat, domain.ChannelQQ:
		return "the user's openid"
	case domain.ChannelWeCom, domain.ChannelDingTalk:
		return "the member's userid"
	}
	return "the recipient's address"
}

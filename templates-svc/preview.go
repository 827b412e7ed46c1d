package templatesvc

import (
	"context"
	"errors"
	"strings"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
)

// PreviewRequest asks for a rendering without sending anything.
type PreviewRequest struct {
	// Data is the variables; declared samples fill the ones it lacks.
	Data map[string]any `json:"data"`
	// Locale selects locale variants (exact tag, then language, then default).
	Locale string `json:"locale"`
	// Channel renders one channel; empty renders every channel the template has.
	Channel domain.Channel `json:"channel"`
	// Version renders a given version; 0 is the latest.
	Version int `json:"version"`
}

// PreviewContent is one channel's rendering and the locale variants it used
// ("default" for the template's default variants).
type PreviewContent struct {
	Locale string `json:"locale"`
	domain.Content
}

// PreviewResult is the rendering of a template version.
type PreviewResult struct {
	Code    string `json:"code"`
	Version int    `json:"version"`
	Locale  string `json:"locale,omitempty"`
	// Data is the data rendered with, samples included.
	Data     map[string]any                    `json:"data"`
	Channels map[domain.Channel]PreviewContent `json:"channels"`
}

// Preview renders a live template's version for the request. Bad input
// (unknown channel, missing variables, an execution error) is a
// *httpx.Problem naming the field; an unknown template or version is ErrNotFound.
func (s *Service) Preview(ctx context.Context, appID, code string, req PreviewRequest) (PreviewResult, error) {
	var fe fieldErrs
	if req.Locale != "" && !validLocale(req.Locale) {
		fe.add("locale", "is not a locale tag such as en, en-US or zh-CN")
	}
	if req.Channel != "" && !req.Channel.Valid() {
		fe.add("channel", "unknown channel %q", req.Channel)
	}
	if req.Version < 0 {
		fe.add("version", "must be a version number (0 or absent for the latest)")
	}
	if err := fe.problem(); err != nil {
		return PreviewResult{}, err
	}
	var c *compiled
	var err error
	if req.Version == 0 {
		c, err = s.latestCompiled(ctx, appID, code)
	} else {
		// the template must be live; any of its versions can be previewed
		if _, err = s.loadLatestVersion(ctx, appID, code); err == nil {
			c, err = s.versionCompiled(ctx, appID, code, req.Version)
		}
	}
	if err != nil {
		return PreviewResult{}, err
	}
	data := make(map[string]any, len(req.Data)+len(c.vars))
	for k, v := range req.Data {
		data[k] = v
	}
	for _, v := range c.vars {
		if cur, ok := data[v.Name]; (!ok || cur == nil) && v.Sample != nil {
			data[v.Name] = v.Sample
		}
	}
	channels := c.info.Channels
	if req.Channel != "" {
		if c.effective(req.Channel) < 0 {
			return PreviewResult{}, httpx.Invalid("channel", "template %q version %d has no %s variant (it has %s)", code, c.info.Version, req.Channel, channelList(c.info.Channels))
		}
		channels = []domain.Channel{req.Channel}
	}
	out := PreviewResult{Code: code, Version: c.info.Version, Locale: req.Locale, Data: data, Channels: map[domain.Channel]PreviewContent{}}
	for _, ch := range channels {
		content, used, err := c.render(ch, req.Locale, data)
		if err != nil {
			return PreviewResult{}, renderProblem(err)
		}
		if used == "" {
			used = "default"
		}
		out.Channels[ch] = PreviewContent{Locale: used, Content: content}
	}
	return out, nil
}

// renderProblem turns a render failure into a client error naming the field.
func renderProblem(err error) error {
	var missing *contracts.MissingVariableError
	var re *RenderError
	switch {
	case errors.As(err, &missing):
		return httpx.Invalid("data", "missing template variables: %s (pass them in data or declare a sample)", strings.Join(missing.Variables, ", "))
	case errors.As(err, &re):
		return httpx.Invalid(re.Field, "%s", re.Reason)
	case errors.Is(err, ErrNoVariant):
		return httpx.Invalid("channel", "%v", err)
	}
	return err
}

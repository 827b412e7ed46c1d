package dashboard

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"
)

var sendFieldNames = []string{"template", "recipients", "channels", "priority", "kind", "todo_key", "category", "locale", "data"}

type sendView struct {
	Fields    []Field
	Channels  []channelBox
	ChanErrs  []string
	Templates []TemplateSummary
	TplErr    *APIError
	Summary   []errorLink
	Err       *APIError
	Result    *SendResult
}

type channelBox struct {
	Name    string
	Checked bool
}

func (d *Dashboard) sendView(r *req, fv formValues, chans []string, fe *fieldErrors) sendView {
	v := sendView{}
	var page Page[TemplateSummary]
	if v.TplErr = r.api.get(apiPath(url.Values{"limit": {"500"}}, "templates"), &page); v.TplErr == nil {
		v.Templates = page.Items
	}
	v.Fields = []Field{
		{Name: "template", Label: "Template code", Value: fv["template"], Required: true, Mono: true, List: "template-codes"},
		{Name: "recipients", Label: "Recipients", Type: "textarea", Rows: 4, Value: fv["recipients"], Required: true, Mono: true,
			Hint: "One per line: a user id, user:ID, group:ID, an email address (email:…) or a phone number in E.164 (phone:+86…)."},
		{Name: "priority", Label: "Priority", Type: "select", Value: fv["priority"], Options: options("default (medium)", priorities)},
		{Name: "kind", Label: "Kind", Type: "select", Value: fv["kind"], Options: options("default (notice)", kinds)},
		{Name: "todo_key", Label: "To-do key", Value: fv["todo_key"], Hint: "Required when kind is todo."},
		{Name: "category", Label: "Category", Value: fv["category"], Hint: "Optional; defaults to the template's."},
		{Name: "locale", Label: "Locale", Value: fv["locale"], Hint: "Optional, e.g. zh-CN."},
		{Name: "data", Label: "Data (JSON object)", Type: "textarea", Rows: 5, Value: fv["data"], Mono: true, Hint: "The template's variables."},
	}
	for i := range v.Fields {
		v.Fields[i].Errors = fe.get(v.Fields[i].Name)
	}
	for _, ch := range channelNames {
		v.Channels = append(v.Channels, channelBox{Name: ch, Checked: slices.Contains(chans, ch)})
	}
	v.ChanErrs = fe.get("channels")
	v.Summary = fe.summary(sendFieldNames)
	return v
}

func (d *Dashboard) sendForm(r *req) error {
	fv := formValues{"template": r.c.Query("template"), "data": "{}"}
	return r.render(fiber.StatusOK, "Send", "send", sendPage(d.sendView(r, fv, nil, nil)))
}

// send posts a test notification.
func (d *Dashboard) send(r *req) error {
	c := r.c
	fv := formValues{}
	for _, n := range sendFieldNames {
		fv[n] = strings.TrimSpace(strings.ReplaceAll(c.FormValue(n), "\r\n", "\n"))
	}
	var chans []string
	for _, b := range c.Request().PostArgs().PeekMulti("channels") {
		chans = append(chans, string(b))
	}
	fe := newFieldErrors(sendFieldNames, nil)
	body := map[string]any{"template": fv["template"], "recipients": parseRecipients(fv["recipients"])}
	if len(chans) > 0 {
		body["channels"] = chans
	}
	for _, n := range []string{"priority", "kind", "todo_key", "category", "locale"} {
		if fv[n] != "" {
			body[n] = fv[n]
		}
	}
	if fv["data"] != "" {
		var m map[string]any
		if err := json.Unmarshal([]byte(fv["data"]), &m); err != nil || m == nil {
			fe.add("data", "must be a JSON object"+jsonErr(err))
		} else if len(m) > 0 {
			body["data"] = m
		}
	}
	status := fiber.StatusOK
	var res SendResult
	var err *APIError
	if !fe.any() {
		if err = r.api.do(http.MethodPost, apiPath(nil, "notifications"), body, &res); err != nil {
			fe = newFieldErrors(sendFieldNames, err.FieldErrors())
			status = statusFor(err, status)
		}
	} else {
		status = fiber.StatusUnprocessableEntity
	}
	v := d.sendView(r, fv, chans, fe)
	v.Err = err
	if err == nil && !fe.any() {
		v.Result = &res
		status = fiber.StatusAccepted
	}
	return r.render(status, "Send", "send", sendPage(v))
}

// parseRecipients reads one recipient per line: "user:", "group:", "email:"
// or "phone:" prefixes, else an address with "@" is an email, one starting
// with "+" a phone number, anything else a user id.
func parseRecipients(s string) []Recipient {
	out := []Recipient{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		kind, val, ok := strings.Cut(line, ":")
		val = strings.TrimSpace(val)
		switch {
		case ok && kind == "user":
			out = append(out, Recipient{UserID: val})
		case ok && kind == "group":
			out = append(out, Recipient{GroupID: val})
		case ok && kind == "email":
			out = append(out, Recipient{Email: val})
		case ok && kind == "phone":
			out = append(out, Recipient{Phone: val})
		case strings.Contains(line, "@") && !strings.ContainsAny(line, " :"):
			out = append(out, Recipient{Email: line})
		case strings.HasPrefix(line, "+"):
			out = append(out, Recipient{Phone: line})
		default:
			out = append(out, Recipient{UserID: line})
		}
	}
	return out
}

package dashboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// variantSpec describes one channel's variant form: its fields in the
// order the form shows them.
type variantSpec struct {
	Channel string
	Label   string
	Fields  []variantField
}

type variantField struct {
	Key      string
	Label    string
	Textarea bool
	Params   bool // key=value lines, sent as an object
	Hint     string
}

var chatFields = []variantField{
	{Key: "title", Label: "Title"}, {Key: "text", Label: "Text", Textarea: true},
	{Key: "markdown", Label: "Markdown", Textarea: true}, {Key: "url", Label: "URL"},
	{Key: "vendor_template", Label: "Vendor template id"},
	{Key: "params", Label: "Vendor template params", Textarea: true, Params: true, Hint: "One key=value per line; each value is a template."},
}

// variantSpecs are the template variants the API knows (templates.md).
var variantSpecs = []variantSpec{
	{"email", "Email", []variantField{{Key: "subject", Label: "Subject", Hint: "Required for email."}, {Key: "text", Label: "Text body", Textarea: true}, {Key: "html", Label: "HTML body", Textarea: true, Hint: "html/template: values are escaped."}}},
	{"sms", "SMS", []variantField{{Key: "text", Label: "Text", Textarea: true}, {Key: "vendor_template", Label: "Vendor template id"}, {Key: "params", Label: "Vendor template params", Textarea: true, Params: true, Hint: "One key=value per line; each value is a template."}}},
	{"inapp", "In-app", []variantField{{Key: "title", Label: "Title"}, {Key: "body", Label: "Body", Textarea: true}}},
	{"chat", "Chat (every chat channel without its own variant)", chatFields},
	{"wechat", "WeChat", chatFields},
	{"wecom", "WeCom", chatFields},
	{"dingtalk", "DingTalk", chatFields},
	{"qq", "QQ", chatFields},
	{"otp", "One-time password", []variantField{{Key: "text", Label: "Text", Textarea: true, Hint: "Required for otp."}, {Key: "subject", Label: "Subject (email codes)"}}},
	{"webhook", "Webhook", []variantField{{Key: "body", Label: "Body", Textarea: true, Hint: "For example {{json .}}"}}},
}

func variantInput(channel, key string) string { return "variants." + channel + "." + key }

// templateFieldNames are every control (and group) of the template form, in
// page order, for placing API errors.
func templateFieldNames() []string {
	names := []string{"code", "name", "category", "variants"}
	for _, s := range variantSpecs {
		names = append(names, "variants."+s.Channel)
		for _, f := range s.Fields {
			names = append(names, variantInput(s.Channel, f.Key))
		}
	}
	return append(names, "locales", "variables", "version")
}

// templateForm is the create / edit form.
type templateForm struct {
	Editing  bool
	Code     string
	Version  int // the version being edited (PUT's optimistic check)
	Derived  bool
	Basic    []Field
	Variants []variantGroup
	Locales  Field
	Vars     Field
	Errs     *fieldErrors
	Summary  []errorLink
	Err      *APIError
	FromOld  int // editing from an older version
}

type variantGroup struct {
	Channel string
	Label   string
	Open    bool
	Errors  []string
	Fields  []Field
}

// formValues are the submitted (or loaded) values by control name.
type formValues map[string]string

func (fv formValues) buildForm(editing bool, code string, version int, fe *fieldErrors) templateForm {
	f := templateForm{Editing: editing, Code: code, Version: version, Errs: fe}
	codeField := Field{Name: "code", Label: "Code", Value: fv["code"], Required: true, Mono: true,
		Hint: "1-64 characters of a-z, 0-9, _ . - ; never changes."}
	if !editing {
		f.Basic = append(f.Basic, codeField)
	}
	f.Basic = append(f.Basic,
		Field{Name: "name", Label: "Name", Value: fv["name"], Required: true},
		Field{Name: "category", Label: "Category", Value: fv["category"], Hint: "Optional; preferences can opt users out per category."},
	)
	for i := range f.Basic {
		f.Basic[i].Errors = fe.get(f.Basic[i].Name)
	}
	for _, s := range variantSpecs {
		g := variantGroup{Channel: s.Channel, Label: s.Label, Errors: fe.get("variants." + s.Channel)}
		for _, vf := range s.Fields {
			name := variantInput(s.Channel, vf.Key)
			fld := Field{Name: name, Label: vf.Label, Value: fv[name], Hint: vf.Hint, Errors: fe.get(name), Mono: true}
			if vf.Textarea {
				fld.Type, fld.Rows = "textarea", 4
			}
			if fld.Value != "" || len(fld.Errors) > 0 {
				g.Open = true
			}
			g.Fields = append(g.Fields, fld)
		}
		if len(g.Errors) > 0 {
			g.Open = true
		}
		f.Variants = append(f.Variants, g)
	}
	f.Locales = Field{Name: "locales", Label: "Locales (JSON)", Type: "textarea", Rows: 6, Mono: true, Value: fv["locales"], Errors: fe.get("locales"),
		Hint: `Optional per-locale overrides, e.g. {"zh-CN": {"email": {"subject": "…", "text": "…"}}}.`}
	f.Vars = Field{Name: "variables", Label: "Variables (JSON)", Type: "textarea", Rows: 6, Mono: true, Value: fv["variables"], Errors: fe.get("variables"),
		Hint: `Optional, e.g. [{"name": "order_id", "sample": "A-1001"}]; leave empty to derive them from the templates (all required).`}
	f.Summary = fe.summary(templateFieldNames())
	return f
}

// valuesOf loads a template into form values.
func valuesOf(t *Template) formValues {
	fv := formValues{"code": t.Code, "name": t.Name, "category": t.Category}
	for ch, fields := range t.Variants {
		for k, raw := range fields {
			fv[variantInput(ch, k)] = jsonString(raw)
		}
	}
	if len(t.Locales) > 0 {
		b, _ := json.Marshal(t.Locales)
		fv["locales"] = prettyJSON(b)
	}
	if !t.VariablesDerived {
		if s := prettyJSON(t.Variables); s != "[]" {
			fv["variables"] = s
		}
	}
	return fv
}

// readTemplateForm reads the posted form into values and the API body,
// noting what cannot be sent (bad JSON, a params line without "=").
func readTemplateForm(c *fiber.Ctx, editing bool, code string) (formValues, map[string]any, *fieldErrors) {
	fv := formValues{}
	fe := newFieldErrors(nil, nil)
	get := func(name string) string {
		v := strings.ReplaceAll(c.FormValue(name), "\r\n", "\n")
		fv[name] = v
		return v
	}
	body := map[string]any{}
	if editing {
		body["code"] = code
	} else {
		body["code"] = strings.TrimSpace(get("code"))
	}
	body["name"] = strings.TrimSpace(get("name"))
	if cat := strings.TrimSpace(get("category")); cat != "" {
		body["category"] = cat
	}
	variants := map[string]any{}
	for _, s := range variantSpecs {
		fields := map[string]any{}
		for _, vf := range s.Fields {
			name := variantInput(s.Channel, vf.Key)
			val := get(name)
			if strings.TrimSpace(val) == "" {
				continue
			}
			if vf.Params {
				m, err := parseParams(val)
				if err != "" {
					fe.add(name, err)
					continue
				}
				fields[vf.Key] = m
				continue
			}
			fields[vf.Key] = val
		}
		if len(fields) > 0 {
			variants[s.Channel] = fields
		}
	}
	body["variants"] = variants
	if s := strings.TrimSpace(get("locales")); s != "" {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil || m == nil {
			fe.add("locales", "must be a JSON object of locale tag → variants"+jsonErr(err))
		} else {
			body["locales"] = m
		}
	}
	if s := strings.TrimSpace(get("variables")); s != "" {
		var a []any
		if err := json.Unmarshal([]byte(s), &a); err != nil || a == nil {
			fe.add("variables", "must be a JSON array of variables"+jsonErr(err))
		} else {
			body["variables"] = a
		}
	}
	if editing {
		if n, err := strconv.Atoi(c.FormValue("version")); err == nil && n > 0 {
			body["version"] = n
		}
	}
	return fv, body, fe
}

func jsonErr(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}

// parseParams reads "key=value" lines.
func parseParams(s string) (map[string]string, string) {
	m := map[string]string{}
	for i, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Sprintf("line %d: write key=value", i+1)
		}
		m[k] = strings.TrimSpace(v)
	}
	return m, ""
}

type templatesView struct {
	Category Field
	Items    []TemplateSummary
	Next     string
	First    string
	Err      *APIError
}

func (d *Dashboard) templates(r *req) error {
	c := r.c
	cat := strings.TrimSpace(c.Query("category"))
	q := url.Values{"limit": {"50"}}
	if cat != "" {
		q.Set("category", cat)
	}
	if cur := c.Query("cursor"); cur != "" {
		q.Set("cursor", cur)
	}
	v := templatesView{Category: Field{Name: "category", Label: "Category", Value: cat}}
	var page Page[TemplateSummary]
	if v.Err = r.api.get(apiPath(q, "templates"), &page); v.Err == nil {
		v.Items = page.Items
		if page.NextCursor != "" {
			nq := pageQuery(c, []string{"category"})
			nq.Set("cursor", page.NextCursor)
			v.Next = d.link("/templates", nq)
		}
	} else {
		v.Category.Errors = newFieldErrors([]string{"category"}, v.Err.FieldErrors()).get("category")
	}
	if c.Query("cursor") != "" {
		v.First = d.link("/templates", pageQuery(c, []string{"category"}))
	}
	return r.render(statusFor(v.Err, fiber.StatusOK), "Templates", "templates", templatesPage(v))
}

type templateView struct {
	Code       string
	T          *Template
	Err        *APIError
	Old        bool // an older version, not the latest
	Vars       []Variable
	VarsErr    string
	Preview    previewForm
	PreviewRes *Preview
	PreviewErr *APIError
	Delete     Field
	DeleteErr  *APIError
}

type previewForm struct {
	Data    Field
	Locale  Field
	Channel Field
	Summary []errorLink
}

func (d *Dashboard) loadTemplate(r *req, code string, version int) templateView {
	v := templateView{Code: code, Old: version > 0}
	var t Template
	p := apiPath(nil, "templates", code)
	if version > 0 {
		p = apiPath(nil, "templates", code, "versions", strconv.Itoa(version))
	}
	if v.Err = r.api.get(p, &t); v.Err == nil {
		v.T = &t
		if len(bytes.TrimSpace(t.Variables)) > 0 && string(bytes.TrimSpace(t.Variables)) != "null" {
			if err := json.Unmarshal(t.Variables, &v.Vars); err != nil {
				v.VarsErr = "The variables could not be read: " + err.Error()
			}
		}
	}
	v.Preview = newPreviewForm(formValues{"data": "{}"}, nil, v.T)
	v.Delete = Field{Name: "confirm", Label: "Yes, delete " + code}
	return v
}

func newPreviewForm(fv formValues, fe *fieldErrors, t *Template) previewForm {
	chans := []string{}
	if t != nil {
		chans = t.Channels
	}
	p := previewForm{
		Data: Field{Name: "data", Label: "Sample data (JSON object)", Type: "textarea", Rows: 5, Mono: true, Value: fv["data"],
			Hint: "Variables you leave out are filled with their declared samples."},
		Locale:  Field{Name: "locale", Label: "Locale", Value: fv["locale"], Hint: "Optional, e.g. zh-CN."},
		Channel: Field{Name: "channel", Label: "Channel", Type: "select", Value: fv["channel"], Options: options("every channel", chans)},
	}
	p.Data.Errors, p.Locale.Errors, p.Channel.Errors = fe.get("data"), fe.get("locale"), fe.get("channel")
	p.Summary = fe.summary([]string{"data", "locale", "channel"})
	return p
}

// template shows the latest version with the preview form.
func (d *Dashboard) template(r *req) error {
	code := param(r.c, "code")
	v := d.loadTemplate(r, code, 0)
	return r.render(statusFor(v.Err, fiber.StatusOK), "Template "+code, "templates", templatePage(v))
}

func (d *Dashboard) templateVersion(r *req) error {
	code := param(r.c, "code")
	n, err := strconv.Atoi(r.c.Params("n"))
	if err != nil || n < 1 {
		return r.render(fiber.StatusNotFound, "Not found", "templates", messagePage("Not found", "A template version is a whole number from 1."))
	}
	v := d.loadTemplate(r, code, n)
	return r.render(statusFor(v.Err, fiber.StatusOK), fmt.Sprintf("Template %s v%d", code, n), "templates", templatePage(v))
}

// previewTemplate renders the template with the posted sample data.
func (d *Dashboard) previewTemplate(r *req) error {
	c := r.c
	code := param(c, "code")
	v := d.loadTemplate(r, code, 0)
	fv := formValues{"data": c.FormValue("data"), "locale": strings.TrimSpace(c.FormValue("locale")), "channel": c.FormValue("channel")}
	names := []string{"data", "locale", "channel"}
	fe := newFieldErrors(names, nil)
	body := map[string]any{}
	if s := strings.TrimSpace(fv["data"]); s != "" {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil || m == nil {
			fe.add("data", "must be a JSON object"+jsonErr(err))
		} else {
			body["data"] = m
		}
	}
	if fv["locale"] != "" {
		body["locale"] = fv["locale"]
	}
	if fv["channel"] != "" {
		body["channel"] = fv["channel"]
	}
	status := fiber.StatusOK
	if !fe.any() {
		var p Preview
		if v.PreviewErr = r.api.do(http.MethodPost, apiPath(nil, "templates", code, "preview"), body, &p); v.PreviewErr == nil {
			v.PreviewRes = &p
		} else {
			fe = newFieldErrors(names, v.PreviewErr.FieldErrors())
			status = statusFor(v.PreviewErr, status)
		}
	} else {
		status = fiber.StatusUnprocessableEntity
	}
	v.Preview = newPreviewForm(fv, fe, v.T)
	return r.render(status, "Template "+code, "templates", templatePage(v))
}

func (d *Dashboard) newTemplate(r *req) error {
	fv := formValues{}
	f := fv.buildForm(false, "", 0, nil)
	return r.render(fiber.StatusOK, "New template", "templates", templateFormPage(f))
}

func (d *Dashboard) createTemplate(r *req) error {
	fv, body, fe := readTemplateForm(r.c, false, "")
	var f templateForm
	if !fe.any() {
		var t Template
		err := r.api.do(http.MethodPost, apiPath(nil, "templates"), body, &t)
		if err == nil {
			code := t.Code
			if code == "" {
				code, _ = body["code"].(string)
			}
			return r.redirect("/templates/"+url.PathEscape(code), url.Values{"flash": {"created"}})
		}
		f = fv.buildForm(false, "", 0, newFieldErrors(templateFieldNames(), err.FieldErrors()))
		f.Err = err
		return r.render(statusFor(err, fiber.StatusOK), "New template", "templates", templateFormPage(f))
	}
	f = fv.buildForm(false, "", 0, fe)
	return r.render(fiber.StatusUnprocessableEntity, "New template", "templates", templateFormPage(f))
}

// editTemplate shows the form filled from the latest version, or from an
// older one (?from=N) to restore it as a new version.
func (d *Dashboard) editTemplate(r *req) error {
	code := param(r.c, "code")
	from, _ := strconv.Atoi(r.c.Query("from"))
	var latest, old *Template
	var err, oldErr *APIError
	calls := []func(){func() {
		var t Template
		if err = r.api.get(apiPath(nil, "templates", code), &t); err == nil {
			latest = &t
		}
	}}
	if from > 0 {
		calls = append(calls, func() {
			var t Template
			if oldErr = r.api.get(apiPath(nil, "templates", code, "versions", strconv.Itoa(from)), &t); oldErr == nil {
				old = &t
			}
		})
	}
	all(calls...)
	if err == nil && oldErr != nil {
		err = oldErr
	}
	if err != nil {
		v := templateView{Code: code, Err: err}
		return r.render(statusFor(err, fiber.StatusOK), "Edit "+code, "templates", templatePage(v))
	}
	src := latest
	if old != nil {
		src = old
	}
	f := valuesOf(src).buildForm(true, code, latest.Version, nil)
	f.Derived = src.VariablesDerived
	if old != nil {
		f.FromOld = old.Version
	}
	return r.render(fiber.StatusOK, "Edit "+code, "templates", templateFormPage(f))
}

// updateTemplate stores the form as a new version.
func (d *Dashboard) updateTemplate(r *req) error {
	code := param(r.c, "code")
	fv, body, fe := readTemplateForm(r.c, true, code)
	version, _ := strconv.Atoi(r.c.FormValue("version"))
	if !fe.any() {
		var t Template
		err := r.api.do(http.MethodPut, apiPath(nil, "templates", code), body, &t)
		if err == nil {
			return r.redirect("/templates/"+url.PathEscape(code), url.Values{"flash": {"saved"}, "v": {strconv.Itoa(t.Version)}})
		}
		f := fv.buildForm(true, code, version, newFieldErrors(templateFieldNames(), err.FieldErrors()))
		f.Err = err
		return r.render(statusFor(err, fiber.StatusOK), "Edit "+code, "templates", templateFormPage(f))
	}
	f := fv.buildForm(true, code, version, fe)
	return r.render(fiber.StatusUnprocessableEntity, "Edit "+code, "templates", templateFormPage(f))
}

func (d *Dashboard) deleteTemplate(r *req) error {
	code := param(r.c, "code")
	if r.c.FormValue("confirm") != "yes" {
		v := d.loadTemplate(r, code, 0)
		v.Delete.Errors = []string{"Tick the box to confirm."}
		return r.render(fiber.StatusUnprocessableEntity, "Template "+code, "templates", templatePage(v))
	}
	if err := r.api.do(http.MethodDelete, apiPath(nil, "templates", code), nil, nil); err != nil {
		v := d.loadTemplate(r, code, 0)
		v.DeleteErr = err
		return r.render(statusFor(err, fiber.StatusOK), "Template "+code, "templates", templatePage(v))
	}
	return r.redirect("/templates", url.Values{"flash": {"deleted"}})
}

type versionsView struct {
	Code  string
	Items []TemplateVersion
	Next  string
	First string
	Err   *APIError
}

func (d *Dashboard) templateVersions(r *req) error {
	c := r.c
	code := param(c, "code")
	q := url.Values{"limit": {"50"}}
	if cur := c.Query("cursor"); cur != "" {
		q.Set("cursor", cur)
	}
	v := versionsView{Code: code}
	var page Page[TemplateVersion]
	base := "/templates/" + url.PathEscape(code) + "/versions"
	if v.Err = r.api.get(apiPath(q, "templates", code, "versions"), &page); v.Err == nil {
		v.Items = page.Items
		if page.NextCursor != "" {
			v.Next = d.link(base, url.Values{"cursor": {page.NextCursor}})
		}
	}
	if c.Query("cursor") != "" {
		v.First = d.link(base, nil)
	}
	return r.render(statusFor(v.Err, fiber.StatusOK), "History of "+code, "templates", versionsPage(v))
}

// variantRows lists a variant's fields in the spec's order (unknown keys last).
func variantRows(channel string, fields map[string]json.RawMessage) []kv {
	var out []kv
	seen := map[string]bool{}
	for _, s := range variantSpecs {
		if s.Channel != channel {
			continue
		}
		for _, f := range s.Fields {
			if raw, ok := fields[f.Key]; ok {
				seen[f.Key] = true
				if val := jsonString(raw); val != "" {
					out = append(out, kv{f.Label, val})
				}
			}
		}
	}
	for _, k := range sortedKeys(fields) {
		if !seen[k] {
			if val := jsonString(fields[k]); val != "" {
				out = append(out, kv{k, val})
			}
		}
	}
	return out
}

// contentRows lists a preview channel's rendered fields.
func contentRows(fields map[string]json.RawMessage) []kv {
	order := []string{"subject", "title", "text", "body", "markdown", "html", "url", "vendor_template", "params"}
	var out []kv
	seen := map[string]bool{"locale": true}
	for _, k := range order {
		seen[k] = true
		if raw, ok := fields[k]; ok {
			if val := jsonString(raw); val != "" {
				out = append(out, kv{k, val})
			}
		}
	}
	for _, k := range sortedKeys(fields) {
		if !seen[k] {
			if val := jsonString(fields[k]); val != "" {
				out = append(out, kv{k, val})
			}
		}
	}
	return out
}

type kv struct{ K, V string }

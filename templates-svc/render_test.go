package templatesvc

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	ttemplate "text/template"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
)

// mustCompile compiles in strictly and fails the test on field errors.
func mustCompile(t testing.TB, in Input) *compiled {
	t.Helper()
	b := &body{Name: in.Name, Category: in.Category, Variants: in.Variants, Locales: in.Locales, Variables: in.Variables, Derive: in.Variables == nil}
	var fe fieldErrs
	validate(&in, &fe)
	if len(fe) > 0 {
		t.Fatalf("validate: %v", fe.problem())
	}
	c, fe := compile(b, true, 1<<20)
	if len(fe) > 0 {
		t.Fatalf("compile: %v", fe.problem())
	}
	c.info.Code, c.info.Version = in.Code, 1
	return c
}

// compileErrs returns the field errors of validating and compiling in.
func compileErrs(in Input) []httpx.FieldError {
	b := &body{Name: in.Name, Category: in.Category, Variants: in.Variants, Locales: in.Locales, Variables: in.Variables, Derive: in.Variables == nil}
	var fe fieldErrs
	validate(&in, &fe)
	_, cfe := compile(b, true, 1<<20)
	return append(fe, cfe...)
}

func hasField(fes []httpx.FieldError, field, reasonPart string) bool {
	for _, f := range fes {
		if f.Field == field && strings.Contains(f.Reason, reasonPart) {
			return true
		}
	}
	return false
}

func TestFastPathMatchesTextTemplate(t *testing.T) {
	srcs := []string{
		"Hello {{.name}}!",
		"{{.a}}{{.b}} and {{.user.name}}",
		"{{- .name -}}  trailing",
		"no actions at all",
		"{{/* a comment */}}x{{.name}}",
	}
	datas := []map[string]any{
		{"name": "Ada", "a": "<b>", "b": json.Number("42"), "user": map[string]any{"name": "Lin"}},
		{"name": 7, "a": int64(-3), "b": true, "user": map[string]any{"name": json.Number("1.50")}},
		{"name": 2.5, "a": []any{1, 2}, "b": nil, "user": map[string]any{"name": map[string]any{"x": 1}}},
		{"name": "x", "a": "y", "b": "z", "user": map[string]any{}},
		{"name": "x", "a": "y", "b": "z", "user": "not a map"},
		{"name": 5.0, "a": 1e21, "b": 0.000001, "user": map[string]any{"name": -2.5e-7}},
		{"name": 123456789.125, "a": math.Inf(1), "b": math.NaN(), "user": map[string]any{"name": 1e20}},
		{"name": 0.1 + 0.2, "a": -0.0, "b": float64(1 << 53), "user": map[string]any{"name": float32(1.5)}},
	}
	for _, src := range srcs {
		f, _, err := parseField("variants.sms.text", src, false)
		if err != nil {
			t.Fatal(err)
		}
		ref := ttemplate.Must(ttemplate.New("ref").Option("missingkey=error").Funcs(funcs).Parse(src))
		for i, d := range datas {
			var want strings.Builder
			werr := ref.Execute(&want, d)
			b := getBuf(1 << 20)
			got, gerr := f.exec(b, d)
			if (werr != nil) != (gerr != nil) {
				t.Fatalf("%q data %d: text/template err %v, ours %v", src, i, werr, gerr)
			}
			if werr == nil && got != want.String() {
				t.Fatalf("%q data %d: got %q, text/template %q", src, i, got, want.String())
			}
		}
	}
}

func TestFieldKinds(t *testing.T) {
	for _, tc := range []struct {
		src  string
		html bool
		kind fieldKind
	}{
		{"plain", false, kindLiteral},
		{"", false, kindLiteral},
		{"Hi {{.name}}", false, kindFast},
		{"Hi {{.name | upper}}", false, kindText},
		{"{{if .x}}a{{end}}", false, kindText},
		{"<p>{{.name}}</p>", true, kindHTML},
		{"plain", true, kindHTML},
	} {
		f, _, err := parseField("f", tc.src, tc.html)
		if err != nil {
			t.Fatal(err)
		}
		if f.kind != tc.kind {
			t.Errorf("%q: kind %d, want %d", tc.src, f.kind, tc.kind)
		}
	}
}

func TestDerivedVariables(t *testing.T) {
	in := Input{Code: "x", Name: "x", Variants: Variants{
		Email: &EmailVariant{
			Subject: "{{.subject_line}} for {{upper .name}}",
			Text:    "{{range .items}}{{.title}} {{$.currency}}{{end}}{{with .account}}{{.id}}{{else}}{{.fallback}}{{end}}",
			HTML:    `<a href="{{.url}}">{{index . "odd-key"}}</a>{{if .vip}}VIP{{end}}`,
		},
		SMS: &SMSVariant{VendorTemplate: "SMS_1", Params: map[string]string{"code": "{{.code}}"}},
	}}
	c := mustCompile(t, in)
	var names []string
	for _, v := range c.vars {
		if !v.Required {
			t.Errorf("derived variable %s not required", v.Name)
		}
		names = append(names, v.Name)
	}
	want := "account,code,currency,fallback,items,name,odd-key,subject_line,url,vip"
	if got := strings.Join(names, ","); got != want {
		t.Fatalf("derived %s, want %s", got, want)
	}
	if !c.derived {
		t.Fatal("not marked derived")
	}
}

func TestCompileErrorsNameTheField(t *testing.T) {
	base := func() Input {
		return Input{Code: "ok", Name: "n", Variants: Variants{Email: &EmailVariant{Subject: "s", Text: "t"}}}
	}
	cases := []struct {
		name   string
		mod    func(*Input)
		field  string
		reason string
	}{
		{"text syntax", func(in *Input) { in.Variants.Email.Subject = "Hi {{.name" }, "variants.email.subject", "line 1"},
		{"html syntax", func(in *Input) { in.Variants.Email.HTML = "<p>{{if .x}}</p>" }, "variants.email.html", "invalid template"},
		{"html context", func(in *Input) { in.Variants.Email.HTML = `<a href="{{.u}}` }, "variants.email.html", "invalid html template"},
		{"unknown func", func(in *Input) { in.Variants.Email.Text = "{{nope .x}}" }, "variants.email.text", `function "nope" not defined`},
		{"define", func(in *Input) { in.Variants.Email.Text = `{{define "x"}}y{{end}}z` }, "variants.email.text", "not supported"},
		{"template call", func(in *Input) { in.Variants.Email.Text = `{{template "x"}}` }, "variants.email.text", ""},
		{"range literal", func(in *Input) { in.Variants.Email.Text = `{{range 100000000}}x{{end}}` }, "variants.email.text", "number literal"},
		{"locale syntax", func(in *Input) {
			in.Locales = map[string]Variants{"zh-CN": {Email: &EmailVariant{Subject: "{{", Text: "t"}}}
		}, "locales.zh-CN.email.subject", "invalid template"},
		{"param syntax", func(in *Input) {
			in.Variants.SMS = &SMSVariant{VendorTemplate: "T1", Params: map[string]string{"code": "{{.code"}}
		}, "variants.sms.params.code", "invalid template"},
		{"undeclared", func(in *Input) {
			in.Variants.Email.Text = "{{.name}} {{.nmae}}"
			in.Variables = []Variable{{Name: "name", Required: true}}
		}, "variants.email.text", `undeclared variable "nmae"`},
		{"bad code", func(in *Input) { in.Code = "Bad Code" }, "code", "lowercase"},
		{"long code", func(in *Input) { in.Code = strings.Repeat("a", 65) }, "code", ""},
		{"no name", func(in *Input) { in.Name = "  " }, "name", "required"},
		{"bad category", func(in *Input) { in.Category = "a b" }, "category", ""},
		{"no variants", func(in *Input) { in.Variants = Variants{} }, "variants", "at least one"},
		{"email no subject", func(in *Input) { in.Variants.Email.Subject = "" }, "variants.email.subject", "required"},
		{"email no body", func(in *Input) { in.Variants.Email.Text = "" }, "variants.email.text", "text, html"},
		{"otp no text", func(in *Input) { in.Variants.OTP = &OTPVariant{} }, "variants.otp.text", "required"},
		{"bad locale", func(in *Input) {
			in.Locales = map[string]Variants{"english!": {Email: &EmailVariant{Subject: "s", Text: "t"}}}
		}, "locales.english!", "locale tag"},
		{"locale dup", func(in *Input) {
			in.Locales = map[string]Variants{"en-US": {Email: in.Variants.Email}, "en_us": {Email: in.Variants.Email}}
		}, "locales.en_us", "duplicates"},
		{"locale channel not in default", func(in *Input) {
			in.Locales = map[string]Variants{"en": {SMS: &SMSVariant{Text: "x"}}}
		}, "locales.en.sms", "default variants have no sms"},
		{"variable name", func(in *Input) { in.Variables = []Variable{{Name: "a b"}} }, "variables[0].name", ""},
		{"variable dup", func(in *Input) { in.Variables = []Variable{{Name: "a"}, {Name: "a"}} }, "variables[1].name", "duplicates"},
		{"param key", func(in *Input) { in.Variants.SMS = &SMSVariant{Text: "x", Params: map[string]string{"a b": "x"}} }, "variants.sms.params.a b", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			tc.mod(&in)
			fes := compileErrs(in)
			if !hasField(fes, tc.field, tc.reason) {
				t.Fatalf("want %s (%q), got %+v", tc.field, tc.reason, fes)
			}
		})
	}
	if fes := compileErrs(base()); len(fes) != 0 {
		t.Fatalf("base input invalid: %+v", fes)
	}
}

func sampleInput() Input {
	return Input{
		Code: "order.shipped", Name: "Order shipped", Category: "orders",
		Variants: Variants{
			Email: &EmailVariant{
				Subject: "Order {{.order_id}} shipped",
				Text:    "Hi {{.name}}, order {{.order_id}} is on its way.",
				HTML:    `<p>Hi {{.name}}, order <b>{{.order_id}}</b> is on its way.</p><a href="{{.url}}">track</a>`,
			},
			SMS:   &SMSVariant{Text: "Order {{.order_id}} shipped", VendorTemplate: "SMS_100", Params: map[string]string{"order": "{{.order_id}}"}},
			InApp: &InAppVariant{Title: "Shipped", Body: "Order {{.order_id}} is on its way{{if .note}} ({{.note}}){{end}}."},
			Chat:  &ChatVariant{Title: "Order {{.order_id}}", Markdown: "**{{.name}}**: shipped", URL: "{{.url}}"},
			QQ:    &ChatVariant{Text: "QQ: {{.order_id}}"},
			OTP:   &OTPVariant{Text: "code {{.order_id}}"},
		},
		Locales: map[string]Variants{
			"zh-CN": {Email: &EmailVariant{Subject: "订单 {{.order_id}} 已发货", Text: "{{.name}}，您的订单已发货。"}},
			"zh":    {SMS: &SMSVariant{Text: "订单{{.order_id}}已发货"}},
			"en-GB": {InApp: &InAppVariant{Title: "Dispatched", Body: "Order {{.order_id}} has been dispatched."}},
		},
		Variables: []Variable{
			{Name: "name", Required: true, Sample: "Ada"},
			{Name: "order_id", Required: true, Sample: json.Number("1001")},
			{Name: "url", Required: false, Sample: "https://example.com/t/1001"},
			{Name: "note", Required: false},
		},
	}
}

func TestRenderChannelsAndLocales(t *testing.T) {
	c := mustCompile(t, sampleInput())
	data := map[string]any{"name": "Ada <script>", "order_id": json.Number("42"), "url": "javascript:alert(1)"}
	cases := []struct {
		ch     domain.Channel
		locale string
		used   string
		check  func(domain.Content) string
	}{
		{domain.ChannelEmail, "", "", func(c domain.Content) string {
			if c.Subject != "Order 42 shipped" || c.Text != "Hi Ada <script>, order 42 is on its way." {
				return "text fields"
			}
			if !strings.Contains(c.HTML, "Hi Ada &lt;script&gt;") || !strings.Contains(c.HTML, `href="#ZgotmplZ"`) {
				return "html not escaped: " + c.HTML
			}
			return ""
		}},
		{domain.ChannelEmail, "zh-CN", "zh-CN", func(c domain.Content) string {
			if c.Subject != "订单 42 已发货" || c.HTML != "" {
				return "zh-CN email"
			}
			return ""
		}},
		{domain.ChannelEmail, "zh_cn", "zh-CN", func(c domain.Content) string {
			return cond(c.Subject == "订单 42 已发货", "case-insensitive locale")
		}},
		{domain.ChannelEmail, "zh-TW", "", func(c domain.Content) string {
			return cond(c.Subject == "Order 42 shipped", "zh has no email: default")
		}},
		{domain.ChannelSMS, "zh-TW", "zh", func(c domain.Content) string {
			return cond(c.Text == "订单42已发货" && c.VendorTemplate == "" && c.Params == nil, "language fallback")
		}},
		{domain.ChannelSMS, "zh-CN", "zh", func(c domain.Content) string {
			return cond(c.Text == "订单42已发货", "zh-CN has no sms: language")
		}},
		{domain.ChannelSMS, "fr", "", func(c domain.Content) string {
			return cond(c.Text == "Order 42 shipped" && c.VendorTemplate == "SMS_100" && c.Params["order"] == "42", "default sms")
		}},
		{domain.ChannelInApp, "en-GB", "en-GB", func(c domain.Content) string { return cond(c.Title == "Dispatched", "en-GB inapp") }},
		{domain.ChannelInApp, "en-US", "", func(c domain.Content) string {
			return cond(c.Title == "Shipped" && c.Body == "Order 42 is on its way.", "optional note filled: "+c.Body)
		}},
		{domain.ChannelWeCom, "", "", func(c domain.Content) string {
			return cond(c.Subject == "Order 42" && c.Title == "Order 42" && c.Markdown == "**Ada <script>**: shipped" && c.URL == "javascript:alert(1)", "chat shared")
		}},
		{domain.ChannelQQ, "", "", func(c domain.Content) string { return cond(c.Text == "QQ: 42" && c.Markdown == "", "qq own variant") }},
		{domain.ChannelOTP, "", "", func(c domain.Content) string { return cond(c.Text == "code 42", "otp") }},
		{domain.ChannelConsole, "", "", func(c domain.Content) string { return cond(c.Title == "Shipped", "console uses inapp") }},
	}
	for _, tc := range cases {
		got, used, err := c.render(tc.ch, tc.locale, data)
		if err != nil {
			t.Fatalf("%s/%s: %v", tc.ch, tc.locale, err)
		}
		if used != tc.used {
			t.Errorf("%s/%s: used locale %q, want %q", tc.ch, tc.locale, used, tc.used)
		}
		if msg := tc.check(got); msg != "" {
			t.Errorf("%s/%s: %s: %+v", tc.ch, tc.locale, msg, got)
		}
	}
	if _, _, err := c.render(domain.ChannelWebhook, "", data); !errors.Is(err, ErrNoVariant) {
		t.Fatalf("webhook: %v, want ErrNoVariant", err)
	}
	wantCh := "email,sms,inapp,wechat,wecom,dingtalk,qq,otp"
	if got := joinChannels(c.info.Channels); got != wantCh {
		t.Fatalf("channels %s, want %s", got, wantCh)
	}
}

func cond(ok bool, msg string) string {
	if ok {
		return ""
	}
	return msg
}

func TestRenderMissingAndExecErrors(t *testing.T) {
	c := mustCompile(t, sampleInput())
	_, _, err := c.render(domain.ChannelEmail, "", map[string]any{"url": "x"})
	var missing *contracts.MissingVariableError
	if !errors.As(err, &missing) || strings.Join(missing.Variables, ",") != "name,order_id" {
		t.Fatalf("err %v, want missing name,order_id", err)
	}
	if m := c.missing(map[string]any{"name": nil, "order_id": 1}); len(m) != 1 || m[0] != "name" {
		t.Fatalf("null counts as missing: %v", m)
	}

	in := Input{Code: "n", Name: "n", Variants: Variants{SMS: &SMSVariant{Text: "{{.user.name}}"}}}
	c2 := mustCompile(t, in)
	_, _, err = c2.render(domain.ChannelSMS, "", map[string]any{"user": map[string]any{"id": 1}})
	var re *RenderError
	if !errors.As(err, &re) || re.Field != "variants.sms.text" || !strings.Contains(re.Reason, `no entry for key "name"`) || !errors.Is(err, ErrRender) {
		t.Fatalf("err %v, want RenderError on variants.sms.text", err)
	}
}

func TestOutputLimit(t *testing.T) {
	c := mustCompile(t, Input{Code: "n", Name: "n", Variants: Variants{SMS: &SMSVariant{Text: "{{range .xs}}{{.}}{{end}}"}}})
	c.maxOut = 100
	xs := make([]any, 200)
	for i := range xs {
		xs[i] = "ab"
	}
	_, _, err := c.render(domain.ChannelSMS, "", map[string]any{"xs": xs})
	var re *RenderError
	if !errors.As(err, &re) || !strings.Contains(re.Reason, "too large") {
		t.Fatalf("err %v, want too large", err)
	}
	c2 := mustCompile(t, Input{Code: "n", Name: "n", Variants: Variants{SMS: &SMSVariant{Text: "x{{.s}}"}}})
	c2.maxOut = 10
	if _, _, err := c2.render(domain.ChannelSMS, "", map[string]any{"s": strings.Repeat("y", 20)}); !errors.As(err, &re) {
		t.Fatalf("fast path: err %v, want too large", err)
	}
}

func TestFuncs(t *testing.T) {
	ts := time.Date(2024, 3, 5, 14, 7, 0, 0, time.UTC)
	cases := []struct {
		src  string
		data map[string]any
		want string
		err  string
	}{
		{`{{default "friend" .n}}`, map[string]any{"n": ""}, "friend", ""},
		{`{{.n | default "friend"}}`, map[string]any{"n": "Ada"}, "Ada", ""},
		{`{{default "none" .n}}`, map[string]any{"n": json.Number("0")}, "0", ""},
		{`{{default "none" .n}}`, map[string]any{"n": []any{}}, "none", ""},
		{`{{upper .n}} {{lower .n}}`, map[string]any{"n": "MiXed"}, "MIXED mixed", ""},
		{`[{{trim .n}}]`, map[string]any{"n": "  x \n"}, "[x]", ""},
		{`{{truncate 3 .n}}`, map[string]any{"n": "你好世界"}, "你好世…", ""},
		{`{{truncate 10 .n}}`, map[string]any{"n": "short"}, "short", ""},
		{`{{join ", " .n}}`, map[string]any{"n": []any{"a", json.Number("2"), true}}, "a, 2, true", ""},
		{`{{date "date" .t}}`, map[string]any{"t": ts}, "2024-03-05", ""},
		{`{{date "datetime" .t "Asia/Shanghai"}}`, map[string]any{"t": "2024-03-05T14:07:00Z"}, "2024-03-05 22:07", ""},
		{`{{date "2006" .t}}`, map[string]any{"t": json.Number("1709647620")}, "2024", ""},
		{`{{date "15:04" .t}}`, map[string]any{"t": json.Number("1709647620000")}, "14:07", ""},
		{`{{date "date" .t}}`, map[string]any{"t": "2024-03-05"}, "2024-03-05", ""},
		{`{{date "date" .t}}`, map[string]any{"t": "yesterday"}, "", "not an RFC 3339"},
		{`{{date "date" .t "Mars/Base"}}`, map[string]any{"t": ts}, "", "unknown time zone"},
		{`{{json .m}}`, map[string]any{"m": map[string]any{"a": json.Number("1"), "b": "<x>"}}, `{"a":1,"b":"\u003cx\u003e"}`, ""},
		{`{{printf "%05d|%s" .n .s}}`, map[string]any{"n": 42, "s": "x"}, "00042|x", ""},
		{`{{printf "%999999999d" .n}}`, map[string]any{"n": 1}, "", "exceeds"},
		{`{{printf "%.5000f" .n}}`, map[string]any{"n": 1.5}, "", "exceeds"},
		{`{{printf "%*d" .n .n}}`, map[string]any{"n": 1}, "", "not allowed"},
	}
	for _, tc := range cases {
		f, _, err := parseField("f", tc.src, false)
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		got, err := f.exec(getBuf(1<<20), tc.data)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.src, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.src, got, err, tc.want)
		}
	}
}

func TestEqualLocale(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		eq   bool
	}{{"en-US", "en_us", true}, {"zh-CN", "ZH-cn", true}, {"en", "en-US", false}, {"en-US", "en-GB", false}} {
		if equalLocale(tc.a, tc.b) != tc.eq {
			t.Errorf("equalLocale(%q, %q) != %v", tc.a, tc.b, tc.eq)
		}
	}
	for _, s := range []string{"en", "en-US", "zh_Hant_TW", "es-419", "fil"} {
		if !validLocale(s) {
			t.Errorf("%q rejected", s)
		}
	}
	for _, s := range []string{"", "e", "english", "en--US", "en-", "-en", "1a", "en-toolongpart"} {
		if validLocale(s) {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestClockCacheBounded(t *testing.T) {
	c := newClockCache[versionKey, int](32, hashVersion)
	for i := 0; i < 1000; i++ {
		c.Put(versionKey{"a", "c", i}, i)
		// keep version 0 hot: CLOCK gives it a second chance every sweep
		if v, ok := c.Get(versionKey{"a", "c", 0}); !ok || v != 0 {
			t.Fatalf("hot entry evicted at %d", i)
		}
	}
	if n := c.Len(); n > 32 {
		t.Fatalf("cache holds %d entries, bound 32", n)
	}
	c.Delete(versionKey{"a", "c", 0})
	if _, ok := c.Get(versionKey{"a", "c", 0}); ok {
		t.Fatal("deleted entry still present")
	}
	c.Put(versionKey{"a", "c", 5000}, 1)
	if v, ok := c.Get(versionKey{"a", "c", 5000}); !ok || v != 1 {
		t.Fatal("put after delete lost")
	}
}

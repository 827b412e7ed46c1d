package templatesvc

import (
	"encoding/json"
	"errors"
	"fmt"
	htemplate "html/template"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	ttemplate "text/template"
	"text/template/parse"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

// ErrRender is matched (errors.Is) by every *RenderError.
var ErrRender = errors.New("render template")

// ErrNoVariant means the template has no variant for the requested channel
// (nor one it falls back to).
var ErrNoVariant = errors.New("template has no variant for the channel")

// RenderError is a failure executing one field of a variant, e.g. a nested
// key missing from the data. Field is the path of the field
// ("variants.email.subject", "locales.zh-CN.sms.text").
type RenderError struct {
	Field  string
	Reason string
}

func (e *RenderError) Error() string { return "render " + e.Field + ": " + e.Reason }

// Is makes errors.Is(err, ErrRender) true.
func (e *RenderError) Is(target error) bool { return target == ErrRender }

// ---- specs: the fields of each variant and where they land in domain.Content ----

type target uint8

const (
	tSubject target = 1 << iota
	tText
	tHTML
	tTitle
	tBody
	tMarkdown
	tURL
	tVendor
)

type fieldSpec struct {
	name string
	src  string
	html bool
	to   target
}

type variantSpec struct {
	key    string
	fields []fieldSpec
	params map[string]string
}

func chatSpec(key string, v *ChatVariant) variantSpec {
	return variantSpec{key: key, params: v.Params, fields: []fieldSpec{
		{name: "title", src: v.Title, to: tSubject | tTitle},
		{name: "text", src: v.Text, to: tText},
		{name: "markdown", src: v.Markdown, to: tMarkdown},
		{name: "url", src: v.URL, to: tURL},
		{name: "vendor_template", src: v.VendorTemplate, to: tVendor},
	}}
}

// specs lists the present variants in VariantKeys order.
func (v *Variants) specs() []variantSpec {
	var out []variantSpec
	if e := v.Email; e != nil {
		out = append(out, variantSpec{key: "email", fields: []fieldSpec{
			{name: "subject", src: e.Subject, to: tSubject},
			{name: "text", src: e.Text, to: tText},
			{name: "html", src: e.HTML, html: true, to: tHTML},
		}})
	}
	if s := v.SMS; s != nil {
		out = append(out, variantSpec{key: "sms", params: s.Params, fields: []fieldSpec{
			{name: "text", src: s.Text, to: tText},
			{name: "vendor_template", src: s.VendorTemplate, to: tVendor},
		}})
	}
	if i := v.InApp; i != nil {
		out = append(out, variantSpec{key: "inapp", fields: []fieldSpec{
			{name: "title", src: i.Title, to: tTitle},
			{name: "body", src: i.Body, to: tBody},
		}})
	}
	for _, c := range []struct {
		key string
		v   *ChatVariant
	}{{"chat", v.Chat}, {"wechat", v.WeChat}, {"wecom", v.WeCom}, {"dingtalk", v.DingTalk}, {"qq", v.QQ}} {
		if c.v != nil {
			out = append(out, chatSpec(c.key, c.v))
		}
	}
	if o := v.OTP; o != nil {
		out = append(out, variantSpec{key: "otp", fields: []fieldSpec{
			{name: "text", src: o.Text, to: tText},
			{name: "subject", src: o.Subject, to: tSubject},
		}})
	}
	if w := v.Webhook; w != nil {
		out = append(out, variantSpec{key: "webhook", fields: []fieldSpec{
			{name: "body", src: w.Body, to: tBody},
		}})
	}
	return out
}

// ---- channel slots ----

const (
	slotEmail = iota
	slotSMS
	slotInApp
	slotWeChat
	slotWeCom
	slotDingTalk
	slotQQ
	slotOTP
	slotWebhook
	numSlots
	slotConsole = numSlots
	slotBench   = numSlots + 1
)

var slotChannels = [numSlots]domain.Channel{domain.ChannelEmail, domain.ChannelSMS, domain.ChannelInApp,
	domain.ChannelWeChat, domain.ChannelWeCom, domain.ChannelDingTalk, domain.ChannelQQ, domain.ChannelOTP, domain.ChannelWebhook}

func slotOf(ch domain.Channel) int {
	switch ch {
	case domain.ChannelEmail:
		return slotEmail
	case domain.ChannelSMS:
		return slotSMS
	case domain.ChannelInApp:
		return slotInApp
	case domain.ChannelWeChat:
		return slotWeChat
	case domain.ChannelWeCom:
		return slotWeCom
	case domain.ChannelDingTalk:
		return slotDingTalk
	case domain.ChannelQQ:
		return slotQQ
	case domain.ChannelOTP:
		return slotOTP
	case domain.ChannelWebhook:
		return slotWebhook
	case domain.ChannelConsole:
		return slotConsole
	case domain.ChannelBench:
		return slotBench
	}
	return -1
}

// fallbackSlots: a channel without a variant of its own uses the first of
// these the template has. SMS and email codes use the otp variant; console
// and bench (diagnostic channels) use whatever the template has.
var fallbackSlots = [numSlots + 2][]int{
	slotEmail:   {slotOTP},
	slotSMS:     {slotOTP},
	slotOTP:     {slotSMS, slotEmail},
	slotConsole: {slotInApp, slotEmail, slotSMS, slotOTP, slotWeChat, slotWeCom, slotDingTalk, slotQQ, slotWebhook},
	slotBench:   {slotInApp, slotEmail, slotSMS, slotOTP, slotWeChat, slotWeCom, slotDingTalk, slotQQ, slotWebhook},
}

// ---- compiled templates ----

type fieldKind uint8

const (
	kindLiteral fieldKind = iota // no actions: the text itself
	kindFast                     // text and {{.a.b}} only: printed without text/template for common value types
	kindText                     // text/template
	kindHTML                     // html/template
)

type seg struct {
	lit   string
	ident []string // nil for a literal segment
}

type field struct {
	path string
	kind fieldKind
	lit  string
	segs []seg
	tt   *ttemplate.Template
	ht   *htemplate.Template
}

type cfield struct {
	to target
	f  *field
}

type cparam struct {
	key string
	f   *field
}

type cvariant struct {
	key    string
	fields []cfield
	params []cparam
}

type localeSet struct {
	key string
	by  [numSlots]*cvariant
}

// compiled is a parsed, immutable template version, safe for concurrent use.
type compiled struct {
	info     contracts.TemplateInfo
	vars     []Variable
	derived  bool
	required []string
	optional []string
	def      localeSet
	locales  []localeSet
	maxOut   int
}

// compile parses every field of b. strict adds the checks made on writes
// (undeclared variables); loads of stored versions skip them so that a
// version accepted once always renders.
func compile(b *body, strict bool, maxOut int) (*compiled, fieldErrs) {
	c := &compiled{maxOut: maxOut}
	var fe fieldErrs
	used := map[string][]string{} // field path -> root variables
	build := func(set *localeSet, v *Variants, prefix string) {
		var chat *cvariant
		for _, sp := range v.specs() {
			cv := &cvariant{key: sp.key}
			for _, fs := range sp.fields {
				if fs.src == "" {
					continue
				}
				path := prefix + "." + sp.key + "." + fs.name
				f, names, err := parseField(path, fs.src, fs.html)
				if err != nil {
					fe.add(path, "%s", err.Error())
					continue
				}
				used[path] = names
				cv.fields = append(cv.fields, cfield{to: fs.to, f: f})
			}
			for _, k := range sortedKeys(sp.params) {
				path := prefix + "." + sp.key + ".params." + k
				f, names, err := parseField(path, sp.params[k], false)
				if err != nil {
					fe.add(path, "%s", err.Error())
					continue
				}
				used[path] = names
				cv.params = append(cv.params, cparam{key: k, f: f})
			}
			switch sp.key {
			case "email":
				set.by[slotEmail] = cv
			case "sms":
				set.by[slotSMS] = cv
			case "inapp":
				set.by[slotInApp] = cv
			case "chat":
				chat = cv
			case "wechat":
				set.by[slotWeChat] = cv
			case "wecom":
				set.by[slotWeCom] = cv
			case "dingtalk":
				set.by[slotDingTalk] = cv
			case "qq":
				set.by[slotQQ] = cv
			case "otp":
				set.by[slotOTP] = cv
			case "webhook":
				set.by[slotWebhook] = cv
			}
		}
		// the shared chat variant covers the chat channels without their own
		if chat != nil {
			for _, s := range []int{slotWeChat, slotWeCom, slotDingTalk, slotQQ} {
				if set.by[s] == nil {
					set.by[s] = chat
				}
			}
		}
	}
	build(&c.def, &b.Variants, "variants")
	for _, loc := range sortedKeys(b.Locales) {
		v := b.Locales[loc]
		set := localeSet{key: loc}
		build(&set, &v, "locales."+loc)
		c.locales = append(c.locales, set)
	}

	c.info.Category = b.Category
	for s := 0; s < numSlots; s++ {
		if c.def.by[s] != nil {
			c.info.Channels = append(c.info.Channels, slotChannels[s])
		}
	}

	if b.Derive {
		c.derived = true
		seen := map[string]bool{}
		for _, names := range used {
			for _, n := range names {
				seen[n] = true
			}
		}
		for _, n := range sortedKeys(seen) {
			c.vars = append(c.vars, Variable{Name: n, Required: true})
			c.required = append(c.required, n)
		}
	} else {
		declared := make(map[string]bool, len(b.Variables))
		c.vars = make([]Variable, len(b.Variables))
		copy(c.vars, b.Variables)
		for _, v := range b.Variables {
			declared[v.Name] = true
			if v.Required {
				c.required = append(c.required, v.Name)
			} else {
				c.optional = append(c.optional, v.Name)
			}
		}
		if strict {
			for _, path := range sortedKeys(used) {
				for _, n := range used[path] {
					if !declared[n] {
						fe.add(path, "uses undeclared variable %q: declare it in variables, or omit variables to derive them", n)
					}
				}
			}
		}
	}
	return c, fe
}

// parseField parses one template field and returns the root variables it references.
func parseField(path, src string, html bool) (*field, []string, error) {
	f := &field{path: path}
	var tree *parse.Tree
	var count int
	if html {
		t, err := htemplate.New(path).Option("missingkey=error").Funcs(funcs).Parse(src)
		if err != nil {
			return nil, nil, cleanErr(path, err, "invalid template")
		}
		f.ht, f.kind, tree, count = t, kindHTML, t.Tree, len(t.Templates())
	} else {
		t, err := ttemplate.New(path).Option("missingkey=error").Funcs(funcs).Parse(src)
		if err != nil {
			return nil, nil, cleanErr(path, err, "invalid template")
		}
		f.tt, f.kind, tree, count = t, kindText, t.Tree, len(t.Templates())
	}
	if count > 1 {
		return nil, nil, errors.New("{{define}} and {{block}} are not supported")
	}
	w := walker{names: map[string]bool{}}
	if tree != nil && tree.Root != nil {
		w.list(tree.Root, true)
	}
	if w.err != nil {
		return nil, nil, w.err
	}
	if html {
		// html/template escapes lazily on first execution: run it once on
		// no data so contextual escaping errors surface now, not on a send.
		err := f.ht.Execute(io.Discard, nil)
		var he *htemplate.Error
		if errors.As(err, &he) {
			return nil, nil, htmlErr(he)
		}
	} else if tree != nil {
		f.classify(tree)
	}
	return f, sortedKeys(w.names), nil
}

// classify picks the literal or fast path for simple text templates.
func (f *field) classify(tree *parse.Tree) {
	if tree.Root == nil {
		f.kind, f.lit = kindLiteral, ""
		return
	}
	var segs []seg
	literal := true
	for _, n := range tree.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			segs = append(segs, seg{lit: string(n.Text)})
		case *parse.ActionNode:
			p := n.Pipe
			if len(p.Decl) != 0 || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
				return
			}
			fn, ok := p.Cmds[0].Args[0].(*parse.FieldNode)
			if !ok {
				return
			}
			literal = false
			segs = append(segs, seg{ident: fn.Ident})
		case *parse.CommentNode:
		default:
			return
		}
	}
	if literal {
		var b strings.Builder
		for _, s := range segs {
			b.WriteString(s.lit)
		}
		f.kind, f.lit = kindLiteral, b.String()
		return
	}
	f.kind, f.segs = kindFast, segs
}

var (
	prefixTemplate = "template: "
	prefixHTML     = "html/template:"
)

func cleanErr(path string, err error, what string) error {
	msg := err.Error()
	for _, p := range []string{prefixTemplate + path + ":", prefixHTML + path + ":", prefixTemplate, prefixHTML} {
		if strings.HasPrefix(msg, p) {
			msg = msg[len(p):]
			break
		}
	}
	msg = strings.Replace(msg, `executing "`+path+`" at `, "", 1)
	msg = strings.TrimSpace(msg)
	if what == "" {
		if pos, rest, ok := strings.Cut(msg, ": "); ok && isLinePos(pos) {
			return fmt.Errorf("at line %s: %s", pos, rest)
		}
		return errors.New(msg)
	}
	// "1: unexpected ..." -> "invalid template at line 1: unexpected ..."
	if line, rest, ok := strings.Cut(msg, ": "); ok && isLinePos(line) {
		return fmt.Errorf("%s at line %s: %s", what, line, rest)
	}
	return fmt.Errorf("%s: %s", what, msg)
}

// htmlErr describes an html/template escaping error without its internals.
func htmlErr(he *htemplate.Error) error {
	desc := he.Description
	if he.ErrorCode == htemplate.ErrEndContext {
		desc = "the template ends inside a tag, attribute, comment or script (an unclosed quote or tag?)"
	} else if i := strings.Index(desc, ": {"); i > 0 {
		desc = desc[:i]
	}
	if he.Line > 0 {
		return fmt.Errorf("invalid html template at line %d: %s", he.Line, desc)
	}
	return fmt.Errorf("invalid html template: %s", desc)
}

func isLinePos(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && c != ':' {
			return false
		}
	}
	return true
}

// walker collects the root variables a template references and refuses
// constructs Herald does not allow ({{template}}, ranges over number literals).
type walker struct {
	names map[string]bool
	err   error
}

func (w *walker) fail(format string, args ...any) {
	if w.err == nil {
		w.err = fmt.Errorf(format, args...)
	}
}

func (w *walker) list(l *parse.ListNode, root bool) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		w.node(n, root)
	}
}

func (w *walker) node(n parse.Node, root bool) {
	switch n := n.(type) {
	case *parse.ActionNode:
		w.pipe(n.Pipe, root)
	case *parse.IfNode:
		w.pipe(n.Pipe, root)
		w.list(n.List, root)
		w.list(n.ElseList, root)
	case *parse.WithNode:
		w.pipe(n.Pipe, root)
		w.list(n.List, false)
		w.list(n.ElseList, root)
	case *parse.RangeNode:
		if p := n.Pipe; p != nil && len(p.Cmds) == 1 && len(p.Cmds[0].Args) == 1 {
			if _, ok := p.Cmds[0].Args[0].(*parse.NumberNode); ok {
				w.fail("{{range}} over a number literal is not supported")
			}
		}
		w.pipe(n.Pipe, root)
		w.list(n.List, false)
		w.list(n.ElseList, root)
	case *parse.TemplateNode:
		w.fail("{{template}} is not supported")
	case *parse.ListNode:
		w.list(n, root)
	}
}

func (w *walker) pipe(p *parse.PipeNode, root bool) {
	if p == nil {
		return
	}
	for _, cmd := range p.Cmds {
		if len(cmd.Args) >= 3 {
			if id, ok := cmd.Args[0].(*parse.IdentifierNode); ok && id.Ident == "index" {
				if s, ok := cmd.Args[2].(*parse.StringNode); ok {
					switch a := cmd.Args[1].(type) {
					case *parse.DotNode:
						if root {
							w.names[s.Text] = true
						}
					case *parse.VariableNode:
						if len(a.Ident) == 1 && a.Ident[0] == "$" {
							w.names[s.Text] = true
						}
					}
				}
			}
		}
		for _, a := range cmd.Args {
			w.arg(a, root)
		}
	}
}

func (w *walker) arg(n parse.Node, root bool) {
	switch n := n.(type) {
	case *parse.FieldNode:
		if root && len(n.Ident) > 0 {
			w.names[n.Ident[0]] = true
		}
	case *parse.VariableNode:
		if len(n.Ident) > 1 && n.Ident[0] == "$" {
			w.names[n.Ident[1]] = true
		}
	case *parse.ChainNode:
		w.arg(n.Node, root)
	case *parse.PipeNode:
		w.pipe(n, root)
	}
}

// ---- execution ----

var errTooLarge = errors.New("rendered output too large")

type outBuf struct {
	b   []byte
	max int
}

func (o *outBuf) Write(p []byte) (int, error) {
	if len(o.b)+len(p) > o.max {
		return 0, errTooLarge
	}
	o.b = append(o.b, p...)
	return len(p), nil
}

var bufPool = sync.Pool{New: func() any { return &outBuf{b: make([]byte, 0, 1024)} }}

func getBuf(max int) *outBuf {
	b := bufPool.Get().(*outBuf)
	b.b, b.max = b.b[:0], max
	return b
}

func putBuf(b *outBuf) {
	if cap(b.b) > 64<<10 {
		return
	}
	bufPool.Put(b)
}

func lookup(data map[string]any, ident []string) (any, bool) {
	var v any = data
	for _, k := range ident {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// fast prints the segments for the value types whose text/template output it
// reproduces exactly; it reports false for anything else.
func (f *field) fast(b *outBuf, data map[string]any) bool {
	for _, s := range f.segs {
		if s.ident == nil {
			b.b = append(b.b, s.lit...)
			continue
		}
		v, ok := lookup(data, s.ident)
		if !ok {
			return false
		}
		switch x := v.(type) {
		case string:
			b.b = append(b.b, x...)
		case json.Number:
			b.b = append(b.b, x...)
		case int:
			b.b = strconv.AppendInt(b.b, int64(x), 10)
		case int64:
			b.b = strconv.AppendInt(b.b, x, 10)
		case bool:
			b.b = strconv.AppendBool(b.b, x)
		case float64:
			// fmt's %v for a float64 is strconv's shortest 'g' (finite values)
			if math.IsInf(x, 0) || math.IsNaN(x) {
				return false
			}
			b.b = strconv.AppendFloat(b.b, x, 'g', -1, 64)
		default:
			return false
		}
	}
	return true
}

func (f *field) exec(b *outBuf, data map[string]any) (string, error) {
	if f.kind == kindLiteral {
		return f.lit, nil
	}
	b.b = b.b[:0]
	if f.kind == kindFast && f.fast(b, data) {
		if len(b.b) > b.max {
			return "", &RenderError{Field: f.path, Reason: errTooLarge.Error()}
		}
		return string(b.b), nil
	}
	b.b = b.b[:0]
	var err error
	if f.ht != nil {
		err = f.ht.Execute(b, data)
	} else {
		err = f.tt.Execute(b, data)
	}
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return "", &RenderError{Field: f.path, Reason: fmt.Sprintf("%v (limit %d bytes)", errTooLarge, b.max)}
		}
		return "", &RenderError{Field: f.path, Reason: cleanErr(f.path, err, "").Error()}
	}
	return string(b.b), nil
}

func (v *cvariant) content(b *outBuf, data map[string]any) (domain.Content, error) {
	var c domain.Content
	for _, cf := range v.fields {
		s, err := cf.f.exec(b, data)
		if err != nil {
			return domain.Content{}, err
		}
		to := cf.to
		if to&tSubject != 0 {
			c.Subject = s
		}
		if to&tText != 0 {
			c.Text = s
		}
		if to&tHTML != 0 {
			c.HTML = s
		}
		if to&tTitle != 0 {
			c.Title = s
		}
		if to&tBody != 0 {
			c.Body = s
		}
		if to&tMarkdown != 0 {
			c.Markdown = s
		}
		if to&tURL != 0 {
			c.URL = s
		}
		if to&tVendor != 0 {
			c.VendorTemplate = s
		}
	}
	if len(v.params) > 0 {
		c.Params = make(map[string]string, len(v.params))
		for _, p := range v.params {
			s, err := p.f.exec(b, data)
			if err != nil {
				return domain.Content{}, err
			}
			c.Params[p.key] = s
		}
	}
	return c, nil
}

// equalLocale compares locale tags ignoring case and treating '_' as '-'.
func equalLocale(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == '_' {
			x = '-'
		}
		if y == '_' {
			y = '-'
		}
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// effective returns the slot whose variant renders ch, or -1.
func (c *compiled) effective(ch domain.Channel) int {
	s := slotOf(ch)
	if s < 0 {
		return -1
	}
	if s < numSlots && c.def.by[s] != nil {
		return s
	}
	for _, f := range fallbackSlots[s] {
		if c.def.by[f] != nil {
			return f
		}
	}
	return -1
}

// resolve picks the variant for slot s: the exact locale, then its language,
// then the default variants. It returns the locale key used ("" = default).
func (c *compiled) resolve(s int, locale string) (*cvariant, string) {
	if locale != "" && len(c.locales) > 0 {
		for i := range c.locales {
			if equalLocale(c.locales[i].key, locale) {
				if v := c.locales[i].by[s]; v != nil {
					return v, c.locales[i].key
				}
				break
			}
		}
		if j := strings.IndexAny(locale, "-_"); j > 0 {
			lang := locale[:j]
			for i := range c.locales {
				if equalLocale(c.locales[i].key, lang) {
					if v := c.locales[i].by[s]; v != nil {
						return v, c.locales[i].key
					}
					break
				}
			}
		}
	}
	return c.def.by[s], ""
}

// missing lists the required variables absent (or null) in data.
func (c *compiled) missing(data map[string]any) []string {
	var out []string
	for _, n := range c.required {
		if v, ok := data[n]; !ok || v == nil {
			out = append(out, n)
		}
	}
	return out
}

// prepare checks required variables and fills absent optional ones with "".
func (c *compiled) prepare(data map[string]any) (map[string]any, error) {
	if m := c.missing(data); m != nil {
		return nil, &contracts.MissingVariableError{Variables: m}
	}
	fill := false
	for _, n := range c.optional {
		if v, ok := data[n]; !ok || v == nil {
			fill = true
			break
		}
	}
	if !fill {
		return data, nil
	}
	out := make(map[string]any, len(data)+len(c.optional))
	for k, v := range data {
		out[k] = v
	}
	for _, n := range c.optional {
		if v, ok := out[n]; !ok || v == nil {
			out[n] = ""
		}
	}
	return out, nil
}

// render renders channel ch in locale for data. It returns the locale key
// used ("" for the default variants).
func (c *compiled) render(ch domain.Channel, locale string, data map[string]any) (domain.Content, string, error) {
	s := c.effective(ch)
	if s < 0 {
		return domain.Content{}, "", fmt.Errorf("%w: %s (the template has %s)", ErrNoVariant, ch, channelList(c.info.Channels))
	}
	data, err := c.prepare(data)
	if err != nil {
		return domain.Content{}, "", err
	}
	v, used := c.resolve(s, locale)
	b := getBuf(c.maxOut)
	content, err := v.content(b, data)
	putBuf(b)
	return content, used, err
}

func channelList(chs []domain.Channel) string {
	if len(chs) == 0 {
		return "no variants"
	}
	s := make([]string, len(chs))
	for i, c := range chs {
		s[i] = string(c)
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

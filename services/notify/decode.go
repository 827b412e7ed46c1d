package notify

import (
	"encoding/json"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
)

// decodeRequest parses a send request without reflection (the accept hot
// path). It is as strict as httpx.DecodeJSON: unknown and duplicate fields,
// wrong types and trailing data are refused; field names match exactly.
// Numbers inside data stay json.Number, so large integers keep every digit.
// Syntax errors are 400 malformed_request, the rest 422 naming the field.
func decodeRequest(b []byte, r *SendRequest) *httpx.Problem {
	d := decoder{b: b}
	d.ws()
	if d.i >= len(b) {
		return httpx.CodeMalformed.New("the request body is empty: send a JSON object")
	}
	switch b[d.i] {
	case '{':
		d.request(r)
	case 'n':
		d.literal("null")
	default:
		kind := d.kindAt()
		d.skip(0)
		d.typeError("(body)", "an object", kind)
	}
	// The order of encoding/json: a syntax error in the value, then a field
	// error, then trailing data.
	if d.syntax != nil {
		return d.syntax
	}
	if d.field != nil {
		return httpx.CodeValidation.Fields(*d.field)
	}
	d.ws()
	if d.i < len(b) {
		return httpx.CodeMalformed.New("unexpected data after the JSON value")
	}
	return nil
}

const maxDepth = 64

type decoder struct {
	b []byte
	i int
	// syntax is the first syntax error (parsing stops); field the first
	// field-level error (parsing goes on, as syntax errors win).
	syntax *httpx.Problem
	field  *httpx.FieldError
}

func (d *decoder) fail(format string, args ...any) {
	if d.syntax == nil {
		d.syntax = httpx.CodeMalformed.New(format, args...)
	}
	d.i = len(d.b)
}

func (d *decoder) failAt(what string) {
	if d.i >= len(d.b) {
		d.fail("malformed JSON: unexpected end of input")
		return
	}
	d.fail("malformed JSON at byte %d: %s, found %q", d.i, what, d.b[d.i])
}

func (d *decoder) fieldError(field, reason string) {
	if d.field == nil {
		d.field = &httpx.FieldError{Field: field, Reason: reason}
	}
}

func (d *decoder) typeError(field, want, got string) {
	d.fieldError(field, "must be "+want+", not "+got)
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// kindAt names the JSON type of the value at the cursor.
func (d *decoder) kindAt() string {
	if d.i >= len(d.b) {
		return "nothing"
	}
	switch c := d.b[d.i]; {
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == '"':
		return "string"
	case c == 't' || c == 'f':
		return "bool"
	case c == 'n':
		return "null"
	case c == '-' || c >= '0' && c <= '9':
		return "number"
	}
	return "invalid"
}

func (d *decoder) literal(lit string) {
	if len(d.b)-d.i < len(lit) || string(d.b[d.i:d.i+len(lit)]) != lit {
		d.failAt("invalid literal")
		return
	}
	d.i += len(lit)
}

// peek returns the byte at the cursor, 0 at the end.
func (d *decoder) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

// isNull consumes a null literal at the cursor.
func (d *decoder) isNull() bool {
	if d.i < len(d.b) && d.b[d.i] == 'n' {
		d.literal("null")
		return true
	}
	return false
}

// object iterates an object's members, calling fn with each key and the
// cursor on its value; fn must consume the value. Duplicate keys are refused
// unless dupOK (free-form data, where the last one wins as in encoding/json).
func (d *decoder) object(path string, dupOK bool, fn func(key string)) {
	d.i++ // '{'
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return
	}
	var seen []string
	for d.syntax == nil {
		d.ws()
		if d.i >= len(d.b) || d.b[d.i] != '"' {
			d.failAt("expected a string key")
			return
		}
		key := d.rawString()
		d.ws()
		if d.i >= len(d.b) || d.b[d.i] != ':' {
			d.failAt("expected ':' after an object key")
			return
		}
		d.i++
		d.ws()
		if !dupOK {
			for _, k := range seen {
				if k == key {
					d.fieldError(join(path, key), "appears more than once")
				}
			}
			seen = append(seen, key)
		}
		fn(key)
		if d.syntax != nil {
			return
		}
		d.ws()
		if d.i >= len(d.b) {
			d.failAt("")
			return
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			return
		default:
			d.failAt("expected ',' or '}' in an object")
			return
		}
	}
}

// array iterates an array's elements; fn must consume each.
func (d *decoder) array(fn func(i int)) {
	d.i++ // '['
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == ']' {
		d.i++
		return
	}
	for n := 0; d.syntax == nil; n++ {
		d.ws()
		fn(n)
		if d.syntax != nil {
			return
		}
		d.ws()
		if d.i >= len(d.b) {
			d.failAt("")
			return
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case ']':
			d.i++
			return
		default:
			d.failAt("expected ',' or ']' in an array")
			return
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) request(r *SendRequest) {
	d.object("", false, func(key string) {
		switch key {
		case "template":
			r.Template = d.str(key)
		case "content":
			r.Content = d.contentMap(key)
		case "data":
			if d.isNull() {
				r.Data = nil
			} else if d.peek() != '{' {
				d.typeError(key, "an object", d.kindAt())
				d.skip(0)
			} else {
				r.Data = d.value(1).(map[string]any)
			}
		case "recipients":
			r.Recipients = d.recipients(key)
		case "channels":
			r.Channels = d.channels(key)
		case "priority":
			r.Priority = d.str(key)
		case "kind":
			r.Kind = d.str(key)
		case "category":
			r.Category = d.str(key)
		case "send_at":
			r.SendAt = d.str(key)
		case "expires_at":
			r.ExpiresAt = d.str(key)
		case "todo_key":
			r.TodoKey = d.str(key)
		case "locale":
			r.Locale = d.str(key)
		case "fallback":
			r.Fallback = d.channels(key)
		case "meta":
			r.Meta = d.stringMap(key)
		default:
			d.fieldError(key, "unknown field")
			d.skip(0)
		}
	})
}

// str reads a string field (null leaves it empty).
func (d *decoder) str(field string) string {
	if d.i >= len(d.b) {
		d.failAt("")
		return ""
	}
	switch d.b[d.i] {
	case '"':
		return d.rawString()
	case 'n':
		d.literal("null")
		return ""
	}
	d.typeError(field, "a string", d.kindAt())
	d.skip(0)
	return ""
}

func (d *decoder) channels(field string) []domain.Channel {
	if d.isNull() {
		return nil
	}
	if d.peek() != '[' {
		d.typeError(field, "an array", d.kindAt())
		d.skip(0)
		return nil
	}
	out := []domain.Channel{}
	d.array(func(i int) {
		out = append(out, domain.Channel(d.str(indexed(field, i))))
	})
	return out
}

func (d *decoder) stringMap(field string) map[string]string {
	if d.isNull() {
		return nil
	}
	if d.peek() != '{' {
		d.typeError(field, "an object", d.kindAt())
		d.skip(0)
		return nil
	}
	out := map[string]string{}
	d.object(field, false, func(key string) {
		out[key] = d.str(join(field, key))
	})
	return out
}

func (d *decoder) recipients(field string) []domain.Recipient {
	if d.isNull() {
		return nil
	}
	if d.peek() != '[' {
		d.typeError(field, "an array", d.kindAt())
		d.skip(0)
		return nil
	}
	out := []domain.Recipient{}
	d.array(func(i int) {
		path := indexed(field, i)
		var rc domain.Recipient
		switch {
		case d.isNull():
		case d.peek() != '{':
			d.typeError(path, "an object", d.kindAt())
			d.skip(0)
		default:
			d.object(path, false, func(key string) {
				switch key {
				case "user_id":
					rc.UserID = d.str(path + ".user_id")
				case "group_id":
					rc.GroupID = d.str(path + ".group_id")
				case "email":
					rc.Email = d.str(path + ".email")
				case "phone":
					rc.Phone = d.str(path + ".phone")
				default:
					d.fieldError(join(path, key), "unknown field")
					d.skip(0)
				}
			})
		}
		out = append(out, rc)
	})
	return out
}

func (d *decoder) contentMap(field string) map[string]domain.Content {
	if d.isNull() {
		return nil
	}
	if d.peek() != '{' {
		d.typeError(field, "an object", d.kindAt())
		d.skip(0)
		return nil
	}
	out := map[string]domain.Content{}
	d.object(field, false, func(ch string) {
		path := join(field, ch)
		var c domain.Content
		switch {
		case d.isNull():
		case d.peek() != '{':
			d.typeError(path, "an object", d.kindAt())
			d.skip(0)
		default:
			d.object(path, false, func(key string) {
				p := join(path, key)
				switch key {
				case "subject":
					c.Subject = d.str(p)
				case "text":
					c.Text = d.str(p)
				case "html":
					c.HTML = d.str(p)
				case "title":
					c.Title = d.str(p)
				case "body":
					c.Body = d.str(p)
				case "markdown":
					c.Markdown = d.str(p)
				case "url":
					c.URL = d.str(p)
				case "vendor_template":
					c.VendorTemplate = d.str(p)
				case "params":
					c.Params = d.stringMap(p)
				default:
					d.fieldError(p, "unknown field")
					d.skip(0)
				}
			})
		}
		out[ch] = c
	})
	return out
}

// value parses any JSON value: objects become map[string]any, arrays []any,
// numbers json.Number.
func (d *decoder) value(depth int) any {
	if depth > maxDepth {
		d.fail("malformed JSON: nested more than %d levels deep", maxDepth)
		return nil
	}
	if d.i >= len(d.b) {
		d.failAt("")
		return nil
	}
	switch c := d.b[d.i]; {
	case c == '{':
		m := map[string]any{}
		d.object("", true, func(key string) { m[key] = d.value(depth + 1) })
		return m
	case c == '[':
		a := []any{}
		d.array(func(int) { a = append(a, d.value(depth+1)) })
		return a
	case c == '"':
		return d.rawString()
	case c == 't':
		d.literal("true")
		return true
	case c == 'f':
		d.literal("false")
		return false
	case c == 'n':
		d.literal("null")
		return nil
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	}
	d.failAt("invalid character looking for a value")
	return nil
}

// skip consumes any value, checking its syntax.
func (d *decoder) skip(depth int) { _ = d.value(depth) }

func (d *decoder) number() json.Number {
	start := d.i
	b := d.b
	if b[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i < len(b) && b[d.i] == '0':
		d.i++
	case d.i < len(b) && b[d.i] >= '1' && b[d.i] <= '9':
		for d.i < len(b) && b[d.i] >= '0' && b[d.i] <= '9' {
			d.i++
		}
	default:
		d.failAt("invalid number")
		return ""
	}
	if d.i < len(b) && b[d.i] == '.' {
		d.i++
		if d.i >= len(b) || b[d.i] < '0' || b[d.i] > '9' {
			d.failAt("invalid number")
			return ""
		}
		for d.i < len(b) && b[d.i] >= '0' && b[d.i] <= '9' {
			d.i++
		}
	}
	if d.i < len(b) && (b[d.i] == 'e' || b[d.i] == 'E') {
		d.i++
		if d.i < len(b) && (b[d.i] == '+' || b[d.i] == '-') {
			d.i++
		}
		if d.i >= len(b) || b[d.i] < '0' || b[d.i] > '9' {
			d.failAt("invalid number")
			return ""
		}
		for d.i < len(b) && b[d.i] >= '0' && b[d.i] <= '9' {
			d.i++
		}
	}
	return json.Number(b[start:d.i])
}

// rawString parses a string at the cursor (on '"'), unescaping it. Invalid
// UTF-8 becomes U+FFFD, as in encoding/json.
func (d *decoder) rawString() string {
	b := d.b
	d.i++ // opening quote
	start := d.i
	// Fast path: printable ASCII without escapes.
	for d.i < len(b) {
		c := b[d.i]
		if c == '"' {
			s := string(b[start:d.i])
			d.i++
			return s
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		d.i++
	}
	out := make([]byte, 0, d.i-start+16)
	out = append(out, b[start:d.i]...)
	for d.i < len(b) {
		c := b[d.i]
		switch {
		case c == '"':
			d.i++
			return string(out)
		case c < 0x20:
			d.failAt("invalid control character in a string")
			return ""
		case c == '\\':
			d.i++
			if d.i >= len(b) {
				d.failAt("")
				return ""
			}
			e := b[d.i]
			d.i++
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := d.hex4()
				if !ok {
					return ""
				}
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if d.i+1 < len(b) && b[d.i] == '\\' && b[d.i+1] == 'u' {
						save := d.i
						d.i += 2
						var ok2 bool
						if r2, ok2 = d.hex4(); !ok2 {
							return ""
						}
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							out = utf8.AppendRune(out, dec)
							continue
						}
						d.i = save // not a pair: the second escape stands alone
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
			default:
				d.i--
				d.failAt("invalid escape in a string")
				return ""
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			d.i++
		default:
			r, size := utf8.DecodeRune(b[d.i:])
			d.i += size
			out = utf8.AppendRune(out, r) // RuneError for invalid bytes
		}
	}
	d.failAt("")
	return ""
}

func (d *decoder) hex4() (rune, bool) {
	if len(d.b)-d.i < 4 {
		d.i = len(d.b)
		d.failAt("")
		return 0, false
	}
	v, err := strconv.ParseUint(string(d.b[d.i:d.i+4]), 16, 32)
	if err != nil {
		d.failAt("invalid \\u escape")
		return 0, false
	}
	d.i += 4
	return rune(v), true
}

package dashboard

import (
	"sort"
	"strings"
)

// Field is one form control as the views draw it. Name is the API's field
// path ("variants.email.subject"), so a problem's errors[].field lands next
// to the control that produced it.
type Field struct {
	Name     string
	Label    string
	Value    string
	Hint     string
	Type     string // text (default), textarea, password, number, datetime-local, select, email
	Rows     int
	Options  []Option
	Errors   []string
	Required bool
	Mono     bool
	// Auto is the autocomplete attribute ("off" for secrets).
	Auto string
	// List names a datalist of suggestions.
	List string
}

// Option is one choice of a select.
type Option struct {
	Value, Label string
}

// ID is the control's element id.
func (f Field) ID() string { return "f-" + slug(f.Name) }

// ErrID is the id of the element holding the control's errors.
func (f Field) ErrID() string { return "err-" + slug(f.Name) }

// HintID is the id of the hint text.
func (f Field) HintID() string { return "hint-" + slug(f.Name) }

// Describedby lists the ids describing the control.
func (f Field) Describedby() string {
	var ids []string
	if f.Hint != "" {
		ids = append(ids, f.HintID())
	}
	if len(f.Errors) > 0 {
		ids = append(ids, f.ErrID())
	}
	return strings.Join(ids, " ")
}

func slug(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}

// fieldErrors sorts a problem's errors[] onto the form's controls: each error
// goes to the control whose name is the longest path prefix of the error's
// field ("recipients[2].email" → "recipients"); an error naming a deeper
// path than the control keeps that path in its message. The rest is listed
// at the top of the form.
type fieldErrors struct {
	by        map[string][]string
	unmatched []FieldError
}

func newFieldErrors(names []string, errs []FieldError) *fieldErrors {
	fe := &fieldErrors{by: map[string][]string{}}
	sorted := append([]string(nil), names...)
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	for _, e := range errs {
		target := ""
		for _, n := range sorted {
			if pathHasPrefix(e.Field, n) {
				target = n
				break
			}
		}
		if target == "" {
			fe.unmatched = append(fe.unmatched, e)
			continue
		}
		msg := e.Reason
		if e.Field != target {
			msg = e.Field + ": " + e.Reason
		}
		fe.by[target] = append(fe.by[target], msg)
	}
	return fe
}

// add records a locally found error for a control.
func (fe *fieldErrors) add(name, msg string) { fe.by[name] = append(fe.by[name], msg) }

func (fe *fieldErrors) get(name string) []string {
	if fe == nil {
		return nil
	}
	return fe.by[name]
}

func (fe *fieldErrors) any() bool { return fe != nil && (len(fe.by) > 0 || len(fe.unmatched) > 0) }

// summary lists every error for the top of the form: field, reason and the
// id of the control to jump to ("" when no control shows it).
func (fe *fieldErrors) summary(order []string) []errorLink {
	if fe == nil {
		return nil
	}
	var out []errorLink
	for _, n := range order {
		for _, m := range fe.by[n] {
			l := errorLink{Field: n, Message: m, Target: "f-" + slug(n)}
			if pathHasPrefix(strings.SplitN(m, ": ", 2)[0], n) {
				l.Field = "" // the message starts with the deeper path already
			}
			out = append(out, l)
		}
	}
	for _, e := range fe.unmatched {
		out = append(out, errorLink{Field: e.Field, Message: e.Reason})
	}
	return out
}

type errorLink struct {
	Field, Message, Target string
}

// pathHasPrefix reports whether field is prefix or lies below it
// ("a.b" and "a[0]" lie below "a"; "ab" does not).
func pathHasPrefix(field, prefix string) bool {
	if !strings.HasPrefix(field, prefix) {
		return false
	}
	if len(field) == len(prefix) {
		return true
	}
	c := field[len(prefix)]
	return c == '.' || c == '['
}

package templatesvc

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Helper functions available in every template besides Go's builtins. All of
// them are pure: no I/O, no clock, bounded output.
//
//	default D V     V unless it is empty (nil, "", false, an empty list or map), else D
//	upper V         V in upper case          lower V   V in lower case
//	trim V          V without surrounding white space
//	truncate N V    V cut to N characters (runes), with "…" appended when cut
//	join SEP LIST   the elements of LIST joined with SEP
//	date LAYOUT V [TZ]  V formatted with a Go layout or one of "date"
//	                (2006-01-02), "time" (15:04), "datetime" (2006-01-02 15:04),
//	                "rfc3339"; V is a time, an RFC 3339 or 2006-01-02 string,
//	                or Unix seconds (milliseconds when >= 1e12); TZ is an IANA
//	                zone (default UTC)
//	json V          V encoded as JSON (for webhook bodies)
//	printf          as Go's, but widths and precisions above 1000 are refused
var funcs = map[string]any{
	"default":  fnDefault,
	"upper":    func(v any) string { return strings.ToUpper(toString(v)) },
	"lower":    func(v any) string { return strings.ToLower(toString(v)) },
	"trim":     func(v any) string { return strings.TrimSpace(toString(v)) },
	"truncate": fnTruncate,
	"join":     fnJoin,
	"date":     fnDate,
	"json":     fnJSON,
	"printf":   fnPrintf,
}

// FuncNames lists the helper functions (for documentation and the API).
func FuncNames() []string {
	return []string{"default", "upper", "lower", "trim", "truncate", "join", "date", "json", "printf"}
}

func toString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return string(x)
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v)
}

// empty reports whether v counts as absent for default: nil, "", false, or
// an empty list or map. Numbers, zero included, are values.
func empty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case json.Number:
		return x == ""
	case bool:
		return !x
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Map, reflect.Array:
		return rv.Len() == 0
	case reflect.Pointer, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

func fnDefault(def, v any) any {
	if empty(v) {
		return def
	}
	return v
}

func fnTruncate(n int, v any) (string, error) {
	if n < 0 {
		return "", fmt.Errorf("truncate: negative length %d", n)
	}
	s := toString(v)
	if utf8.RuneCountInString(s) <= n {
		return s, nil
	}
	i, count := 0, 0
	for i = range s {
		if count == n {
			break
		}
		count++
	}
	return s[:i] + "…", nil
}

func fnJoin(sep string, list any) (string, error) {
	switch x := list.(type) {
	case nil:
		return "", nil
	case []string:
		return strings.Join(x, sep), nil
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = toString(e)
		}
		return strings.Join(parts, sep), nil
	}
	rv := reflect.ValueOf(list)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return "", fmt.Errorf("join: want a list, got %T", list)
	}
	parts := make([]string, rv.Len())
	for i := range parts {
		parts[i] = toString(rv.Index(i).Interface())
	}
	return strings.Join(parts, sep), nil
}

var namedLayouts = map[string]string{
	"date":     "2006-01-02",
	"time":     "15:04",
	"datetime": "2006-01-02 15:04",
	"rfc3339":  time.RFC3339,
}

var zones sync.Map // name -> *time.Location

func loadZone(name string) (*time.Location, error) {
	if l, ok := zones.Load(name); ok {
		return l.(*time.Location), nil
	}
	if name == "" || name == "Local" || len(name) > 64 {
		return nil, fmt.Errorf("date: unknown time zone %q", name)
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("date: unknown time zone %q", name)
	}
	zones.Store(name, l)
	return l, nil
}

func fnDate(layout string, v any, tz ...string) (string, error) {
	if l, ok := namedLayouts[layout]; ok {
		layout = l
	}
	if len(tz) > 1 {
		return "", fmt.Errorf("date: at most one time zone")
	}
	t, err := toTime(v)
	if err != nil {
		return "", err
	}
	loc := time.UTC
	if len(tz) == 1 {
		if loc, err = loadZone(tz[0]); err != nil {
			return "", err
		}
	}
	return t.In(loc).Format(layout), nil
}

func unixTime(f float64) (time.Time, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e15 {
		return time.Time{}, fmt.Errorf("date: %v is not a Unix time", f)
	}
	if math.Abs(f) >= 1e12 {
		return time.UnixMilli(int64(f)).UTC(), nil
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

func toTime(v any) (time.Time, error) {
	switch x := v.(type) {
	case time.Time:
		return x, nil
	case *time.Time:
		if x != nil {
			return *x, nil
		}
	case string:
		for _, l := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
			if t, err := time.Parse(l, x); err == nil {
				return t, nil
			}
		}
		return time.Time{}, fmt.Errorf("date: %q is not an RFC 3339 time or a 2006-01-02 date", x)
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("date: %q is not a number", string(x))
		}
		return unixTime(f)
	case int:
		return unixTime(float64(x))
	case int64:
		return unixTime(float64(x))
	case float64:
		return unixTime(x)
	}
	return time.Time{}, fmt.Errorf("date: cannot format %T as a date", v)
}

func fnJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("json: %v", err)
	}
	return string(b), nil
}

// maxWidth bounds printf widths and precisions so a template cannot ask for
// gigabytes of padding.
const maxWidth = 1000

func fnPrintf(format string, args ...any) (string, error) {
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		for i++; i < len(format); i++ {
			c := format[i]
			if c >= '0' && c <= '9' {
				j := i
				for j < len(format) && format[j] >= '0' && format[j] <= '9' {
					j++
				}
				if n, err := strconv.Atoi(format[i:j]); err != nil || n > maxWidth {
					return "", fmt.Errorf("printf: width or precision %s exceeds %d", format[i:j], maxWidth)
				}
				i = j - 1
				continue
			}
			if c == '*' {
				return "", fmt.Errorf("printf: * widths are not allowed")
			}
			if strings.IndexByte("+-# .[]", c) >= 0 {
				continue
			}
			break
		}
	}
	return fmt.Sprintf(format, args...), nil
}

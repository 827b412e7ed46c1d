package dashboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
)

// fmtTime shows an API timestamp in UTC to the second; unparseable values
// are shown as they came, "—" for none.
func fmtTime(s string) string {
	if s == "" {
		return "—"
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
}

// fmtRate shows a success rate (0..1) as a percentage; nil is "—".
func fmtRate(r *float64) string {
	if r == nil {
		return "—"
	}
	return strconv.FormatFloat(*r*100, 'f', 1, 64) + " %"
}

func fmtMS(ms float64) string {
	switch {
	case ms <= 0:
		return "—"
	case ms < 1000:
		return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
	case ms < 60_000:
		return strconv.FormatFloat(ms/1000, 'f', 2, 64) + " s"
	default:
		return strconv.FormatFloat(ms/60_000, 'f', 1, 64) + " min"
	}
}

func itoa[T ~int | ~int64](n T) string { return strconv.FormatInt(int64(n), 10) }

// prettyJSON indents a JSON value; invalid JSON is shown as it came.
func prettyJSON(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return string(raw)
	}
	return b.String()
}

// jsonString decodes a JSON string value; other JSON is shown compactly.
func jsonString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var m map[string]string
	if json.Unmarshal(raw, &m) == nil {
		return kvLines(m)
	}
	return string(raw)
}

// kvLines renders a string map as sorted "key=value" lines.
func kvLines(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(k + "=" + m[k])
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func joinOr(xs []string, none string) string {
	if len(xs) == 0 {
		return none
	}
	return strings.Join(xs, ", ")
}

// statusClass is the CSS class of a status badge.
func statusClass(s string) string {
	switch s {
	case "sent", "delivered", "done", "read":
		return "badge ok"
	case "failed", "expired", "cancelled":
		return "badge bad"
	case "skipped", "unread", "pending", "retrying":
		return "badge warn"
	}
	return "badge"
}

// flashText maps a ?flash= code to its fixed message (never echoing input).
func flashText(c *fiber.Ctx) string {
	switch c.Query("flash") {
	case "created":
		return "Template created."
	case "saved":
		if v, err := strconv.Atoi(c.Query("v")); err == nil && v > 0 {
			return fmt.Sprintf("Saved as version %d.", v)
		}
		return "Saved."
	case "deleted":
		return "Template deleted (its versions are kept)."
	case "resent":
		if n, err := strconv.Atoi(c.Query("n")); err == nil && n >= 0 {
			return fmt.Sprintf("%d failed deliveries were put back in the queue.", n)
		}
		return "The failed deliveries were put back in the queue."
	case "loggedout":
		return "You are logged out."
	case "rejected":
		return "The API no longer accepts your key; log in again."
	case "expired":
		return "Your session expired; log in again."
	}
	return ""
}

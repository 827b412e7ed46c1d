// Package smsmsg maps a Herald delivery onto the parts every SMS vendor
// needs: the recipient number, the vendor template id and its parameters.
package smsmsg

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"herald.dev/platform/contracts"
)

var (
	e164       = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	mainland11 = regexp.MustCompile(`^1[3-9][0-9]{9}$`)
)

// Phone returns the delivery address as E.164 ("+8613800000000"). Spaces
// and dashes are ignored; an 11-digit mainland China mobile number without
// a country code ("13800000000" or "0086…"/"86…" forms) is taken as +86.
// Anything else is a permanent failure.
func Phone(addr string) (string, error) {
	s := strings.NewReplacer(" ", "", "-", "", "(", "", ")", "").Replace(strings.TrimSpace(addr))
	switch {
	case strings.HasPrefix(s, "00"):
		s = "+" + s[2:]
	case mainland11.MatchString(s):
		s = "+86" + s
	case strings.HasPrefix(s, "86") && mainland11.MatchString(s[2:]):
		s = "+" + s
	}
	if !e164.MatchString(s) {
		return "", contracts.Permanent("not a phone number", fmt.Errorf("address %q is not an E.164 number", addr))
	}
	return s, nil
}

// Template returns the vendor template id of the delivery: the rendered
// content's VendorTemplate, else the provider's default. Without either the
// delivery cannot be sent (vendors only send approved templates).
func Template(d *contracts.Delivery, def string) (string, error) {
	if t := strings.TrimSpace(d.Content.VendorTemplate); t != "" {
		return t, nil
	}
	if def != "" {
		return def, nil
	}
	return "", contracts.Permanent("no SMS template", fmt.Errorf("delivery %s has no vendor template and the provider has no default template", d.ID))
}

// Ordered returns the template parameters as a list for vendors whose
// templates are positional ({1}, {2}, ...): keys named "1", "2", ... go to
// those positions (gaps become ""); otherwise the keys follow order (a
// provider's param_order setting) and then the remaining keys sorted.
func Ordered(params map[string]string, order []string) []string {
	if len(params) == 0 {
		return []string{}
	}
	numeric, maxN := true, 0
	for k := range params {
		n, err := strconv.Atoi(k)
		if err != nil || n < 1 || n > 64 {
			numeric = false
			break
		}
		maxN = max(maxN, n)
	}
	if numeric {
		out := make([]string, maxN)
		for k, v := range params {
			n, _ := strconv.Atoi(k)
			out[n-1] = v
		}
		return out
	}
	seen := map[string]bool{}
	var out []string
	for _, k := range order {
		if v, ok := params[k]; ok && !seen[k] {
			out = append(out, v)
			seen[k] = true
		}
	}
	var rest []string
	for k := range params {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		out = append(out, params[k])
	}
	return out
}

// SplitList splits a comma-separated setting.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

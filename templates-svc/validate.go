package templatesvc

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits.
const (
	MaxCodeLen        = 64
	MaxNameLen        = 200
	MaxCategoryLen    = 64
	MaxFieldLen       = 256 << 10 // bytes of one template field
	MaxParams         = 32
	MaxLocales        = 64
	MaxLocaleLen      = 35
	MaxVariables      = 100
	MaxVariableLen    = 64
	MaxDescriptionLen = 500
	DefaultPageLimit  = 50
	MaxPageLimit      = 500
)

// ValidCode reports whether s is a valid template code: 1-64 characters of
// [a-z0-9_.-].
func ValidCode(s string) bool {
	if len(s) == 0 || len(s) > MaxCodeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

const codeReason = "must be 1-64 characters of lowercase letters, digits and _ . -"

// validCategory: categories share profile-svc's alphabet (letters, digits,
// _ . : @ -), at most 64 characters.
func validCategory(s string) bool {
	if len(s) == 0 || len(s) > MaxCategoryLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == '.', c == ':', c == '@', c == '-':
		default:
			return false
		}
	}
	return true
}

// validLocale accepts tags such as "en", "zh-CN", "zh_Hant_TW", "es-419".
func validLocale(s string) bool {
	if len(s) < 2 || len(s) > MaxLocaleLen {
		return false
	}
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == '-' || r == '_' })
	if len(parts) == 0 || strings.Count(s, "-")+strings.Count(s, "_") != len(parts)-1 {
		return false
	}
	for i, p := range parts {
		if i == 0 && (len(p) < 2 || len(p) > 3) {
			return false
		}
		if len(p) > 8 {
			return false
		}
		for j := 0; j < len(p); j++ {
			c := p[j]
			letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
			if i == 0 && !letter || !letter && !(c >= '0' && c <= '9') {
				return false
			}
		}
	}
	return true
}

// validVarName: letters, digits, _ and -, not starting with '-', 1-64.
func validVarName(s string) bool {
	if len(s) == 0 || len(s) > MaxVariableLen || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func validParamKey(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// validate checks everything but template syntax (compile does that).
func validate(in *Input, fe *fieldErrs) {
	if !ValidCode(in.Code) {
		fe.add("code", codeReason)
	}
	in.Name = strings.TrimSpace(in.Name)
	switch {
	case in.Name == "":
		fe.add("name", "is required")
	case utf8.RuneCountInString(in.Name) > MaxNameLen:
		fe.add("name", "must be at most %d characters", MaxNameLen)
	case !utf8.ValidString(in.Name):
		fe.add("name", "must be valid UTF-8")
	}
	if in.Category != "" && !validCategory(in.Category) {
		fe.add("category", "must be 1-64 characters of letters, digits and _ . : @ -")
	}
	def := in.Variants.specs()
	if len(def) == 0 {
		fe.add("variants", "give at least one channel variant (%s)", strings.Join(VariantKeys, ", "))
	}
	validateVariants(def, "variants", fe)
	if len(in.Locales) > MaxLocales {
		fe.add("locales", "must have at most %d locales", MaxLocales)
	}
	defKeys := map[string]bool{}
	for _, sp := range def {
		defKeys[sp.key] = true
	}
	var seen []string
	for _, loc := range sortedKeys(in.Locales) {
		path := "locales." + loc
		if !validLocale(loc) {
			fe.add(path, "is not a locale tag such as en, en-US or zh-CN")
			continue
		}
		for _, s := range seen {
			if equalLocale(s, loc) {
				fe.add(path, "duplicates locale %q", s)
			}
		}
		seen = append(seen, loc)
		v := in.Locales[loc]
		specs := v.specs()
		if len(specs) == 0 {
			fe.add(path, "give at least one channel variant")
		}
		for _, sp := range specs {
			if !defKeys[sp.key] {
				fe.add(path+"."+sp.key, "the default variants have no %s variant: add one under variants so every locale can fall back to it", sp.key)
			}
		}
		validateVariants(specs, path, fe)
	}
	if len(in.Variables) > MaxVariables {
		fe.add("variables", "must have at most %d variables", MaxVariables)
	}
	names := map[string]bool{}
	for i, v := range in.Variables {
		path := "variables[" + strconv.Itoa(i) + "]"
		switch {
		case !validVarName(v.Name):
			fe.add(path+".name", "must be 1-64 characters of letters, digits, _ and - (not starting with -)")
		case names[v.Name]:
			fe.add(path+".name", "duplicates variable %q", v.Name)
		}
		names[v.Name] = true
		if utf8.RuneCountInString(v.Description) > MaxDescriptionLen {
			fe.add(path+".description", "must be at most %d characters", MaxDescriptionLen)
		}
	}
}

func validateVariants(specs []variantSpec, prefix string, fe *fieldErrs) {
	for _, sp := range specs {
		path := prefix + "." + sp.key
		get := func(name string) string {
			for _, f := range sp.fields {
				if f.name == name {
					return strings.TrimSpace(f.src)
				}
			}
			return ""
		}
		for _, f := range sp.fields {
			if len(f.src) > MaxFieldLen {
				fe.add(path+"."+f.name, "must be at most %d bytes", MaxFieldLen)
			}
			if !utf8.ValidString(f.src) {
				fe.add(path+"."+f.name, "must be valid UTF-8")
			}
		}
		switch sp.key {
		case "email":
			if get("subject") == "" {
				fe.add(path+".subject", "is required")
			}
			if get("text") == "" && get("html") == "" {
				fe.add(path+".text", "give text, html or both")
			}
		case "sms":
			if get("text") == "" && get("vendor_template") == "" {
				fe.add(path+".text", "give text or vendor_template")
			}
		case "inapp":
			if get("title") == "" && get("body") == "" {
				fe.add(path+".title", "give title, body or both")
			}
		case "chat", "wechat", "wecom", "dingtalk", "qq":
			if get("text") == "" && get("markdown") == "" && get("title") == "" && get("vendor_template") == "" {
				fe.add(path+".text", "give text, markdown, title or vendor_template")
			}
		case "otp":
			if get("text") == "" {
				fe.add(path+".text", "is required")
			}
		}
		if len(sp.params) > MaxParams {
			fe.add(path+".params", "must have at most %d entries", MaxParams)
		}
		for _, k := range sortedKeys(sp.params) {
			if !validParamKey(k) {
				fe.add(path+".params."+k, "keys must be 1-64 characters of letters, digits and _ . -")
			}
			if len(sp.params[k]) > MaxFieldLen {
				fe.add(path+".params."+k, "must be at most %d bytes", MaxFieldLen)
			}
		}
	}
}

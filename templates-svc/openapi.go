package templatesvc

// OpenAPI returns the OpenAPI 3.1 path items of the routes Mount adds, keyed
// by their full path under /v1, for the binary to merge into /openapi.json.
func OpenAPI() map[string]any {
	str := map[string]any{"type": "string"}
	tmplField := func(desc string) map[string]any {
		return map[string]any{"type": "string", "description": desc}
	}
	params := map[string]any{"type": "object", "additionalProperties": str, "description": "vendor template parameters; each value is a text template"}
	chat := map[string]any{"type": "object", "additionalProperties": false, "properties": map[string]any{
		"title": tmplField("card title"), "text": tmplField("plain text"), "markdown": tmplField("markdown body"),
		"url": tmplField("link"), "vendor_template": tmplField("vendor template id"), "params": params,
	}}
	variants := map[string]any{
		"type":                 "object",
		"additionalProperties": false,
		"description":          "per-channel variants; chat covers wechat, wecom, dingtalk and qq when they have none of their own",
		"properties": map[string]any{
			"email": map[string]any{"type": "object", "additionalProperties": false, "required": []string{"subject"}, "properties": map[string]any{
				"subject": tmplField("text/template"), "text": tmplField("text/template"), "html": tmplField("html/template (escaped)"),
			}},
			"sms": map[string]any{"type": "object", "additionalProperties": false, "properties": map[string]any{
				"text": tmplField("text/template"), "vendor_template": tmplField("vendor template id"), "params": params,
			}},
			"inapp": map[string]any{"type": "object", "additionalProperties": false, "properties": map[string]any{
				"title": tmplField("text/template"), "body": tmplField("text/template"),
			}},
			"chat": chat, "wechat": chat, "wecom": chat, "dingtalk": chat, "qq": chat,
			"otp": map[string]any{"type": "object", "additionalProperties": false, "required": []string{"text"}, "properties": map[string]any{
				"text": tmplField("text/template"), "subject": tmplField("text/template (email codes)"),
			}},
			"webhook": map[string]any{"type": "object", "additionalProperties": false, "properties": map[string]any{
				"body": tmplField("text/template, e.g. {{json .}}"),
			}},
		},
	}
	variable := map[string]any{"type": "object", "additionalProperties": false, "required": []string{"name"}, "properties": map[string]any{
		"name":        map[string]any{"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$"},
		"required":    map[string]any{"type": "boolean", "default": true},
		"sample":      map[string]any{"description": "any JSON value; fills the variable in previews"},
		"description": str,
	}}
	codeSchema := map[string]any{"type": "string", "pattern": "^[a-z0-9_.-]{1,64}$"}
	input := map[string]any{
		"type": "object", "additionalProperties": false, "required": []string{"code", "name", "variants"},
		"properties": map[string]any{
			"code":      codeSchema,
			"name":      map[string]any{"type": "string", "maxLength": MaxNameLen},
			"category":  map[string]any{"type": "string", "maxLength": MaxCategoryLen},
			"variants":  variants,
			"locales":   map[string]any{"type": "object", "additionalProperties": variants, "description": "locale tag -> variants; lookup falls back exact tag -> language -> default variants"},
			"variables": map[string]any{"type": "array", "items": variable, "description": "omit to derive the variables from the templates (all required)"},
			"version":   map[string]any{"type": "integer", "description": "PUT only: the version you edited; 409 if a newer one exists"},
		},
	}
	template := map[string]any{"type": "object", "properties": map[string]any{
		"code": codeSchema, "name": str, "category": str, "version": map[string]any{"type": "integer"},
		"channels": map[string]any{"type": "array", "items": str}, "variants": variants,
		"locales":   map[string]any{"type": "object", "additionalProperties": variants},
		"variables": map[string]any{"type": "array", "items": variable}, "variables_derived": map[string]any{"type": "boolean"},
		"created_at": map[string]any{"type": "string", "format": "date-time"}, "updated_at": map[string]any{"type": "string", "format": "date-time"},
	}}
	problem := map[string]any{"content": map[string]any{"application/problem+json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Problem"}}}}
	resp := func(desc string, schema map[string]any) map[string]any {
		r := map[string]any{"description": desc}
		if schema != nil {
			r["content"] = map[string]any{"application/json": map[string]any{"schema": schema}}
		}
		return r
	}
	errs := func(r map[string]any, codes ...string) map[string]any {
		for _, c := range codes {
			p := map[string]any{"description": map[string]string{"400": "Malformed request", "404": "Not found", "409": "Conflict", "415": "Unsupported media type", "422": "Invalid fields"}[c]}
			for k, v := range problem {
				p[k] = v
			}
			r[c] = p
		}
		return r
	}
	body := func(schema map[string]any) map[string]any {
		return map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": schema}}}
	}
	op := func(id, summary string, responses map[string]any) map[string]any {
		return map[string]any{"operationId": id, "summary": summary, "tags": []string{"templates"}, "responses": responses}
	}
	pathParam := func(name, desc string, schema map[string]any) map[string]any {
		return map[string]any{"name": name, "in": "path", "required": true, "description": desc, "schema": schema}
	}
	codeParam := pathParam("code", "template code", codeSchema)
	versionParam := pathParam("n", "version number", map[string]any{"type": "integer", "minimum": 1})
	limit := map[string]any{"name": "limit", "in": "query", "schema": map[string]any{"type": "integer", "minimum": 1, "maximum": MaxPageLimit, "default": DefaultPageLimit}}
	cursor := map[string]any{"name": "cursor", "in": "query", "schema": str, "description": "next_cursor of the previous page"}
	pageOf := func(item map[string]any) map[string]any {
		return map[string]any{"type": "object", "properties": map[string]any{"items": map[string]any{"type": "array", "items": item}, "next_cursor": str}}
	}
	summary := map[string]any{"type": "object", "properties": map[string]any{
		"code": codeSchema, "name": str, "category": str, "version": map[string]any{"type": "integer"},
		"channels":   map[string]any{"type": "array", "items": str},
		"created_at": map[string]any{"type": "string", "format": "date-time"}, "updated_at": map[string]any{"type": "string", "format": "date-time"},
	}}
	versionInfo := map[string]any{"type": "object", "properties": map[string]any{
		"version": map[string]any{"type": "integer"}, "name": str, "category": str,
		"channels": map[string]any{"type": "array", "items": str}, "created_at": map[string]any{"type": "string", "format": "date-time"},
	}}
	content := map[string]any{"type": "object", "properties": map[string]any{
		"locale": str, "subject": str, "text": str, "html": str, "title": str, "body": str, "markdown": str, "url": str,
		"vendor_template": str, "params": map[string]any{"type": "object", "additionalProperties": str},
	}}
	previewReq := map[string]any{"type": "object", "additionalProperties": false, "properties": map[string]any{
		"data": map[string]any{"type": "object"}, "locale": str, "channel": str, "version": map[string]any{"type": "integer", "minimum": 0},
	}}
	previewRes := map[string]any{"type": "object", "properties": map[string]any{
		"code": codeSchema, "version": map[string]any{"type": "integer"}, "locale": str, "data": map[string]any{"type": "object"},
		"channels": map[string]any{"type": "object", "additionalProperties": content},
	}}

	list := op("listTemplates", "List templates", errs(map[string]any{"200": resp("A page of templates", pageOf(summary))}, "422"))
	list["parameters"] = []any{limit, cursor, map[string]any{"name": "category", "in": "query", "schema": str}}
	create := op("createTemplate", "Create a template (version 1, or the next number after a deleted one)",
		errs(map[string]any{"201": resp("Created", template)}, "400", "409", "415", "422"))
	create["requestBody"] = body(input)
	get := op("getTemplate", "Get the latest version of a template", errs(map[string]any{"200": resp("The template", template)}, "404", "422"))
	update := op("updateTemplate", "Store a new version of a template", errs(map[string]any{"200": resp("The new version", template)}, "400", "404", "409", "415", "422"))
	update["requestBody"] = body(input)
	del := op("deleteTemplate", "Delete a template (versions are kept)", errs(map[string]any{"204": resp("Deleted", nil)}, "404", "422"))
	versions := op("listTemplateVersions", "List a template's versions, newest first", errs(map[string]any{"200": resp("A page of versions", pageOf(versionInfo))}, "404", "422"))
	version := op("getTemplateVersion", "Get one version of a template", errs(map[string]any{"200": resp("The version", template)}, "404", "422"))
	preview := op("previewTemplate", "Render a template without sending", errs(map[string]any{"200": resp("The rendering", previewRes)}, "400", "404", "415", "422"))
	preview["requestBody"] = body(previewReq)

	// parameters sit on each operation (not on the path item), so every key
	// of a path item is an HTTP method
	for _, o := range []map[string]any{get, update, del, preview} {
		o["parameters"] = []any{codeParam}
	}
	versions["parameters"] = []any{codeParam, limit, cursor}
	version["parameters"] = []any{codeParam, versionParam}
	return map[string]any{
		"/v1/templates":                     map[string]any{"get": list, "post": create},
		"/v1/templates/{code}":              map[string]any{"get": get, "put": update, "delete": del},
		"/v1/templates/{code}/versions":     map[string]any{"get": versions},
		"/v1/templates/{code}/versions/{n}": map[string]any{"get": version},
		"/v1/templates/{code}/preview":      map[string]any{"post": preview},
	}
}

// OpenAPI returns the package's OpenAPI fragment (see the package-level OpenAPI).
func (s *Service) OpenAPI() map[string]any { return OpenAPI() }

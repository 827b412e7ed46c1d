package providers

import "herald.dev/adapters/providers/vendor"

// OpenAPI returns the OpenAPI 3.1 paths this service mounts.
func (s *Service) OpenAPI() map[string]any {
	str := map[string]any{"type": "string"}
	settings := map[string]any{"type": "object", "additionalProperties": str,
		"description": "Provider settings; the keys depend on type (see docs/adapters.md). Secret settings are shown masked (all but the last 4 characters); sending a masked value back on PUT keeps the stored secret."}
	weight := map[string]any{"type": "integer", "minimum": 0, "maximum": vendor.MaxWeight, "default": vendor.DefaultWeight,
		"description": "share of the channel's traffic; 0 = failover standby only"}
	typ := map[string]any{"type": "string", "enum": vendor.Types()}
	provider := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"name": str, "type": typ, "channel": str, "weight": weight, "settings": settings,
			"source":     map[string]any{"type": "string", "enum": []string{"app", "default"}},
			"active":     map[string]any{"type": "boolean", "description": "defaults only: whether the default serves this app (it has no own provider on the channel)"},
			"created_at": map[string]any{"type": "string", "format": "date-time"},
			"updated_at": map[string]any{"type": "string", "format": "date-time"},
		},
	}
	problem := map[string]any{"$ref": "#/components/schemas/Problem"}
	resp := func(desc string, schema any) map[string]any {
		r := map[string]any{"description": desc}
		if schema != nil {
			ct := "application/json"
			if m, ok := schema.(map[string]any); ok && m["$ref"] != nil {
				ct = "application/problem+json"
			}
			r["content"] = map[string]any{ct: map[string]any{"schema": schema}}
		}
		return r
	}
	body := func(schema map[string]any) map[string]any {
		return map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": schema}}}
	}
	nameParam := []any{map[string]any{"name": "name", "in": "path", "required": true, "schema": map[string]any{"type": "string", "pattern": NamePattern.String()}}}
	op := func(summary string, params []any, reqBody map[string]any, responses map[string]any) map[string]any {
		o := map[string]any{"summary": summary, "tags": []string{"providers"}, "responses": responses}
		if params != nil {
			o["parameters"] = params
		}
		if reqBody != nil {
			o["requestBody"] = reqBody
		}
		return o
	}
	createSchema := map[string]any{
		"type": "object", "required": []string{"name", "type", "settings"}, "additionalProperties": false,
		"properties": map[string]any{"name": map[string]any{"type": "string", "pattern": NamePattern.String()}, "type": typ, "weight": weight, "settings": settings},
	}
	updateSchema := map[string]any{
		"type": "object", "required": []string{"settings"}, "additionalProperties": false,
		"properties": map[string]any{"type": typ, "weight": weight, "settings": settings},
	}
	testSchema := map[string]any{
		"type": "object", "additionalProperties": false,
		"properties": map[string]any{
			"to":       map[string]any{"type": "string", "description": "phone (E.164), openid or userid; not needed for group robots"},
			"text":     str,
			"template": map[string]any{"type": "string", "description": "vendor template id (SMS, WeChat); default: the provider's"},
			"params":   map[string]any{"type": "object", "additionalProperties": str},
		},
	}
	return map[string]any{
		"/v1/providers": map[string]any{
			"get": op("List the app's providers and the config defaults", nil, nil, map[string]any{
				"200": resp("providers and defaults", map[string]any{"type": "object", "properties": map[string]any{
					"providers": map[string]any{"type": "array", "items": provider},
					"defaults":  map[string]any{"type": "array", "items": provider},
				}}),
			}),
			"post": op("Add a provider (credentials are encrypted at rest)", nil, body(createSchema), map[string]any{
				"201": resp("created", provider), "409": resp("name taken", problem), "422": resp("invalid field", problem),
			}),
		},
		"/v1/providers/{name}": map[string]any{
			"get": op("Get a provider (secrets masked)", nameParam, nil, map[string]any{
				"200": resp("the provider", provider), "404": resp("not found", problem),
			}),
			"put": op("Replace a provider's type, weight and settings", nameParam, body(updateSchema), map[string]any{
				"200": resp("updated", provider), "404": resp("not found", problem), "422": resp("invalid field", problem),
			}),
			"delete": op("Delete a provider", nameParam, nil, map[string]any{
				"204": resp("deleted", nil), "404": resp("not found", problem),
			}),
		},
		"/v1/providers/{name}/test": map[string]any{
			"post": op("Send a test message through the provider", nameParam, body(testSchema), map[string]any{
				"200": resp("the vendor accepted it", map[string]any{"type": "object", "properties": map[string]any{
					"ok": map[string]any{"type": "boolean"}, "provider": str, "type": str, "channel": str, "delivery_id": str, "provider_message_id": str,
				}}),
				"404": resp("not found", problem), "422": resp("invalid field", problem),
				"502": resp("the vendor refused it (failure: permanent, retryable or provider_fault)", problem),
			}),
		},
	}
}

package profilesvc

// OpenAPI returns OpenAPI 3.1 "paths" entries for every route Mount
// registers, keyed by the full path the binary serves ("/v1/users/{id}").
// Schemas are inline so the binary can merge the map as is.
func (s *Service) OpenAPI() map[string]any {
	str := map[string]any{"type": "string"}
	id := map[string]any{"type": "string", "pattern": "^[A-Za-z0-9_.:@-]{1,128}$"}
	ts := map[string]any{"type": "string", "format": "date-time"}
	identities := obj(map[string]any{"wechat": str, "wecom": str, "dingtalk": str, "qq": str})
	userProps := map[string]any{
		"name":        map[string]any{"type": "string", "maxLength": MaxNameLen},
		"email":       map[string]any{"type": "string", "format": "email"},
		"phone":       map[string]any{"type": "string", "description": "E.164, e.g. +8613800138000"},
		"locale":      map[string]any{"type": "string", "description": "BCP 47 language tag, e.g. zh-CN"},
		"timezone":    map[string]any{"type": "string", "description": "IANA time zone, e.g. Asia/Shanghai"},
		"identities":  identities,
		"groups":      map[string]any{"type": "array", "items": id, "maxItems": MaxGroupsPerUser},
		"webhook_url": map[string]any{"type": "string", "format": "uri"},
	}
	userIn := obj(userProps)
	userIn["properties"].(map[string]any)["id"] = id
	user := obj(merge(userProps, map[string]any{"id": id, "created_at": ts, "updated_at": ts}))
	group := obj(map[string]any{"id": id, "name": str, "kind": map[string]any{"type": "string", "enum": []string{KindGroup, KindModule}},
		"parent": id, "created_at": ts, "updated_at": ts})
	groupIn := obj(map[string]any{"id": id, "name": str, "kind": map[string]any{"type": "string", "enum": []string{KindGroup, KindModule}}, "parent": id})
	boolMap := map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "boolean"}}
	prefs := obj(map[string]any{
		"channels":     boolMap,
		"categories":   map[string]any{"type": "object", "additionalProperties": boolMap},
		"unsubscribed": map[string]any{"type": "array", "items": str},
		"quiet_hours": map[string]any{"type": []string{"object", "null"}, "properties": map[string]any{
			"start": map[string]any{"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
			"end":   map[string]any{"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
		}},
	})
	page := func(item map[string]any) map[string]any {
		return obj(map[string]any{"items": map[string]any{"type": "array", "items": item}, "next_cursor": str})
	}
	importResult := obj(map[string]any{
		"imported": map[string]any{"type": "integer"},
		"failed":   map[string]any{"type": "integer"},
		"errors": map[string]any{"type": "array", "items": obj(map[string]any{
			"line": map[string]any{"type": "integer"}, "field": str, "reason": str})},
	})
	pathID := pathParam("id", id)
	pageParams := []any{
		map[string]any{"name": "limit", "in": "query", "schema": map[string]any{"type": "integer", "minimum": 1, "maximum": MaxPageLimit}},
		map[string]any{"name": "cursor", "in": "query", "schema": str},
	}
	tagU, tagG := []string{"profiles"}, []string{"profiles"}

	return map[string]any{
		"/v1/users": map[string]any{
			"get": op("listUsers", "List users", tagU, pageParams, nil, ok(page(user))),
		},
		"/v1/users/import": map[string]any{
			"post": merge(op("importUsers", "Bulk import users (streamed CSV or NDJSON)", tagU, nil, nil, ok(importResult)), map[string]any{
				"requestBody": map[string]any{"required": true, "content": map[string]any{
					"text/csv":             map[string]any{"schema": str},
					"application/x-ndjson": map[string]any{"schema": userIn},
				}},
			}),
		},
		"/v1/users/{id}": map[string]any{
			"put": op("putUser", "Create or replace a user", tagU, []any{pathID}, userIn, map[string]any{
				"200": resp("Replaced", user), "201": resp("Created", user), "404": problemRef(), "422": problemRef()}),
			"get":    op("getUser", "Get a user", tagU, []any{pathID}, nil, ok(user)),
			"delete": op("deleteUser", "Delete a user with memberships and preferences", tagU, []any{pathID}, nil, noContent()),
		},
		"/v1/users/{id}/preferences": map[string]any{
			"get": op("getPreferences", "Get a user's preferences", tagU, []any{pathID}, nil, ok(prefs)),
			"put": op("putPreferences", "Replace a user's preferences", tagU, []any{pathID}, prefs, ok(prefs)),
		},
		"/v1/users/{id}/unsubscribe": map[string]any{
			"post": op("unsubscribe", "Unsubscribe a user from a category", tagU, []any{pathID},
				obj(map[string]any{"category": str}), noContent()),
		},
		"/v1/users/{id}/unsubscribe/{category}": map[string]any{
			"delete": op("resubscribe", "Undo an unsubscribe", tagU, []any{pathID, pathParam("category", str)}, nil, noContent()),
		},
		"/v1/groups": map[string]any{
			"post": op("createGroup", "Create a group or module", tagG, nil, groupIn, map[string]any{
				"201": resp("Created", group), "409": problemRef(), "422": problemRef()}),
			"get": op("listGroups", "List groups and modules", tagG, append(pageParams,
				map[string]any{"name": "kind", "in": "query", "schema": map[string]any{"type": "string", "enum": []string{KindGroup, KindModule}}},
				map[string]any{"name": "parent", "in": "query", "schema": id},
				map[string]any{"name": "top_level", "in": "query", "schema": map[string]any{"type": "boolean"}},
			), nil, ok(page(group))),
		},
		"/v1/groups/{id}": map[string]any{
			"get":    op("getGroup", "Get a group", tagG, []any{pathID}, nil, ok(group)),
			"put":    op("putGroup", "Replace a group's name, kind and parent", tagG, []any{pathID}, groupIn, ok(group)),
			"delete": op("deleteGroup", "Delete a group (409 while it has subgroups)", tagG, []any{pathID}, nil, noContent()),
		},
		"/v1/groups/{id}/members": map[string]any{
			"post": op("addMembers", "Add users to a group (idempotent)", tagG, []any{pathID},
				obj(map[string]any{"user_ids": map[string]any{"type": "array", "items": id, "maxItems": MaxMembersPerCall}}),
				ok(obj(map[string]any{"added": map[string]any{"type": "integer"}}))),
			"get": op("listMembers", "List a group's members (nested=true includes subgroups)", tagG, append([]any{pathID,
				map[string]any{"name": "nested", "in": "query", "schema": map[string]any{"type": "boolean"}}}, pageParams...), nil, ok(page(user))),
		},
		"/v1/groups/{id}/members/{user_id}": map[string]any{
			"delete": op("removeMember", "Remove a user from a group", tagG, []any{pathID, pathParam("user_id", id)}, nil, noContent()),
		},
	}
}

func obj(props map[string]any) map[string]any {
	return map[string]any{"type": "object", "properties": props}
}

func merge(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func pathParam(name string, schema map[string]any) map[string]any {
	return map[string]any{"name": name, "in": "path", "required": true, "schema": schema}
}

func resp(desc string, schema map[string]any) map[string]any {
	return map[string]any{"description": desc, "content": map[string]any{"application/json": map[string]any{"schema": schema}}}
}

func problemRef() map[string]any {
	return map[string]any{"description": "Problem", "content": map[string]any{"application/problem+json": map[string]any{
		"schema": obj(map[string]any{"type": map[string]any{"type": "string"}, "title": map[string]any{"type": "string"},
			"status": map[string]any{"type": "integer"}, "code": map[string]any{"type": "string"}, "detail": map[string]any{"type": "string"},
			"errors": map[string]any{"type": "array", "items": obj(map[string]any{"field": map[string]any{"type": "string"}, "reason": map[string]any{"type": "string"}})}}),
	}}}
}

func ok(schema map[string]any) map[string]any {
	return map[string]any{"200": resp("OK", schema), "404": problemRef(), "422": problemRef()}
}

func noContent() map[string]any {
	return map[string]any{"204": map[string]any{"description": "No content"}, "404": problemRef()}
}

func op(id, summary string, tags []string, params []any, body map[string]any, responses map[string]any) map[string]any {
	o := map[string]any{"operationId": id, "summary": summary, "tags": tags, "responses": responses}
	if len(params) > 0 {
		o["parameters"] = params
	}
	if body != nil {
		o["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": body}}}
	}
	return o
}

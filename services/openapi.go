package services

// OpenAPI returns the OpenAPI 3.1 paths of every route the services mount.
func (s *Service) OpenAPI() map[string]any {
	return map[string]any{
		"/v1/notifications": map[string]any{
			"post": operation("Send a notification", "Accepts a notification (template or inline content) for 1 to 1000 recipients. "+
				"Answers once it is durably stored; Idempotency-Key makes retries safe.",
				nil, ref("SendRequest"), map[string]any{
					"202": resp("Accepted or scheduled", obj(props{"id": str(), "status": enum("accepted", "scheduled")})),
					"409": problem("Idempotency-Key reused with a different body"),
					"413": problem("Body too large"),
					"422": problem("Invalid field (named in errors[].field)"),
				}, header("Idempotency-Key", "Up to 255 visible ASCII characters")),
			"get": operation("List notifications", "Newest first, filtered; pages with next_cursor.",
				[]any{query("user_id", "string"), query("status", "string"), query("priority", "string"), query("category", "string"),
					query("channel", "string"), query("from", "string"), query("to", "string"), query("limit", "integer"), query("cursor", "string")},
				nil, map[string]any{
					"200": resp("A page of notifications", obj(props{"items": arr(ref("Notification")), "next_cursor": str()})),
					"422": problem("Bad filter (named in errors[].field)"),
				}),
		},
		"/v1/notifications/{id}": map[string]any{
			"get": operation("Get a notification with its deliveries", "", []any{path("id")}, nil, map[string]any{
				"200": resp("The notification", ref("Notification")),
				"404": problem("No such notification for this app"),
			}),
		},
		"/v1/notifications/{id}/resend": map[string]any{
			"post": operation("Resend the failed deliveries", "Failed deliveries go back to pending and the notification back on its lane.",
				[]any{path("id")}, nil, map[string]any{
					"202": resp("Resent", obj(props{"id": str(), "resent": integer()})),
					"404": problem("No such notification for this app"),
					"409": problem("Nothing failed"),
				}),
		},
		"/v1/users/{id}/inbox": map[string]any{
			"get": operation("List a user's inbox", "Newest first, with the unread and pending counts.",
				[]any{path("id"), query("kind", "string"), query("state", "string"), query("limit", "integer"), query("cursor", "string")},
				nil, map[string]any{
					"200": resp("A page of inbox items", obj(props{"items": arr(ref("InboxItem")), "next_cursor": str(), "unread": integer(), "pending": integer()})),
					"422": problem("Bad filter"),
				}),
		},
		"/v1/users/{id}/inbox/read-all": map[string]any{
			"post": operation("Mark every unread notice and reminder read", "", []any{path("id")}, nil, map[string]any{
				"200": resp("How many changed", obj(props{"read": integer()})),
			}),
		},
		"/v1/users/{id}/inbox/{item_id}/read": map[string]any{
			"post": operation("Mark a notice or reminder read", "", []any{path("id"), path("item_id")}, nil, map[string]any{
				"200": resp("The item", ref("InboxItem")),
				"404": problem("No such item"),
				"409": problem("The item is a to-do"),
			}),
		},
		"/v1/users/{id}/inbox/{item_id}/done": map[string]any{
			"post": operation("Mark a to-do done (by the user)", "", []any{path("id"), path("item_id")}, nil, map[string]any{
				"200": resp("The item", ref("InboxItem")),
				"404": problem("No such item"),
				"409": problem("The item is not a to-do"),
			}),
		},
		"/v1/todos/done": map[string]any{
			"post": operation("Complete to-dos by business key", "For one user (user_id) or everyone who got the to-do.",
				nil, obj(props{"todo_key": str(), "user_id": str()}, "todo_key"), map[string]any{
					"200": resp("How many changed", obj(props{"done": integer()})),
					"422": problem("Invalid body"),
				}),
		},
		"/v1/users/{id}/tokens": map[string]any{
			"post": operation("Issue a WebSocket token for a user", "Short-lived, for the browser to connect to /v1/ws.",
				[]any{path("id")}, nil, map[string]any{
					"201": resp("The token", obj(props{"token": str(), "expires_at": str(), "ws_url": str()})),
					"404": problem("Unknown user"),
				}),
		},
		"/v1/ws": map[string]any{
			"get": public(operation("Live inbox over WebSocket", "Authenticated by the token query parameter (not the API key). "+
				"Frames are {\"type\":\"item\"|\"state\",\"item\":{…}}; last_id replays the items after it first.",
				[]any{query("token", "string"), query("last_id", "string")}, nil, map[string]any{
					"101": map[string]any{"description": "Switching protocols"},
					"401": problem("Invalid or expired token"),
					"426": problem("Not a WebSocket request"),
				})),
		},
		"/v1/ws/client.js": map[string]any{
			"get": public(operation("JavaScript client (HeraldInbox.connect)", "", nil, nil, map[string]any{
				"200": map[string]any{"description": "JavaScript", "content": map[string]any{"application/javascript": map[string]any{}}},
			})),
		},
		"/inbox-demo": map[string]any{
			"get": public(operation("Demo page of the live inbox", "", nil, nil, map[string]any{
				"200": map[string]any{"description": "HTML", "content": map[string]any{"text/html": map[string]any{}}},
			})),
		},
	}
}

// schemas returns the component schemas the paths refer to.
func schemas() map[string]any {
	content := obj(props{"subject": str(), "text": str(), "html": str(), "title": str(), "body": str(), "markdown": str(), "url": str(),
		"vendor_template": str(), "params": map[string]any{"type": "object", "additionalProperties": str()}})
	recipient := obj(props{"user_id": str(), "group_id": str(), "email": str(), "phone": str()})
	return map[string]any{
		"SendRequest": obj(props{
			"template": str(), "content": map[string]any{"type": "object", "additionalProperties": content},
			"data": map[string]any{"type": "object"}, "recipients": arr(recipient), "channels": arr(str()),
			"priority": enum("high", "medium", "low"), "kind": enum("notice", "reminder", "todo"), "category": str(),
			"send_at": dateTime(), "expires_at": dateTime(), "todo_key": str(), "locale": str(), "fallback": arr(str()),
			"meta": map[string]any{"type": "object", "additionalProperties": str()},
		}, "recipients"),
		"Notification": obj(props{
			"id": str(), "status": str(), "priority": str(), "kind": str(), "category": str(), "template": str(),
			"template_version": integer(), "data": map[string]any{"type": "object"}, "recipients": arr(recipient),
			"channels": arr(str()), "send_at": dateTime(), "expires_at": dateTime(), "created_at": dateTime(),
			"dispatched_at": dateTime(), "completed_at": dateTime(), "error": str(),
			"deliveries": arr(obj(props{"id": str(), "user_id": str(), "recipient": str(), "channel": str(), "address": str(),
				"status": enum("pending", "queued", "sent", "delivered", "failed", "skipped", "expired"), "attempts": integer(),
				"error": str(), "parent_id": str(), "created_at": dateTime(), "updated_at": dateTime(), "sent_at": dateTime()})),
		}),
		"InboxItem": obj(props{
			"id": str(), "notification_id": str(), "kind": enum("notice", "reminder", "todo"), "category": str(), "title": str(),
			"body": str(), "state": enum("unread", "read", "pending", "done"), "todo_key": str(),
			"data": map[string]any{"type": "object"}, "created_at": dateTime(), "read_at": dateTime(), "done_at": dateTime(),
		}),
	}
}

type props map[string]any

func operation(summary, desc string, params []any, body map[string]any, responses map[string]any, extra ...map[string]any) map[string]any {
	o := map[string]any{"summary": summary, "responses": responses}
	if desc != "" {
		o["description"] = desc
	}
	for _, e := range extra {
		params = append(params, e)
	}
	if len(params) > 0 {
		o["parameters"] = params
	}
	if body != nil {
		o["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": body}}}
	}
	return o
}

func public(o map[string]any) map[string]any { o["security"] = []any{}; return o }

func path(name string) map[string]any {
	return map[string]any{"name": name, "in": "path", "required": true, "schema": str()}
}

func query(name, typ string) map[string]any {
	return map[string]any{"name": name, "in": "query", "schema": map[string]any{"type": typ}}
}

func header(name, desc string) map[string]any {
	return map[string]any{"name": name, "in": "header", "description": desc, "schema": str()}
}

func resp(desc string, schema map[string]any) map[string]any {
	return map[string]any{"description": desc, "content": map[string]any{"application/json": map[string]any{"schema": schema}}}
}

func problem(desc string) map[string]any {
	return map[string]any{"description": desc, "content": map[string]any{"application/problem+json": map[string]any{
		"schema": map[string]any{"$ref": "#/components/schemas/Problem"}}}}
}

func ref(name string) map[string]any {
	// Inline the schema: the binary merges only paths, not components.
	return schemas()[name].(map[string]any)
}

func obj(p props, required ...string) map[string]any {
	o := map[string]any{"type": "object", "properties": map[string]any(p)}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

func arr(items map[string]any) map[string]any { return map[string]any{"type": "array", "items": items} }
func str() map[string]any                     { return map[string]any{"type": "string"} }
func integer() map[string]any                 { return map[string]any{"type": "integer"} }
func dateTime() map[string]any                { return map[string]any{"type": "string", "format": "date-time"} }
func enum(vals ...string) map[string]any {
	return map[string]any{"type": "string", "enum": vals}
}

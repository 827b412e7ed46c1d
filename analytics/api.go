package analytics

import (
	"errors"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/auth"
	"herald.dev/platform/contracts"
	"herald.dev/platform/httpx"
)

// API serves the reporting routes over a Sink. Mount it on the /v1 router
// behind auth.Middleware: every query is scoped to the caller's app.
type API struct {
	sink Sink
	now  func() time.Time
}

// NewAPI returns the reporting API over sink.
func NewAPI(sink Sink) *API { return &API{sink: sink, now: time.Now} }

// Mount adds GET /analytics/summary, GET /analytics/series and
// GET /notifications/:id/events to r.
func (a *API) Mount(r fiber.Router) {
	r.Get("/analytics/summary", a.summary)
	r.Get("/analytics/series", a.series)
	r.Get("/notifications/:id/events", a.trace)
}

// Default ranges when from/to are omitted.
const (
	defaultSummaryRange = 24 * time.Hour
	defaultHourlyRange  = 24 * time.Hour
	defaultDailyRange   = 30 * 24 * time.Hour
)

// SeriesResponse is the body of GET /analytics/series.
type SeriesResponse struct {
	Bucket Bucket    `json:"bucket"`
	Type   string    `json:"type,omitempty"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Points []Point   `json:"points"`
}

// TraceResponse is the body of GET /notifications/:id/events.
type TraceResponse struct {
	NotificationID string            `json:"notification_id"`
	Events         []contracts.Event `json:"events"`
}

// checkParams rejects query parameters a route does not know.
func checkParams(c *fiber.Ctx, allowed ...string) error {
	var bad string
	c.Context().QueryArgs().VisitAll(func(k, _ []byte) {
		if bad != "" {
			return
		}
		name := string(k)
		for _, a := range allowed {
			if name == a {
				return
			}
		}
		bad = name
	})
	if bad != "" {
		return httpx.Invalid(bad, "unknown query parameter (allowed: %s)", strings.Join(allowed, ", "))
	}
	return nil
}

// parseTime reads an RFC 3339 timestamp or a YYYY-MM-DD date (UTC midnight).
func parseTime(c *fiber.Ctx, name string, def time.Time) (time.Time, error) {
	v := c.Query(name)
	if v == "" {
		return def, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, httpx.Invalid(name, "must be an RFC 3339 timestamp such as 2025-03-10T08:00:00Z or a date such as 2025-03-10")
}

// rangeParams reads from and to; a missing to is now, a missing from is to - def.
func (a *API) rangeParams(c *fiber.Ctx, def time.Duration) (time.Time, time.Time, error) {
	to, err := parseTime(c, "to", a.now())
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	from, err := parseTime(c, "from", to.Add(-def))
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	return from, to, nil
}

// queryProblem turns a sink's QueryError into a 422 naming the parameter.
func queryProblem(err error) error {
	var qe *QueryError
	if errors.As(err, &qe) {
		return httpx.Invalid(qe.Param, "%s", qe.Reason)
	}
	return err
}

func (a *API) summary(c *fiber.Ctx) error {
	if err := checkParams(c, "from", "to"); err != nil {
		return err
	}
	from, to, err := a.rangeParams(c, defaultSummaryRange)
	if err != nil {
		return err
	}
	s, err := a.sink.Summary(c.UserContext(), auth.AppID(c), from, to)
	if err != nil {
		return queryProblem(err)
	}
	return c.JSON(s)
}

func (a *API) series(c *fiber.Ctx) error {
	if err := checkParams(c, "from", "to", "bucket", "type"); err != nil {
		return err
	}
	bucket := Bucket(c.Query("bucket", string(Hour)))
	if !bucket.Valid() {
		return httpx.Invalid("bucket", "must be one of: hour, day")
	}
	typ := c.Query("type")
	if typ != "" && !KnownType(typ) {
		return httpx.Invalid("type", "must be one of: %s", strings.Join(EventTypes, ", "))
	}
	def := defaultHourlyRange
	if bucket == Day {
		def = defaultDailyRange
	}
	from, to, err := a.rangeParams(c, def)
	if err != nil {
		return err
	}
	pts, err := a.sink.Series(c.UserContext(), auth.AppID(c), from, to, bucket, typ)
	if err != nil {
		return queryProblem(err)
	}
	return c.JSON(SeriesResponse{Bucket: bucket, Type: typ, From: bucket.Floor(from), To: bucket.Ceil(to), Points: pts})
}

func (a *API) trace(c *fiber.Ctx) error {
	if err := checkParams(c); err != nil {
		return err
	}
	id := c.Params("id")
	if id == "" || len(id) > MaxIDLen {
		return httpx.Invalid("id", "must be a notification id of at most %d characters", MaxIDLen)
	}
	evs, err := a.sink.Events(c.UserContext(), auth.AppID(c), id)
	if err != nil {
		return queryProblem(err)
	}
	if len(evs) == 0 {
		// Another app's notification looks exactly like an unknown one.
		return httpx.NotFound("notification events", id)
	}
	return c.JSON(TraceResponse{NotificationID: id, Events: evs})
}

// OpenAPI returns the OpenAPI 3.1 path items of the routes Mount adds, as
// the /v1 router exposes them.
func (a *API) OpenAPI() map[string]any {
	str := map[string]any{"type": "string"}
	integer := map[string]any{"type": "integer"}
	number := map[string]any{"type": "number"}
	dateTime := map[string]any{"type": "string", "format": "date-time"}
	rateSchema := map[string]any{"type": []any{"number", "null"}, "minimum": 0, "maximum": 1,
		"description": "successes / (successes + failed), successes = max(sent, delivered) per channel; null when no delivery finished"}
	counts := map[string]any{"type": "object", "additionalProperties": integer, "description": "events per type"}
	types := make([]any, len(EventTypes))
	for i, t := range EventTypes {
		types[i] = t
	}
	timeParam := func(name, desc string) map[string]any {
		return map[string]any{"name": name, "in": "query", "required": false, "description": desc,
			"schema": map[string]any{"type": "string", "examples": []any{"2025-03-10T08:00:00Z", "2025-03-10"}}}
	}
	problem := func(desc string) map[string]any {
		return map[string]any{"description": desc, "content": map[string]any{
			"application/problem+json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Problem"}}}}
	}
	ok := func(desc string, schema map[string]any) map[string]any {
		return map[string]any{"description": desc, "content": map[string]any{"application/json": map[string]any{"schema": schema}}}
	}
	event := map[string]any{"type": "object", "properties": map[string]any{
		"app_id": str, "notification_id": str, "delivery_id": str, "user_id": str, "channel": str, "category": str,
		"priority": str, "type": map[string]any{"type": "string", "enum": types}, "error": str, "at": dateTime,
		"latency_ms": map[string]any{"type": "integer", "description": "time from acceptance to this event"},
	}}
	summary := map[string]any{"type": "object", "properties": map[string]any{
		"from": dateTime, "to": dateTime, "counts": counts,
		"channels": map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "object", "properties": map[string]any{
			"counts": counts, "success_rate": rateSchema, "avg_latency_ms": number, "max_latency_ms": integer}}},
		"success_rate":   rateSchema,
		"avg_latency_ms": map[string]any{"type": "number", "description": "mean time from acceptance to sent"},
		"max_latency_ms": map[string]any{"type": "integer", "description": "longest time from acceptance to sent"},
	}}
	series := map[string]any{"type": "object", "properties": map[string]any{
		"bucket": str, "type": str, "from": dateTime, "to": dateTime,
		"points": map[string]any{"type": "array", "items": map[string]any{"type": "object", "properties": map[string]any{
			"t": dateTime, "count": integer, "avg_latency_ms": number, "max_latency_ms": integer}}},
	}}
	op := func(summaryText, desc string, params []any, okResp map[string]any, extra map[string]any) map[string]any {
		resp := map[string]any{
			"200": okResp,
			"401": problem("Missing or invalid API key"),
			"422": problem("A query parameter is invalid; errors[0].field names it"),
		}
		for k, v := range extra {
			resp[k] = v
		}
		return map[string]any{"get": map[string]any{"summary": summaryText, "description": desc, "tags": []string{"analytics"},
			"parameters": params, "responses": resp}}
	}
	return map[string]any{
		"/v1/analytics/summary": op("Delivery summary over a time range",
			"Counts per event type and per channel, success rate and latency to sent for the caller's app. The range is rounded outward to whole UTC hours; default the last 24 hours; at most 400 days.",
			[]any{timeParam("from", "range start (default: to - 24h)"), timeParam("to", "range end, exclusive (default: now)")},
			ok("The summary", summary), nil),
		"/v1/analytics/series": op("Event counts per hour or day",
			"One point per UTC bucket in the range (rounded outward), zero-filled; at most 800 points.",
			[]any{
				timeParam("from", "range start (default: to - 24h for hour buckets, to - 30d for day buckets)"),
				timeParam("to", "range end, exclusive (default: now)"),
				map[string]any{"name": "bucket", "in": "query", "required": false, "schema": map[string]any{"type": "string", "enum": []any{"hour", "day"}, "default": "hour"}},
				map[string]any{"name": "type", "in": "query", "required": false, "description": "count only this event type (default: every type)",
					"schema": map[string]any{"type": "string", "enum": types}},
			},
			ok("The series", series), nil),
		"/v1/notifications/{id}/events": op("A notification's event trace",
			"Every recorded state change of the notification and its deliveries, oldest first. Raw events are kept for the retention period.",
			[]any{map[string]any{"name": "id", "in": "path", "required": true, "schema": str}},
			ok("The trace", map[string]any{"type": "object", "properties": map[string]any{
				"notification_id": str, "events": map[string]any{"type": "array", "items": event}}}),
			map[string]any{"404": problem("No events for this notification in the caller's app")}),
	}
}

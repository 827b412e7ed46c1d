// Package analytics records Herald's tracker events and answers reporting
// queries over them.
//
// Producers (the API and outbound) call Tracker.Track, which copies events
// into a bounded in-memory buffer and never blocks; a background flusher
// writes them in batches to a Sink. Two sinks pass the same conformance
// suite (analyticstest): sqlstore (the main SQLite/MySQL database, the
// embedded default) and cassandra (production). Each keeps the raw events
// (for a notification's trace) and maintains hourly and daily rollup
// counters per (app, bucket, event type, channel, category) on write, so
// reports read a few rollup rows instead of scanning events.
//
// Analytics is best-effort: when the buffer is full events are dropped and
// counted, and a batch that still fails after a few retries is discarded
// and counted. The state of every notification and delivery is durable in
// the message store; analytics only observes it.
package analytics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

// Sink stores events and answers the reporting queries. Implementations are
// safe for concurrent use.
type Sink interface {
	// WriteEvents stores a batch of events and adds them to the rollups.
	// Events without an app id or type are ignored; over-long strings are
	// truncated (see Clean).
	WriteEvents(ctx context.Context, events []contracts.Event) error
	// Summary totals an app's events in [from, to), rounded outward to whole
	// UTC hours.
	Summary(ctx context.Context, appID string, from, to time.Time) (Summary, error)
	// Series returns one point per bucket in [from, to), rounded outward to
	// whole buckets, counting events of eventType ("" = every type). Buckets
	// without events are present with zero counts.
	Series(ctx context.Context, appID string, from, to time.Time, bucket Bucket, eventType string) ([]Point, error)
	// Events returns a notification's events (its trace) in time order; an
	// unknown notification has no events.
	Events(ctx context.Context, appID, notificationID string) ([]contracts.Event, error)
}

// Sweeper deletes raw events recorded before a time (the retention sweep).
// Rollups are kept. The SQL sink implements it; Cassandra expires events
// with a TTL instead.
type Sweeper interface {
	Sweep(ctx context.Context, before time.Time) (int64, error)
}

// ErrInvalidQuery wraps every rejected query parameter.
var ErrInvalidQuery = errors.New("invalid analytics query")

// QueryError names the bad parameter of a rejected query.
type QueryError struct {
	Param  string
	Reason string
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("%v: %s: %s", ErrInvalidQuery, e.Param, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidQuery) true.
func (e *QueryError) Unwrap() error { return ErrInvalidQuery }

func invalid(param, reason string, args ...any) error {
	return &QueryError{Param: param, Reason: fmt.Sprintf(reason, args...)}
}

// Bucket is a rollup granularity.
type Bucket string

const (
	Hour Bucket = "hour"
	Day  Bucket = "day"
)

// Duration returns the bucket's length.
func (b Bucket) Duration() time.Duration {
	if b == Day {
		return 24 * time.Hour
	}
	return time.Hour
}

// Valid reports whether b is hour or day.
func (b Bucket) Valid() bool { return b == Hour || b == Day }

// Floor returns the start of the UTC bucket holding t.
func (b Bucket) Floor(t time.Time) time.Time { return t.UTC().Truncate(b.Duration()) }

// Ceil returns the first bucket boundary at or after t.
func (b Bucket) Ceil(t time.Time) time.Time {
	f := b.Floor(t)
	if f.Equal(t) {
		return f
	}
	return f.Add(b.Duration())
}

// EventTypes lists every event type the tracker records.
var EventTypes = []string{
	contracts.EventAccepted, contracts.EventScheduled, contracts.EventQueued, contracts.EventSent,
	contracts.EventDelivered, contracts.EventFailed, contracts.EventRetrying, contracts.EventSkipped,
	contracts.EventExpired, contracts.EventRead, contracts.EventDone,
}

// KnownType reports whether t is one of EventTypes.
func KnownType(t string) bool {
	for _, k := range EventTypes {
		if k == t {
			return true
		}
	}
	return false
}

// Query limits: a Summary spans at most MaxSummaryRange, a Series at most
// MaxSeriesPoints buckets.
const (
	MaxSummaryRange = 400 * 24 * time.Hour
	MaxSeriesPoints = 800
)

// CheckSummary validates a Summary query.
func CheckSummary(appID string, from, to time.Time) error {
	if appID == "" {
		return invalid("app_id", "is required")
	}
	if !from.Before(to) {
		return invalid("from", "must be before to")
	}
	if to.Sub(from) > MaxSummaryRange {
		return invalid("from", "the range may span at most %d days", int(MaxSummaryRange/(24*time.Hour)))
	}
	return nil
}

// CheckSeries validates a Series query.
func CheckSeries(appID string, from, to time.Time, bucket Bucket, eventType string) error {
	if appID == "" {
		return invalid("app_id", "is required")
	}
	if !bucket.Valid() {
		return invalid("bucket", "must be one of: hour, day")
	}
	if eventType != "" && !KnownType(eventType) {
		return invalid("type", "must be one of: %s", strings.Join(EventTypes, ", "))
	}
	if !from.Before(to) {
		return invalid("from", "must be before to")
	}
	if n := bucket.Ceil(to).Sub(bucket.Floor(from)) / bucket.Duration(); n > MaxSeriesPoints {
		return invalid("from", "the range holds %d %s buckets, at most %d are allowed", n, bucket, MaxSeriesPoints)
	}
	return nil
}

// Span is a half-open time range [From, To) read at one granularity.
type Span struct {
	Bucket   Bucket
	From, To time.Time
}

// SummarySpans splits [from, to), rounded outward to whole hours, into the
// rollup ranges that cover it: hourly rollups for the partial days at the
// edges and daily rollups for the whole days between them.
func SummarySpans(from, to time.Time) []Span {
	start, end := Hour.Floor(from), Hour.Ceil(to)
	d0, d1 := Day.Ceil(start), Day.Floor(end)
	if !d0.Before(d1) {
		return []Span{{Hour, start, end}}
	}
	var out []Span
	if start.Before(d0) {
		out = append(out, Span{Hour, start, d0})
	}
	out = append(out, Span{Day, d0, d1})
	if d1.Before(end) {
		out = append(out, Span{Hour, d1, end})
	}
	return out
}

// Summary totals an app's events over a range.
type Summary struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Counts holds every event type, zero when none happened.
	Counts map[string]int64 `json:"counts"`
	// Channels holds per-channel figures for the channels that had events.
	Channels map[string]ChannelSummary `json:"channels"`
	// SuccessRate is successes / (successes + failed) over every channel,
	// where a channel's successes are max(sent, delivered); nil when no
	// delivery finished.
	SuccessRate *float64 `json:"success_rate"`
	// AvgLatencyMS and MaxLatencyMS describe the time from acceptance to
	// "sent" over the sent events that carry a latency.
	AvgLatencyMS float64 `json:"avg_latency_ms"`
	MaxLatencyMS int64   `json:"max_latency_ms"`
}

// ChannelSummary is one channel's part of a Summary.
type ChannelSummary struct {
	Counts       map[string]int64 `json:"counts"`
	SuccessRate  *float64         `json:"success_rate"`
	AvgLatencyMS float64          `json:"avg_latency_ms"`
	MaxLatencyMS int64            `json:"max_latency_ms"`
}

// Point is one bucket of a Series.
type Point struct {
	Time  time.Time `json:"t"`
	Count int64     `json:"count"`
	// AvgLatencyMS and MaxLatencyMS cover the bucket's events that carry a
	// latency (for type=sent: acceptance to sent).
	AvgLatencyMS float64 `json:"avg_latency_ms"`
	MaxLatencyMS int64   `json:"max_latency_ms"`
}

// Cell is one aggregated rollup figure, the unit sinks read back.
type Cell struct {
	Type       string
	Channel    string
	Events     int64
	LatencySum int64
	LatencyN   int64
	LatencyMax int64
}

// BuildSummary folds rollup cells into a Summary.
func BuildSummary(from, to time.Time, cells []Cell) Summary {
	s := Summary{From: Hour.Floor(from), To: Hour.Ceil(to), Counts: map[string]int64{}, Channels: map[string]ChannelSummary{}}
	for _, t := range EventTypes {
		s.Counts[t] = 0
	}
	type acc struct {
		counts           map[string]int64
		latSum, latN     int64
		latMax           int64
		sent, deliv, bad int64
	}
	chans := map[string]*acc{}
	var latSum, latN int64
	for _, c := range cells {
		if c.Events == 0 {
			continue
		}
		s.Counts[c.Type] += c.Events
		if c.Channel == "" {
			continue
		}
		a := chans[c.Channel]
		if a == nil {
			a = &acc{counts: map[string]int64{}}
			chans[c.Channel] = a
		}
		a.counts[c.Type] += c.Events
		switch c.Type {
		case contracts.EventSent:
			a.sent += c.Events
			a.latSum += c.LatencySum
			a.latN += c.LatencyN
			a.latMax = max(a.latMax, c.LatencyMax)
		case contracts.EventDelivered:
			a.deliv += c.Events
		case contracts.EventFailed:
			a.bad += c.Events
		}
	}
	// Notification-level sent events (no channel) still count for latency.
	for _, c := range cells {
		if c.Type == contracts.EventSent && c.Channel == "" {
			latSum += c.LatencySum
			latN += c.LatencyN
			s.MaxLatencyMS = max(s.MaxLatencyMS, c.LatencyMax)
		}
	}
	var good, bad int64
	for name, a := range chans {
		cs := ChannelSummary{Counts: a.counts, MaxLatencyMS: a.latMax, AvgLatencyMS: avg(a.latSum, a.latN)}
		g := max(a.sent, a.deliv)
		cs.SuccessRate = rate(g, a.bad)
		good += g
		bad += a.bad
		latSum += a.latSum
		latN += a.latN
		s.MaxLatencyMS = max(s.MaxLatencyMS, a.latMax)
		s.Channels[name] = cs
	}
	s.SuccessRate = rate(good, bad)
	s.AvgLatencyMS = avg(latSum, latN)
	return s
}

func rate(good, bad int64) *float64 {
	if good+bad == 0 {
		return nil
	}
	r := float64(good) / float64(good+bad)
	return &r
}

func avg(sum, n int64) float64 {
	if n == 0 {
		return 0
	}
	return math.Round(float64(sum)/float64(n)*100) / 100
}

// BucketCell is one bucket's aggregated figures, as sinks read them for Series.
type BucketCell struct {
	Start      time.Time
	Events     int64
	LatencySum int64
	LatencyN   int64
	LatencyMax int64
}

// FillSeries returns one point per bucket in [from, to) rounded outward,
// summing the cells that fall into each bucket.
func FillSeries(from, to time.Time, bucket Bucket, cells []BucketCell) []Point {
	start, end := bucket.Floor(from), bucket.Ceil(to)
	n := int(end.Sub(start) / bucket.Duration())
	type acc struct{ ev, sum, cnt, mx int64 }
	accs := make([]acc, n)
	for _, c := range cells {
		i := int(bucket.Floor(c.Start).Sub(start) / bucket.Duration())
		if i < 0 || i >= n {
			continue
		}
		accs[i].ev += c.Events
		accs[i].sum += c.LatencySum
		accs[i].cnt += c.LatencyN
		accs[i].mx = max(accs[i].mx, c.LatencyMax)
	}
	out := make([]Point, n)
	for i := range out {
		out[i] = Point{Time: start.Add(time.Duration(i) * bucket.Duration()), Count: accs[i].ev,
			AvgLatencyMS: avg(accs[i].sum, accs[i].cnt), MaxLatencyMS: accs[i].mx}
	}
	return out
}

// Column limits shared by the sinks' schemas.
const (
	MaxIDLen       = 64
	MaxUserLen     = 191
	MaxChannelLen  = 32
	MaxCategoryLen = 128
	MaxTypeLen     = 32
	MaxPriorityLen = 16
	MaxErrorLen    = 1000
)

// Clean returns the storable events of a batch: events without an app id or
// a type are dropped, strings are cut to the column limits (on a UTF-8
// boundary), negative latencies become 0 and a zero time becomes now. The
// input is not modified.
func Clean(events []contracts.Event) []contracts.Event {
	out := make([]contracts.Event, 0, len(events))
	var now time.Time
	for _, e := range events {
		if e.AppID == "" || e.Type == "" || len(e.AppID) > MaxIDLen {
			continue
		}
		e.NotificationID = cut(e.NotificationID, MaxIDLen)
		e.DeliveryID = cut(e.DeliveryID, MaxIDLen)
		e.UserID = cut(e.UserID, MaxUserLen)
		e.Channel = domain.Channel(cut(string(e.Channel), MaxChannelLen))
		e.Category = cut(e.Category, MaxCategoryLen)
		e.Type = cut(e.Type, MaxTypeLen)
		e.Priority = domain.Priority(cut(string(e.Priority), MaxPriorityLen))
		e.Error = cut(e.Error, MaxErrorLen)
		if e.LatencyMS < 0 {
			e.LatencyMS = 0
		}
		if e.At.IsZero() {
			if now.IsZero() {
				now = time.Now()
			}
			e.At = now
		}
		e.At = e.At.UTC()
		out = append(out, e)
	}
	return out
}

// cut shortens s to at most n bytes without splitting a UTF-8 sequence and
// replaces invalid UTF-8.
func cut(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// RollupKey identifies one rollup counter row.
type RollupKey struct {
	AppID    string
	Bucket   Bucket
	Start    time.Time
	Type     string
	Channel  string
	Category string
}

// RollupDelta is what one batch adds to a rollup row.
type RollupDelta struct {
	Key        RollupKey
	Events     int64
	LatencySum int64
	LatencyN   int64
	LatencyMax int64
}

// Rollups aggregates a cleaned batch into hourly and daily deltas, sorted by
// key so that concurrent writers touch rows in the same order.
func Rollups(events []contracts.Event) []RollupDelta {
	m := make(map[RollupKey]*RollupDelta, 16)
	for _, e := range events {
		for _, b := range []Bucket{Hour, Day} {
			k := RollupKey{AppID: e.AppID, Bucket: b, Start: b.Floor(e.At), Type: e.Type, Channel: string(e.Channel), Category: e.Category}
			d := m[k]
			if d == nil {
				d = &RollupDelta{Key: k}
				m[k] = d
			}
			d.Events++
			if e.LatencyMS > 0 {
				d.LatencySum += e.LatencyMS
				d.LatencyN++
				d.LatencyMax = max(d.LatencyMax, e.LatencyMS)
			}
		}
	}
	out := make([]RollupDelta, 0, len(m))
	for _, d := range m {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key.less(out[j].Key) })
	return out
}

func (a RollupKey) less(b RollupKey) bool {
	switch {
	case a.AppID != b.AppID:
		return a.AppID < b.AppID
	case a.Bucket != b.Bucket:
		return a.Bucket < b.Bucket
	case !a.Start.Equal(b.Start):
		return a.Start.Before(b.Start)
	case a.Type != b.Type:
		return a.Type < b.Type
	case a.Channel != b.Channel:
		return a.Channel < b.Channel
	}
	return a.Category < b.Category
}

// SortEvents orders a trace by time, then by the order the sink returned.
func SortEvents(events []contracts.Event) {
	sort.SliceStable(events, func(i, j int) bool { return events[i].At.Before(events[j].At) })
}

// Package cassandra is the analytics sink on Apache Cassandra (gocql, native
// protocol v3, so it runs against Cassandra 2.1 and later).
//
// Schema (created if missing, in a SimpleStrategy keyspace):
//
//	events_by_day          ((app_id, day), at, id)              raw events of an app's UTC day, TTL'd
//	events_by_notification ((app_id, notification_id), at, id)  a notification's trace, TTL'd
//	rollup_hour            ((app_id, day), hour, type, channel, category)   counters
//	rollup_day             ((app_id, year), day, type, channel, category)   counters
//	latency_max_hour       ((app_id, day), hour, type, channel, category, latency_max)
//	latency_max_day        ((app_id, year), day, type, channel, category, latency_max)
//
// day is the number of days since the Unix epoch (Cassandra 2.1 has no date
// type). Counters hold events, latency_sum and latency_n; a maximum cannot be
// a counter, so each batch inserts its per-row maximum as a clustering value
// into latency_max_* (only when it beats the maximum this process has already
// written) and readers take the largest.
//
// Event ids are version-1 UUIDs made from the event's time and a hash of its
// content, so a retried batch rewrites the same event rows. Counter updates
// are not idempotent: a batch retried after a partial failure may count some
// events twice, which best-effort analytics accepts.
package cassandra

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/gocql/gocql"

	"herald.dev/analytics"
	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

// Config configures the sink.
type Config struct {
	// Hosts are contact points, "host" or "host:port" (default port 9042).
	Hosts []string
	// Keyspace is created when missing (default "herald").
	Keyspace string
	// ReplicationFactor of the SimpleStrategy keyspace it creates (default 1).
	ReplicationFactor int
	// EventTTL expires raw events (default 30 days; negative keeps them
	// forever). Rollups have no TTL.
	EventTTL time.Duration
	// Consistency of reads and writes (default QUORUM).
	Consistency gocql.Consistency
	// ProtoVersion is the native protocol version (default 3).
	ProtoVersion int
	// Timeout bounds each request (default 10s) and ConnectTimeout each
	// connection attempt (default 5s).
	Timeout        time.Duration
	ConnectTimeout time.Duration
	// Username and Password enable PasswordAuthenticator.
	Username, Password string
	// Concurrency bounds the statements one call runs in parallel (default 16).
	Concurrency int
	// HostLookup lets the driver discover the ring from system.peers
	// (token-aware routing). Off by default: it connects to Hosts only,
	// which is what a Cassandra 2.1 test node needs.
	HostLookup bool
}

// FromConfig maps Herald's analytics configuration: hosts, keyspace, and
// the retention as the events' TTL (0 keeps them forever, as it disables the
// SQL sweep).
func FromConfig(a config.Analytics) Config {
	c := Config{Hosts: a.CassandraHosts, Keyspace: a.CassandraKeyspace, EventTTL: a.Retention}
	if a.Retention <= 0 {
		c.EventTTL = -1
	}
	return c
}

func (c *Config) defaults() {
	if c.Keyspace == "" {
		c.Keyspace = "herald"
	}
	if c.ReplicationFactor <= 0 {
		c.ReplicationFactor = 1
	}
	if c.EventTTL == 0 {
		c.EventTTL = 30 * 24 * time.Hour
	}
	if c.Consistency == 0 {
		c.Consistency = gocql.Quorum
	}
	if c.ProtoVersion == 0 {
		c.ProtoVersion = 3
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
}

var keyspaceRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,47}$`)

// MaxTrace caps the events Events returns for one notification.
const MaxTrace = 10000

// batchRows caps the statements of one batch.
const batchRows = 50

// maxCacheRows bounds the remembered per-row latency maxima.
const maxCacheRows = 200000

// Store implements analytics.Sink on Cassandra.
type Store struct {
	s   *gocql.Session
	cfg Config
	ttl int

	mu      sync.Mutex
	maxSeen map[analytics.RollupKey]int64

	q queries
}

var _ analytics.Sink = (*Store)(nil)

type queries struct {
	insDay, insNtf              string
	incHour, incDay             string
	maxHour, maxDay             string
	selHour, selDay             string
	selMaxHour, selMaxDay       string
	selHourSeries, selDaySeries string
	selMaxHourS, selMaxDayS     string
	trace                       string
}

// Open connects, creates the keyspace and tables when missing and returns the store.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.defaults()
	if len(cfg.Hosts) == 0 {
		return nil, errors.New("cassandra: no hosts configured (analytics.cassandra_hosts / HERALD_CASSANDRA_HOSTS)")
	}
	if !keyspaceRE.MatchString(cfg.Keyspace) {
		return nil, fmt.Errorf("cassandra: keyspace %q: want a letter then letters, digits or _ (at most 48)", cfg.Keyspace)
	}
	cl := gocql.NewCluster(cfg.Hosts...)
	cl.ProtoVersion = cfg.ProtoVersion
	cl.DisableInitialHostLookup = !cfg.HostLookup
	cl.Consistency = cfg.Consistency
	cl.Timeout = cfg.Timeout
	cl.ConnectTimeout = cfg.ConnectTimeout
	cl.NumConns = 2
	if cfg.Username != "" {
		cl.Authenticator = gocql.PasswordAuthenticator{Username: cfg.Username, Password: cfg.Password}
	}
	sess, err := cl.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("cassandra: connect to %v: %w", cfg.Hosts, err)
	}
	st := &Store{s: sess, cfg: cfg, maxSeen: map[analytics.RollupKey]int64{}}
	if cfg.EventTTL > 0 {
		st.ttl = int(cfg.EventTTL / time.Second)
	}
	if err := st.migrate(ctx); err != nil {
		sess.Close()
		return nil, err
	}
	st.prepare()
	return st, nil
}

// Close closes the session.
func (s *Store) Close() { s.s.Close() }

// Session returns the underlying gocql session (for tests and tooling).
func (s *Store) Session() *gocql.Session { return s.s }

// Keyspace returns the keyspace in use.
func (s *Store) Keyspace() string { return s.cfg.Keyspace }

func (s *Store) migrate(ctx context.Context) error {
	ks := s.cfg.Keyspace
	stmts := []string{
		fmt.Sprintf(`CREATE KEYSPACE IF NOT EXISTS %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': %d}`, ks, s.cfg.ReplicationFactor),
		`CREATE TABLE IF NOT EXISTS ` + ks + `.events_by_day (
			app_id text, day int, at timestamp, id timeuuid,
			notification_id text, delivery_id text, user_id text, channel text, category text,
			priority text, type text, error text, latency_ms bigint,
			PRIMARY KEY ((app_id, day), at, id))`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.events_by_notification (
			app_id text, notification_id text, at timestamp, id timeuuid,
			delivery_id text, user_id text, channel text, category text,
			priority text, type text, error text, latency_ms bigint,
			PRIMARY KEY ((app_id, notification_id), at, id))`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.rollup_hour (
			app_id text, day int, hour timestamp, type text, channel text, category text,
			events counter, latency_sum counter, latency_n counter,
			PRIMARY KEY ((app_id, day), hour, type, channel, category))`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.rollup_day (
			app_id text, year int, day timestamp, type text, channel text, category text,
			events counter, latency_sum counter, latency_n counter,
			PRIMARY KEY ((app_id, year), day, type, channel, category))`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.latency_max_hour (
			app_id text, day int, hour timestamp, type text, channel text, category text, latency_max bigint,
			PRIMARY KEY ((app_id, day), hour, type, channel, category, latency_max))`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.latency_max_day (
			app_id text, year int, day timestamp, type text, channel text, category text, latency_max bigint,
			PRIMARY KEY ((app_id, year), day, type, channel, category, latency_max))`,
	}
	for _, q := range stmts {
		if err := s.s.Query(q).WithContext(ctx).Consistency(gocql.All).Exec(); err != nil {
			return fmt.Errorf("cassandra: create schema in %s: %w", ks, err)
		}
	}
	return nil
}

func (s *Store) prepare() {
	ks := s.cfg.Keyspace
	s.q = queries{
		insDay: `INSERT INTO ` + ks + `.events_by_day (app_id, day, at, id, notification_id, delivery_id, user_id, channel, category, priority, type, error, latency_ms)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?`,
		insNtf: `INSERT INTO ` + ks + `.events_by_notification (app_id, notification_id, at, id, delivery_id, user_id, channel, category, priority, type, error, latency_ms)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?`,
		incHour: `UPDATE ` + ks + `.rollup_hour SET events = events + ?, latency_sum = latency_sum + ?, latency_n = latency_n + ?
			WHERE app_id = ? AND day = ? AND hour = ? AND type = ? AND channel = ? AND category = ?`,
		incDay: `UPDATE ` + ks + `.rollup_day SET events = events + ?, latency_sum = latency_sum + ?, latency_n = latency_n + ?
			WHERE app_id = ? AND year = ? AND day = ? AND type = ? AND channel = ? AND category = ?`,
		maxHour:       `INSERT INTO ` + ks + `.latency_max_hour (app_id, day, hour, type, channel, category, latency_max) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		maxDay:        `INSERT INTO ` + ks + `.latency_max_day (app_id, year, day, type, channel, category, latency_max) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		selHour:       `SELECT type, channel, events, latency_sum, latency_n FROM ` + ks + `.rollup_hour WHERE app_id = ? AND day = ? AND hour >= ? AND hour < ?`,
		selDay:        `SELECT type, channel, events, latency_sum, latency_n FROM ` + ks + `.rollup_day WHERE app_id = ? AND year = ? AND day >= ? AND day < ?`,
		selMaxHour:    `SELECT type, channel, latency_max FROM ` + ks + `.latency_max_hour WHERE app_id = ? AND day = ? AND hour >= ? AND hour < ?`,
		selMaxDay:     `SELECT type, channel, latency_max FROM ` + ks + `.latency_max_day WHERE app_id = ? AND year = ? AND day >= ? AND day < ?`,
		selHourSeries: `SELECT hour, type, events, latency_sum, latency_n FROM ` + ks + `.rollup_hour WHERE app_id = ? AND day = ? AND hour >= ? AND hour < ?`,
		selDaySeries:  `SELECT day, type, events, latency_sum, latency_n FROM ` + ks + `.rollup_day WHERE app_id = ? AND year = ? AND day >= ? AND day < ?`,
		selMaxHourS:   `SELECT hour, type, latency_max FROM ` + ks + `.latency_max_hour WHERE app_id = ? AND day = ? AND hour >= ? AND hour < ?`,
		selMaxDayS:    `SELECT day, type, latency_max FROM ` + ks + `.latency_max_day WHERE app_id = ? AND year = ? AND day >= ? AND day < ?`,
		trace: `SELECT at, delivery_id, user_id, channel, category, priority, type, error, latency_ms FROM ` + ks + `.events_by_notification
			WHERE app_id = ? AND notification_id = ? LIMIT ?`,
	}
}

func epochDay(t time.Time) int { return int(t.UTC().Unix() / 86400) }

// eventID is a version-1 UUID carrying the event's time and, in place of the
// clock sequence and node, a hash of its content: stable across retries.
func eventID(e contracts.Event) gocql.UUID {
	u := gocql.UUIDFromTime(e.At)
	h := fnv.New64a()
	for _, s := range []string{e.AppID, e.NotificationID, e.DeliveryID, e.UserID, string(e.Channel), e.Category,
		string(e.Priority), e.Type, e.Error, strconv.FormatInt(e.LatencyMS, 10), strconv.FormatInt(e.At.UnixNano(), 10)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	binary.BigEndian.PutUint64(u[8:], h.Sum64())
	u[8] = u[8]&0x3F | 0x80 // IETF variant
	return u
}

// run executes jobs with bounded parallelism and returns the first error.
func (s *Store) run(ctx context.Context, jobs []func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, job := range jobs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := job(ctx); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		// the parent context ended before every job started
		return ctx.Err()
	}
	return first
}

type stmt struct {
	q    string
	args []any
}

// batches groups statements by partition into batches of at most batchRows.
func (s *Store) batches(typ gocql.BatchType, parts map[string][]stmt) []func(context.Context) error {
	var jobs []func(context.Context) error
	for _, list := range parts {
		for off := 0; off < len(list); off += batchRows {
			chunk := list[off:min(off+batchRows, len(list))]
			jobs = append(jobs, func(ctx context.Context) error {
				if len(chunk) == 1 {
					return s.s.Query(chunk[0].q, chunk[0].args...).WithContext(ctx).Exec()
				}
				b := s.s.NewBatch(typ).WithContext(ctx)
				for _, st := range chunk {
					b.Query(st.q, st.args...)
				}
				return s.s.ExecuteBatch(b)
			})
		}
	}
	return jobs
}

// WriteEvents implements analytics.Sink: event rows first (idempotent), then
// counters and latency maxima.
func (s *Store) WriteEvents(ctx context.Context, events []contracts.Event) error {
	evs := analytics.Clean(events)
	if len(evs) == 0 {
		return nil
	}
	byDay := map[string][]stmt{}
	byNtf := map[string][]stmt{}
	for _, e := range evs {
		id := eventID(e)
		day := epochDay(e.At)
		byDay[e.AppID+"\x00"+strconv.Itoa(day)] = append(byDay[e.AppID+"\x00"+strconv.Itoa(day)], stmt{s.q.insDay, []any{
			e.AppID, day, e.At, id, e.NotificationID, e.DeliveryID, e.UserID, string(e.Channel), e.Category,
			string(e.Priority), e.Type, e.Error, e.LatencyMS, s.ttl}})
		if e.NotificationID != "" {
			k := e.AppID + "\x00" + e.NotificationID
			byNtf[k] = append(byNtf[k], stmt{s.q.insNtf, []any{
				e.AppID, e.NotificationID, e.At, id, e.DeliveryID, e.UserID, string(e.Channel), e.Category,
				string(e.Priority), e.Type, e.Error, e.LatencyMS, s.ttl}})
		}
	}
	// A notification contributes a few events per batch: group its
	// partitions into shared unlogged batches instead of one request each.
	var ntfRows []stmt
	for _, list := range byNtf {
		ntfRows = append(ntfRows, list...)
	}
	jobs := append(s.batches(gocql.UnloggedBatch, byDay), s.batches(gocql.UnloggedBatch, map[string][]stmt{"": ntfRows})...)
	if err := s.run(ctx, jobs); err != nil {
		return fmt.Errorf("cassandra: write events: %w", err)
	}

	deltas := analytics.Rollups(evs)
	counters := map[string][]stmt{}
	maxes := map[string][]stmt{}
	var newMax []analytics.RollupDelta
	s.mu.Lock()
	for _, d := range deltas {
		k := d.Key
		var part string
		var cq, mq string
		var pk any
		if k.Bucket == analytics.Hour {
			pk, cq, mq = epochDay(k.Start), s.q.incHour, s.q.maxHour
		} else {
			pk, cq, mq = k.Start.Year(), s.q.incDay, s.q.maxDay
		}
		part = fmt.Sprint(k.AppID, "\x00", k.Bucket, "\x00", pk)
		counters[part] = append(counters[part], stmt{cq, []any{d.Events, d.LatencySum, d.LatencyN,
			k.AppID, pk, k.Start, k.Type, k.Channel, k.Category}})
		if d.LatencyN > 0 && d.LatencyMax > s.maxSeen[k] {
			maxes[part] = append(maxes[part], stmt{mq, []any{k.AppID, pk, k.Start, k.Type, k.Channel, k.Category, d.LatencyMax}})
			newMax = append(newMax, d)
		}
	}
	s.mu.Unlock()
	jobs = append(s.batches(gocql.CounterBatch, counters), s.batches(gocql.UnloggedBatch, maxes)...)
	if err := s.run(ctx, jobs); err != nil {
		return fmt.Errorf("cassandra: update rollups: %w", err)
	}
	s.mu.Lock()
	if len(s.maxSeen)+len(newMax) > maxCacheRows {
		clear(s.maxSeen)
	}
	for _, d := range newMax {
		s.maxSeen[d.Key] = max(s.maxSeen[d.Key], d.LatencyMax)
	}
	s.mu.Unlock()
	return nil
}

// partition is one rollup partition to read and the range inside it.
type partition struct {
	bucket   analytics.Bucket
	key      int // epoch day (hour rollups) or year (day rollups)
	from, to time.Time
}

// partitions lists the rollup partitions covering [from, to) at a granularity.
func partitions(bucket analytics.Bucket, from, to time.Time) []partition {
	var out []partition
	if bucket == analytics.Hour {
		for d := analytics.Day.Floor(from); d.Before(to); d = d.Add(24 * time.Hour) {
			out = append(out, partition{bucket, epochDay(d), maxTime(from, d), minTime(to, d.Add(24*time.Hour))})
		}
		return out
	}
	for y := from.UTC().Year(); y <= to.UTC().Add(-time.Millisecond).Year(); y++ {
		ys := time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
		out = append(out, partition{bucket, y, maxTime(from, ys), minTime(to, ys.AddDate(1, 0, 0))})
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

type cellKey struct {
	start        time.Time
	typ, channel string
}

type cellAcc struct{ events, sum, n, max int64 }

// readCells reads counters and maxima of the given partitions into one map.
// withTime keeps the bucket start in the key (Series); otherwise it is zero.
func (s *Store) readCells(ctx context.Context, appID string, parts []partition, withTime bool, eventType string) (map[cellKey]*cellAcc, error) {
	var mu sync.Mutex
	acc := map[cellKey]*cellAcc{}
	get := func(k cellKey) *cellAcc {
		a := acc[k]
		if a == nil {
			a = &cellAcc{}
			acc[k] = a
		}
		return a
	}
	var jobs []func(context.Context) error
	for _, p := range parts {
		cq, mq := s.q.selHour, s.q.selMaxHour
		if withTime {
			cq, mq = s.q.selHourSeries, s.q.selMaxHourS
		}
		if p.bucket == analytics.Day {
			cq, mq = s.q.selDay, s.q.selMaxDay
			if withTime {
				cq, mq = s.q.selDaySeries, s.q.selMaxDayS
			}
		}
		jobs = append(jobs, func(ctx context.Context) error {
			it := s.s.Query(cq, appID, p.key, p.from, p.to).WithContext(ctx).PageSize(5000).Iter()
			var k cellKey
			var ev, sum, n int64
			dest := []any{&k.typ, &k.channel, &ev, &sum, &n}
			if withTime {
				dest = append([]any{&k.start}, dest[0], &ev, &sum, &n)
			}
			for it.Scan(dest...) {
				if eventType != "" && k.typ != eventType {
					continue
				}
				kk := k
				if withTime {
					kk.start, kk.channel = kk.start.UTC(), ""
				}
				mu.Lock()
				a := get(kk)
				a.events += ev
				a.sum += sum
				a.n += n
				mu.Unlock()
			}
			return it.Close()
		}, func(ctx context.Context) error {
			it := s.s.Query(mq, appID, p.key, p.from, p.to).WithContext(ctx).PageSize(5000).Iter()
			var k cellKey
			var mx int64
			dest := []any{&k.typ, &k.channel, &mx}
			if withTime {
				dest = []any{&k.start, &k.typ, &mx}
			}
			for it.Scan(dest...) {
				if eventType != "" && k.typ != eventType {
					continue
				}
				kk := k
				if withTime {
					kk.start = kk.start.UTC()
				}
				mu.Lock()
				a := get(kk)
				a.max = max(a.max, mx)
				mu.Unlock()
			}
			return it.Close()
		})
	}
	if err := s.run(ctx, jobs); err != nil {
		return nil, err
	}
	return acc, nil
}

// Summary implements analytics.Sink from daily counters for whole days and
// hourly counters for the edges.
func (s *Store) Summary(ctx context.Context, appID string, from, to time.Time) (analytics.Summary, error) {
	if err := analytics.CheckSummary(appID, from, to); err != nil {
		return analytics.Summary{}, err
	}
	var parts []partition
	for _, sp := range analytics.SummarySpans(from, to) {
		parts = append(parts, partitions(sp.Bucket, sp.From, sp.To)...)
	}
	acc, err := s.readCells(ctx, appID, parts, false, "")
	if err != nil {
		return analytics.Summary{}, fmt.Errorf("cassandra: analytics summary: %w", err)
	}
	cells := make([]analytics.Cell, 0, len(acc))
	for k, a := range acc {
		cells = append(cells, analytics.Cell{Type: k.typ, Channel: k.channel, Events: a.events, LatencySum: a.sum, LatencyN: a.n, LatencyMax: a.max})
	}
	return analytics.BuildSummary(from, to, cells), nil
}

// Series implements analytics.Sink.
func (s *Store) Series(ctx context.Context, appID string, from, to time.Time, bucket analytics.Bucket, eventType string) ([]analytics.Point, error) {
	if err := analytics.CheckSeries(appID, from, to, bucket, eventType); err != nil {
		return nil, err
	}
	acc, err := s.readCells(ctx, appID, partitions(bucket, bucket.Floor(from), bucket.Ceil(to)), true, eventType)
	if err != nil {
		return nil, fmt.Errorf("cassandra: analytics series: %w", err)
	}
	cells := make([]analytics.BucketCell, 0, len(acc))
	for k, a := range acc {
		cells = append(cells, analytics.BucketCell{Start: k.start, Events: a.events, LatencySum: a.sum, LatencyN: a.n, LatencyMax: a.max})
	}
	return analytics.FillSeries(from, to, bucket, cells), nil
}

// Events implements analytics.Sink (at most MaxTrace events, oldest first).
func (s *Store) Events(ctx context.Context, appID, notificationID string) ([]contracts.Event, error) {
	out := []contracts.Event{}
	if appID == "" || notificationID == "" {
		return out, nil
	}
	it := s.s.Query(s.q.trace, appID, notificationID, MaxTrace).WithContext(ctx).PageSize(1000).Iter()
	var e contracts.Event
	var ch, prio string
	for it.Scan(&e.At, &e.DeliveryID, &e.UserID, &ch, &e.Category, &prio, &e.Type, &e.Error, &e.LatencyMS) {
		e.AppID, e.NotificationID = appID, notificationID
		e.Channel, e.Priority, e.At = domain.Channel(ch), domain.Priority(prio), e.At.UTC()
		out = append(out, e)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("cassandra: notification %s events: %w", notificationID, err)
	}
	return out, nil
}

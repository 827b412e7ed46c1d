package server

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"herald.dev/outbound"
	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
	"herald.dev/platform/queue"
	"herald.dev/platform/sqldb"
)

var (
	httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "herald", Name: "http_requests_total", Help: "HTTP requests by route and status.",
	}, []string{"method", "route", "status"})
	httpLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "herald", Name: "http_request_duration_seconds", Help: "HTTP request latency by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"method", "route"})
)

func init() {
	prometheus.MustRegister(httpRequests, httpLatency)
}

// metricsMiddleware counts requests and their latency per route pattern
// (never per raw path, to keep cardinality bounded).
func metricsMiddleware() fiber.Handler {
	return func(c *fiber.Ctx) error {
		start := time.Now()
		err := c.Next()
		route := c.Route().Path
		if route == "" || route == "/" {
			route = "unmatched"
		}
		status := c.Response().StatusCode()
		if err != nil {
			status = httpx.AsProblem(err).Status
		}
		httpRequests.WithLabelValues(c.Method(), route, strconv.Itoa(status)).Inc()
		httpLatency.WithLabelValues(c.Method(), route).Observe(time.Since(start).Seconds())
		return err
	}
}

func metricsHandler() fiber.Handler {
	return adaptor.HTTPHandler(promhttp.Handler())
}

// statsCollector turns the outbound handler's and the lanes' snapshots into
// metrics at scrape time (an unchecked collector: its label sets vary).
type statsCollector struct {
	h *outbound.Handler
	q queue.Queue
}

var (
	descDepth    = prometheus.NewDesc("herald_outbound_queue_depth", "Deliveries waiting per channel and priority.", []string{"channel", "priority"}, nil)
	descInFlight = prometheus.NewDesc("herald_outbound_in_flight", "Deliveries being sent per channel.", []string{"channel"}, nil)
	descWorkers  = prometheus.NewDesc("herald_outbound_workers", "Worker pool size per channel.", []string{"channel"}, nil)
	descOutcomes = prometheus.NewDesc("herald_deliveries_total", "Delivery outcomes per channel.", []string{"channel", "outcome"}, nil)
	descFanouts  = prometheus.NewDesc("herald_outbound_fanouts", "Fan-outs running per priority.", []string{"priority"}, nil)
	descWaiting  = prometheus.NewDesc("herald_outbound_fanouts_waiting", "Messages waiting for a fan-out slot per priority.", []string{"priority"}, nil)
	descLane     = prometheus.NewDesc("herald_lane_depth", "Messages on each priority lane.", []string{"priority"}, nil)
	descTimers   = prometheus.NewDesc("herald_outbound_retry_timers", "Armed in-memory retry timers.", nil, nil)
	descUnrecord = prometheus.NewDesc("herald_outbound_unrecorded", "Delivery rows waiting for their batch write.", nil, nil)
	descSkipped  = prometheus.NewDesc("herald_deliveries_skipped_total", "Deliveries skipped (preferences, no address, unknown user).", nil, nil)
	descDeferred = prometheus.NewDesc("herald_deliveries_deferred_total", "Deliveries deferred to the end of quiet hours.", nil, nil)
)

func (c statsCollector) Describe(chan<- *prometheus.Desc) {}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.h.Stats()
	for name, cs := range st.Channels {
		n := string(name)
		for p, d := range cs.Depth {
			ch <- prometheus.MustNewConstMetric(descDepth, prometheus.GaugeValue, float64(d), n, string(p))
		}
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(cs.InFlight), n)
		ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(cs.Workers), n)
		for outcome, v := range map[string]uint64{"sent": cs.Sent, "delivered": cs.Delivered, "failed": cs.Failed, "retried": cs.Retried, "expired": cs.Expired} {
			ch <- prometheus.MustNewConstMetric(descOutcomes, prometheus.CounterValue, float64(v), n, outcome)
		}
	}
	for p, v := range st.Fanouts {
		ch <- prometheus.MustNewConstMetric(descFanouts, prometheus.GaugeValue, float64(v), string(p))
	}
	for p, v := range st.Waiting {
		ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, float64(v), string(p))
	}
	if qs, ok := c.q.(queue.Stats); ok {
		for _, p := range domain.Priorities {
			ch <- prometheus.MustNewConstMetric(descLane, prometheus.GaugeValue, float64(qs.Depth(p)), string(p))
		}
	}
	ch <- prometheus.MustNewConstMetric(descTimers, prometheus.GaugeValue, float64(st.Timers))
	ch <- prometheus.MustNewConstMetric(descUnrecord, prometheus.GaugeValue, float64(st.Unrecorded))
	ch <- prometheus.MustNewConstMetric(descSkipped, prometheus.CounterValue, float64(st.Skipped))
	ch <- prometheus.MustNewConstMetric(descDeferred, prometheus.CounterValue, float64(st.Deferred))
}

// registerOutboundMetrics exposes the handler's statistics. The collector is
// registered once per process; a later server (tests build several) takes
// its place.
func registerOutboundMetrics(h *outbound.Handler, q queue.Queue) {
	registerLive()
	currentStats.Store(&statsCollector{h: h, q: q})
}

func registerLive() { collectorOnce.Do(func() { prometheus.MustRegister(liveCollector{}) }) }

var (
	collectorOnce sync.Once
	currentStats  atomic.Pointer[statsCollector]
)

// liveCollector forwards to the current server's collectors.
type liveCollector struct{}

func (liveCollector) Describe(chan<- *prometheus.Desc) {}

func (liveCollector) Collect(ch chan<- prometheus.Metric) {
	if c := currentStats.Load(); c != nil {
		c.Collect(ch)
	}
	if c := currentDBs.Load(); c != nil {
		c.Collect(ch)
	}
}

var (
	descCacheHits   = prometheus.NewDesc("herald_sqlite_writer_cache_hits_total", "Pages the embedded SQLite writer found in its page cache, per database file.", []string{"db"}, nil)
	descCacheMisses = prometheus.NewDesc("herald_sqlite_writer_cache_misses_total", "Pages the embedded SQLite writer had to read from the file or the WAL, per database file.", []string{"db"}, nil)
)

// dbCollector exposes the page-cache counters of the embedded SQLite
// writers. A writer whose misses climb with its hits has lost its cache
// (docs/benchmarks.md, "2026-12-04, later").
type dbCollector map[string]*sqldb.DB

// cacheStatsWait bounds how long a scrape waits for a busy writer.
const cacheStatsWait = 2 * time.Second

func (c dbCollector) Collect(ch chan<- prometheus.Metric) {
	for name, db := range c {
		ctx, cancel := context.WithTimeout(context.Background(), cacheStatsWait)
		st, err := db.WriterCacheStats(ctx)
		cancel()
		if err != nil {
			continue // a writer busy past the wait, or closed: no sample this scrape
		}
		ch <- prometheus.MustNewConstMetric(descCacheHits, prometheus.CounterValue, float64(st.Hits), name)
		ch <- prometheus.MustNewConstMetric(descCacheMisses, prometheus.CounterValue, float64(st.Misses), name)
	}
}

// registerDBMetrics exposes the writers' counters of the SQLite databases
// among dbs (name to database). As with registerOutboundMetrics, a later
// server takes the place of an earlier one.
func registerDBMetrics(dbs map[string]*sqldb.DB) {
	c := dbCollector{}
	for name, db := range dbs {
		if db != nil && db.Dialect == sqldb.SQLite {
			c[name] = db
		}
	}
	registerLive()
	currentDBs.Store(&c)
}

var currentDBs atomic.Pointer[dbCollector]

package server

import (
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"herald.dev/platform/httpx"
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

// gaugeFunc registers (once per process) a gauge read at scrape time.
func gaugeFunc(name, help string, labels prometheus.Labels, f func() float64) {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "herald", Name: name, Help: help, ConstLabels: labels}, f)
	if err := prometheus.Register(g); err != nil {
		if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
			_ = prometheus.Unregister(are.ExistingCollector)
			_ = prometheus.Register(g)
		}
	}
}

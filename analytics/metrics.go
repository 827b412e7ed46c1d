package analytics

import "github.com/prometheus/client_golang/prometheus"

var (
	descTracked  = prometheus.NewDesc("herald_analytics_events_tracked_total", "Tracker events accepted into the buffer.", nil, nil)
	descDropped  = prometheus.NewDesc("herald_analytics_events_dropped_total", "Tracker events dropped because the buffer was full (analytics is best-effort).", nil, nil)
	descWritten  = prometheus.NewDesc("herald_analytics_events_written_total", "Tracker events stored by the sink.", nil, nil)
	descLost     = prometheus.NewDesc("herald_analytics_events_lost_total", "Tracker events discarded after their batch failed every retry.", nil, nil)
	descRetries  = prometheus.NewDesc("herald_analytics_write_retries_total", "Retried batch writes.", nil, nil)
	descBatches  = prometheus.NewDesc("herald_analytics_batches_total", "Batches written to the sink.", nil, nil)
	descBuffered = prometheus.NewDesc("herald_analytics_events_buffered", "Tracker events waiting to be written.", nil, nil)
)

// Describe implements prometheus.Collector; register the tracker with
// prometheus.MustRegister(tracker) to export its Stats.
func (t *Tracker) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTracked, descDropped, descWritten, descLost, descRetries, descBatches, descBuffered} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (t *Tracker) Collect(ch chan<- prometheus.Metric) {
	s := t.Stats()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(descTracked, s.Tracked)
	counter(descDropped, s.Dropped)
	counter(descWritten, s.Written)
	counter(descLost, s.Lost)
	counter(descRetries, s.Retries)
	counter(descBatches, s.Batches)
	ch <- prometheus.MustNewConstMetric(descBuffered, prometheus.GaugeValue, float64(s.Buffered))
}

var _ prometheus.Collector = (*Tracker)(nil)

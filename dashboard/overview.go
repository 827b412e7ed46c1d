package dashboard

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
)

// eventTypes are the analytics event types, in pipeline order.
var eventTypes = []string{"accepted", "scheduled", "queued", "sent", "delivered", "failed", "retrying", "skipped", "expired", "read", "done"}

// chartTypes are the series the overview chart draws.
var chartTypes = []string{"accepted", "sent", "failed"}

type overviewView struct {
	Range      string // "24h" or "7d"
	Summary    *Summary
	SummaryErr *APIError
	Chart      chart
	SeriesErr  *APIError
}

func (d *Dashboard) overview(r *req) error {
	rng := r.c.Query("range", "24h")
	span := 24 * time.Hour
	if rng == "7d" {
		span = 7 * 24 * time.Hour
	} else {
		rng = "24h"
	}
	now := d.now().UTC()
	from := now.Add(-span).Format(time.RFC3339)
	to := now.Format(time.RFC3339)
	v := overviewView{Range: rng}
	series := make([]*Series, len(chartTypes))
	errs := make([]*APIError, len(chartTypes))
	calls := []func(){func() {
		var s Summary
		if v.SummaryErr = r.api.get(apiPath(url.Values{"from": {from}, "to": {to}}, "analytics", "summary"), &s); v.SummaryErr == nil {
			v.Summary = &s
		}
	}}
	for i, typ := range chartTypes {
		calls = append(calls, func() {
			var s Series
			q := url.Values{"from": {from}, "to": {to}, "bucket": {"hour"}, "type": {typ}}
			if errs[i] = r.api.get(apiPath(q, "analytics", "series"), &s); errs[i] == nil {
				series[i] = &s
			}
		})
	}
	all(calls...)
	for _, e := range errs {
		if e != nil {
			v.SeriesErr = e
			break
		}
	}
	if v.SeriesErr == nil {
		v.Chart = buildChart(chartTypes, series, rng == "7d")
	}
	status := statusFor(v.SummaryErr, fiber.StatusOK)
	if v.SummaryErr == nil {
		status = statusFor(v.SeriesErr, fiber.StatusOK)
	}
	return r.render(status, "Overview", "overview", overviewPage(v))
}

// chart is a line chart drawn as inline SVG, with its data as a table.
type chart struct {
	W, H     int
	Left     int // plot area left edge
	Top      int
	PlotW    int
	PlotH    int
	Lines    []chartLine
	YTicks   []chartTick
	XTicks   []chartTick
	Rows     []chartRow
	Names    []string
	Max      int64
	Empty    bool
	Caption  string
	Baseline int
}

type chartLine struct {
	Name, Class, Points string
	Total               int64
}

type chartTick struct {
	Pos   int
	Label string
}

type chartRow struct {
	T      string
	Values []int64
}

// buildChart lays out the series (one per type, same buckets) on a fixed
// 720×220 canvas. It tolerates series of different lengths and bad
// timestamps: points are placed by index.
func buildChart(names []string, series []*Series, daily bool) chart {
	c := chart{W: 720, H: 220, Left: 48, Top: 10, Names: names}
	c.PlotW = c.W - c.Left - 28
	c.PlotH = c.H - c.Top - 30
	c.Baseline = c.Top + c.PlotH
	n := 0
	for _, s := range series {
		if s != nil && len(s.Points) > n {
			n = len(s.Points)
		}
	}
	for _, s := range series {
		if s == nil {
			continue
		}
		for _, p := range s.Points {
			if p.Count > c.Max {
				c.Max = p.Count
			}
		}
	}
	c.Empty = c.Max == 0
	top := niceCeil(c.Max)
	x := func(i int) float64 {
		if n <= 1 {
			return float64(c.Left) + float64(c.PlotW)/2
		}
		return float64(c.Left) + float64(i)*float64(c.PlotW)/float64(n-1)
	}
	y := func(v int64) float64 {
		return float64(c.Top) + float64(c.PlotH) - float64(v)*float64(c.PlotH)/float64(top)
	}
	for i, s := range series {
		l := chartLine{Name: names[i], Class: "line-" + names[i]}
		if s != nil {
			var b strings.Builder
			for j, p := range s.Points {
				if j > 0 {
					b.WriteByte(' ')
				}
				fmt.Fprintf(&b, "%.1f,%.1f", x(j), y(p.Count))
				l.Total += p.Count
			}
			l.Points = b.String()
		}
		c.Lines = append(c.Lines, l)
	}
	for k := 0; k <= 4; k++ {
		v := top * int64(k) / 4
		c.YTicks = append(c.YTicks, chartTick{Pos: int(y(v) + 0.5), Label: strconv.FormatInt(v, 10)})
	}
	var ref *Series
	for _, s := range series {
		if s != nil && len(s.Points) == n {
			ref = s
			break
		}
	}
	if ref != nil && n > 0 {
		step := (n + 5) / 6
		if step < 1 {
			step = 1
		}
		for j := 0; j < n; j += step {
			c.XTicks = append(c.XTicks, chartTick{Pos: int(x(j) + 0.5), Label: tickLabel(ref.Points[j].T, daily)})
		}
		for j, p := range ref.Points {
			row := chartRow{T: fmtTime(p.T)}
			for _, s := range series {
				var v int64
				if s != nil && j < len(s.Points) {
					v = s.Points[j].Count
				}
				row.Values = append(row.Values, v)
			}
			c.Rows = append(c.Rows, row)
		}
	}
	c.Caption = fmt.Sprintf("Events per hour: %s", strings.Join(names, ", "))
	return c
}

// niceCeil rounds up to the smallest of 1, 2, 4, 5 or 8 × 10^k that is a
// multiple of 4 (so the four grid steps are whole numbers); at least 4.
func niceCeil(v int64) int64 {
	for p := int64(1); p <= 1e17; p *= 10 {
		for _, m := range []int64{1, 2, 4, 5, 8} {
			if c := m * p; c%4 == 0 && c >= v {
				return c
			}
		}
	}
	return v + (4-v%4)%4
}

func tickLabel(ts string, daily bool) string {
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return ""
	}
	t = t.UTC()
	if daily {
		return t.Format("Jan 2 15:04")
	}
	return t.Format("15:04")
}

// channelRows orders a summary's channels for the table.
func channelRows(s *Summary) []string { return sortedKeys(s.Channels) }

// countsOf lists the non-zero event counts in pipeline order, unknown types last.
func countsOf(m map[string]int64) []countItem {
	var out []countItem
	seen := map[string]bool{}
	for _, t := range eventTypes {
		seen[t] = true
		if m[t] != 0 {
			out = append(out, countItem{t, m[t]})
		}
	}
	for _, k := range sortedKeys(m) {
		if !seen[k] && m[k] != 0 {
			out = append(out, countItem{k, m[k]})
		}
	}
	return out
}

type countItem struct {
	Type  string
	Count int64
}

package core

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/golb/golb/core/admin"
	"github.com/golb/golb/core/state"
	"github.com/golb/golb/core/stats"
)

// StatsStore states the stats sink's health: whether flushes succeed and how
// many requests are not stored yet.
func (a *Agent) StatsStore() StatsStoreView {
	var v StatsStoreView
	if cfg := a.config(); cfg != nil && cfg.Stats != nil {
		v.Sink = cfg.Stats.Sink
	}
	if a.agg == nil {
		v.State = "not open"
		return v
	}
	h := a.agg.Health()
	v.Path, v.State, v.UnflushedRequests = a.agg.SinkPath(), "ok", h.Unflushed
	v.Database, v.Instance = a.agg.SinkDatabase()
	if !h.LastFlush.IsZero() {
		v.LastFlush = h.LastFlush.UTC().Format(time.RFC3339)
	}
	if h.Failing() {
		v.State = "failing"
		v.FailingSince = h.FailingSince.UTC().Format(time.RFC3339)
		v.Error, v.FailedWrites = h.LastError, h.FailedWrites
		v.Unreachable = h.Unreachable
	}
	return v
}

// StatsWorkers lists the stats of every worker, all agents' with a shared sink.
func (a *Agent) StatsWorkers() []StatsWorkerView {
	if a.agg == nil {
		return []StatsWorkerView{}
	}
	snap := a.agg.Snapshot()
	out := make([]StatsWorkerView, 0, len(snap))
	for _, t := range snap {
		out = append(out, StatsWorkerView{ID: t.WorkerID, Instance: t.Instance, Success: t.Success, Failed: t.Failed, Total: t.Total(), MeanLatencyMS: meanMS(t)})
	}
	return out
}

// serveAdmin starts the admin API on addr: core/admin's JSON endpoints over
// apiViews (admin_views.go), /metrics over the balancers' and the agent's
// collectors, and the dashboard.
func (a *Agent) serveAdmin(addr string) (*http.Server, error) {
	reg := prometheus.NewRegistry()
	for _, b := range a.balancers {
		if err := reg.Register(b.Collector()); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	reg.MustRegister(&agentCollector{a: a}, &autoscaleCollector{a: a}, reloadCollector{a: a}, collectors.NewGoCollector())
	a.metrics = reg // a reload registers the balancers it adds
	return admin.Serve(addr, admin.NewAPI(apiViews{a}, reg), a.dashboard(), a.logger)
}

// health is what the balancers know of one worker right now. Its counts
// are not here: they come from the stats aggregator, which carries them
// across golb restarts.
type health struct {
	healthy   bool
	healthErr string // the first balancer's reason, if any
	inflight  int64
}

func (a *Agent) health() map[string]*health {
	out := map[string]*health{}
	for _, b := range a.allBalancers() {
		for _, s := range b.Stats() {
			h := out[s.ID]
			if h == nil {
				h = &health{}
				out[s.ID] = h
			}
			h.healthy = h.healthy || s.Healthy
			if h.healthErr == "" {
				h.healthErr = s.HealthError
			}
			h.inflight += s.InFlight
		}
	}
	return out
}

// totals are the stats aggregator's counts by worker: the same figures as
// /worker/stats and GET /v1/stats, restarts included.
func (a *Agent) totals() map[string]stats.Totals {
	out := map[string]stats.Totals{}
	if a.agg == nil {
		return out
	}
	for _, t := range a.agg.Snapshot() {
		out[t.WorkerID] = t
	}
	return out
}

// meanMS is t's mean latency in milliseconds, rounded to the microsecond as
// the seed's JSON rounds it, or 0 without requests.
func meanMS(t stats.Totals) float64 {
	if t.Total() == 0 {
		return 0
	}
	return math.Round(float64(t.LatencySum)/float64(t.Total())/1e3) / 1e3
}

// WorkerViews lists the workers with their health, in-flight requests (from
// the balancers) and request counts (from the stats aggregator).
func (a *Agent) WorkerViews() []WorkerView {
	ws, _ := a.store.Workers(nil)
	hs := a.health()
	ts := a.totals()
	out := make([]WorkerView, 0, len(ws))
	for _, w := range ws {
		v := WorkerView{ID: w.ID, Group: w.Group, Driver: w.Driver, Address: w.Address, Status: string(w.Status), Adopted: w.Adopted, StartedAt: w.StartedAt.Format(time.RFC3339)}
		v.Details, v.Reason = w.Details, w.Reason
		if h := hs[w.ID]; h != nil {
			v.Healthy, v.InFlight = h.healthy, h.inflight
			if !v.Healthy {
				v.HealthError = h.healthErr
			}
		} else if len(a.balancersOf(w.Group)) == 0 {
			// No balancer checks this group's workers: running is all
			// golb knows, and all it needs.
			v.Healthy = w.Status == state.StatusRunning
		}
		t := ts[w.ID]
		v.Requests, v.Failed, v.MeanLatencyMS = t.Total(), t.Failed, meanMS(t)
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Group != out[j].Group {
			return out[i].Group < out[j].Group
		}
		return portOf(out[i].Address) < portOf(out[j].Address)
	})
	return out
}

// inspectDetails asks the driver about a worker, briefly.
func (a *Agent) inspectDetails(driver, id string) map[string]string {
	c, _, err := a.plugins.current(driver)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.Inspect(ctx, id)
	if err != nil {
		return nil
	}
	return st.Details
}

// GroupViews lists the groups with their counts.
func (a *Agent) GroupViews() []GroupView {
	gs, _ := a.store.Groups(nil)
	workers := a.WorkerViews()
	out := make([]GroupView, 0, len(gs))
	for _, g := range gs {
		v := GroupView{Name: g.Name, Driver: g.Driver, Desired: g.Desired, Min: g.Min, Max: g.Max, Failing: g.Failing, Reason: g.Reason,
			RolloutStopped: g.RolloutStopped, Autoscaler: a.autoscalerView(g.Name)}
		for _, w := range workers {
			if w.Group == g.Name && w.Status == string(state.StatusRunning) {
				v.Running++
				if w.Healthy {
					v.Healthy++
				}
			}
		}
		out = append(out, v)
	}
	return out
}

// DriverViews lists the driver plugins.
func (a *Agent) DriverViews() []DriverView {
	ds, _ := a.store.Drivers(nil)
	out := make([]DriverView, 0, len(ds))
	for _, d := range ds {
		out = append(out, DriverView{Name: d.Name, Version: d.Info.Version, Healthy: d.Fingerprint.Healthy, Detail: d.Fingerprint.Detail, Running: d.Running, PID: d.PluginPID, Restarts: d.Restarts, Error: d.Error})
		out[len(out)-1].Detail = oneLine(d.Fingerprint.Detail, maxDetail)
	}
	return out
}

// agentCollector exports worker counts by status and stats flush health.
type agentCollector struct{ a *Agent }

var (
	descWorkers      = prometheus.NewDesc("golb_workers", "Workers by group and status.", []string{"group", "status"}, nil)
	descDesired      = prometheus.NewDesc("golb_group_desired_workers", "Desired workers of a group.", []string{"group"}, nil)
	descFlushes      = prometheus.NewDesc("golb_stats_flushes_total", "Stats batches written to the sink.", nil, nil)
	descFlushErrors  = prometheus.NewDesc("golb_stats_flush_errors_total", "Stats batches that failed (retried at the next flush).", nil, nil)
	descFlushSkipped = prometheus.NewDesc("golb_stats_flush_skipped_total", "Flushes coalesced because the previous write was still running.", nil, nil)
	descFlushFailing = prometheus.NewDesc("golb_stats_flush_failing", "1 while stats writes fail (since the last write failed, until one succeeds).", nil, nil)
	descUnflushed    = prometheus.NewDesc("golb_stats_unflushed_requests", "Requests counted but not yet stored in the stats sink.", nil, nil)
	descPluginUp     = prometheus.NewDesc("golb_driver_plugin_up", "1 while a driver plugin runs.", []string{"driver"}, nil)
	descPluginRest   = prometheus.NewDesc("golb_driver_plugin_restarts_total", "Driver plugin restarts after a crash.", []string{"driver"}, nil)
)

func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWorkers, descDesired, descFlushes, descFlushErrors, descFlushSkipped, descFlushFailing, descUnflushed, descPluginUp, descPluginRest} {
		ch <- d
	}
}

func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	ws, _ := c.a.store.Workers(nil)
	counts := map[[2]string]int{}
	gs, _ := c.a.store.Groups(nil)
	statuses := []state.WorkerStatus{state.StatusPending, state.StatusRunning, state.StatusDraining, state.StatusStopped, state.StatusFailed, state.StatusLost}
	for _, w := range ws {
		counts[[2]string{w.Group, string(w.Status)}]++
	}
	for _, g := range gs {
		ch <- prometheus.MustNewConstMetric(descDesired, prometheus.GaugeValue, float64(g.Desired), g.Name)
		for _, s := range statuses {
			ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(counts[[2]string{g.Name, string(s)}]), g.Name, string(s))
		}
	}
	fs := c.a.agg.Health()
	ch <- prometheus.MustNewConstMetric(descFlushes, prometheus.CounterValue, float64(fs.Flushes))
	ch <- prometheus.MustNewConstMetric(descFlushErrors, prometheus.CounterValue, float64(fs.Errors))
	ch <- prometheus.MustNewConstMetric(descFlushSkipped, prometheus.CounterValue, float64(fs.Skipped))
	failing := 0.0
	if fs.Failing() {
		failing = 1
	}
	ch <- prometheus.MustNewConstMetric(descFlushFailing, prometheus.GaugeValue, failing)
	ch <- prometheus.MustNewConstMetric(descUnflushed, prometheus.GaugeValue, float64(fs.Unflushed))
	ds, _ := c.a.store.Drivers(nil)
	for _, d := range ds {
		up := 0.0
		if d.Running {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descPluginUp, prometheus.GaugeValue, up, d.Name)
		ch <- prometheus.MustNewConstMetric(descPluginRest, prometheus.CounterValue, float64(d.Restarts), d.Name)
	}
}

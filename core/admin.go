package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/golb/golb/core/admin"
	"github.com/golb/golb/core/state"
	"github.com/golb/golb/core/stats"
)

// GroupView is one row of GET /v1/groups.
type GroupView struct {
	Name    string `json:"name"`
	Driver  string `json:"driver"`
	Desired int    `json:"desired"`
	Running int    `json:"running"`
	Healthy int    `json:"healthy"`
	Min     int    `json:"min"`
	Max     int    `json:"max"`
	Failing bool   `json:"failing,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// RolloutStopped is why the group's last rollover stopped with its
	// old workers serving (core/rollout.go); empty otherwise.
	RolloutStopped string `json:"rollout_stopped,omitempty"`
	// Autoscaler is set for a group with a scale block (admin_autoscale.go).
	Autoscaler *AutoscalerView `json:"autoscaler,omitempty"`
}

// WorkerView is one row of GET /v1/workers.
type WorkerView struct {
	ID      string `json:"id"`
	Group   string `json:"group"`
	Driver  string `json:"driver"`
	Address string `json:"address"`
	Status  string `json:"status"`
	Healthy bool   `json:"healthy"`
	// HealthError is why the worker's last health check failed, e.g.
	// "GET /healthz: 404 Not Found"; set only while it is unhealthy.
	HealthError string `json:"health_error,omitempty"`
	// Reason is why a lost worker is lost: it could not be stopped (it may
	// still run; golb retries), or not be recovered with its plugin.
	Reason string `json:"reason,omitempty"`
	// Requests, Failed and MeanLatencyMS are the stats' figures, across
	// golb restarts: the same as /worker/stats.
	Requests      uint64  `json:"requests"`
	Failed        uint64  `json:"failed"`
	MeanLatencyMS float64 `json:"mean_latency_ms"`
	InFlight      int64   `json:"in_flight"`
	StartedAt     string  `json:"started_at"`
	Adopted       bool    `json:"adopted,omitempty"`
	// Details are the driver's: pid and log files, or container id and name.
	Details map[string]string `json:"details,omitempty"`
}

// DriverView is one row of GET /v1/drivers.
type DriverView struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Healthy  bool   `json:"reachable"` // its runtime answers
	Detail   string `json:"detail"`
	Running  bool   `json:"running"`
	PID      int    `json:"pid"`
	Restarts int    `json:"restarts"`
	// Error is why the plugin last died or was killed ("driver nice
	// crashed in Start: panic: …"), until it has run minUptime again.
	Error string `json:"error,omitempty"`
}

// StatsStoreView is GET /v1/stats/store: the state of the stats sink.
type StatsStoreView struct {
	Sink string `json:"sink"`
	Path string `json:"path,omitempty"` // the SQLite file
	// Database and Instance are a shared sink's (postgres): user@host:port/db,
	// without the password, and the name of this agent's rows.
	Database string `json:"database,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Unreachable is set while failing because the database does not answer.
	Unreachable bool `json:"unreachable,omitempty"`
	// State is "ok" while writes succeed (or none has been tried yet), "failing"
	// once a write has failed, until one succeeds.
	State string `json:"state"`
	// FailingSince (RFC 3339), Error and FailedWrites describe the current run
	// of failed writes; set only while failing.
	FailingSince string `json:"failing_since,omitempty"`
	Error        string `json:"error,omitempty"`
	FailedWrites int    `json:"failed_writes,omitempty"`
	// UnflushedRequests are counted but not yet stored: normally the last
	// flush interval's; while failing, all since the last good write, which a
	// shutdown would lose.
	UnflushedRequests uint64 `json:"unflushed_requests"`
	LastFlush         string `json:"last_flush,omitempty"` // RFC 3339
}

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

// StatsWorkerView is one row of GET /v1/stats/workers: a worker's totals as
// /worker/stats has them, and the agent that runs it (the instance of a
// shared sink; empty for SQLite, where every worker is this agent's).
type StatsWorkerView struct {
	ID            string  `json:"id"`
	Instance      string  `json:"instance,omitempty"`
	Success       uint64  `json:"success"`
	Failed        uint64  `json:"failed"`
	Total         uint64  `json:"total"`
	MeanLatencyMS float64 `json:"mean_latency_ms"`
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

// serveAdmin starts the admin API on addr.
func (a *Agent) serveAdmin(addr string) (*http.Server, error) {
	reg := prometheus.NewRegistry()
	for _, b := range a.balancers {
		if err := reg.Register(b.Collector()); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	reg.MustRegister(&agentCollector{a: a}, &autoscaleCollector{a: a}, reloadCollector{a: a}, collectors.NewGoCollector())
	a.metrics = reg // a reload registers the balancers it adds

	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/groups", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, a.GroupViews()) })
	mux.HandleFunc("GET /v1/workers", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, a.WorkerViews()) })
	mux.HandleFunc("GET /v1/drivers", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, a.DriverViews()) })
	mux.HandleFunc("GET /v1/stats/workers", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, a.StatsWorkers()) })
	mux.HandleFunc("GET /v1/stats/store", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, a.StatsStore()) })
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) {
		body, err := stats.SeedJSON(a.agg.Snapshot())
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	mux.HandleFunc("GET /v1/groups/{name}/events", a.serveGroupEvents)
	mux.HandleFunc("POST /v1/groups/{name}/scale", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Count *int `json:"count"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || req.Count == nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body must be {"count": N}`})
			return
		}
		err := a.Scale(r.PathValue("name"), *req.Count)
		switch {
		case errors.Is(err, state.ErrNoGroup):
			writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		case errors.Is(err, ErrScaleBounds):
			writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
		case err != nil:
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		default:
			out := map[string]any{"group": r.PathValue("name"), "desired": *req.Count}
			if until := a.FloorUntil(r.PathValue("name")); !until.IsZero() {
				out["floor_until"] = until // an autoscaled group: a floor for one stable window
			}
			writeJSON(w, http.StatusOK, out)
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /v1/reload", a.serveReload) // reload.go
	mux.HandleFunc("GET /v1/reload", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, a.ReloadStatus()) })
	dash := a.dashboard() // GET /, /v1/stream, /v1/events, POST /v1/workers/{id}/drain
	dash.Register(mux)

	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin API: listening on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: admin.Guard(l.Addr().String(), mux), ReadHeaderTimeout: 5 * time.Second}
	dashCtx, stopDash := context.WithCancel(context.Background())
	srv.RegisterOnShutdown(stopDash) // also ends the open streams
	go dash.Run(dashCtx)
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logger.Error("admin API stopped", "err", err)
		}
	}()
	a.logger.Info("admin API listening", "addr", l.Addr().String())
	return srv, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
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

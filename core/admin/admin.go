// Package admin is golb's admin API over HTTP: the JSON endpoints that
// scripts and the golb command use (api.go), /metrics, and the live
// dashboard — the embedded page, the Server-Sent Events stream of snapshots
// and events, the in-memory history its charts are drawn from, worker drain
// — behind the guard that keeps other web sites out. It only does HTTP: it
// knows golb through Views and APIViews, which the agent implements and
// tests fake.
package admin

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/hashicorp/go-memdb"
)

// Views is what the dashboard needs of the agent.
type Views interface {
	// State returns golb's state now. It adds to ws the channels that
	// close when the groups, workers or drivers change (memdb's), so that
	// the stream reports events as they happen; balancer counters are
	// read afresh on every call.
	State(ws memdb.WatchSet) State
	// Drain takes a running worker out of its balancers, lets its
	// in-flight requests finish and stops it; its group starts a
	// replacement. Errors wrap ErrNoWorker or ErrNotRunning when they are
	// the caller's.
	Drain(id string) error
}

// State is one reading of golb's state.
type State struct {
	Groups    []Group    `json:"groups"`
	Workers   []Worker   `json:"workers"`
	Drivers   []Driver   `json:"drivers"`
	Balancers []Balancer `json:"balancers"`
}

// Group is one group's desired state. The dashboard counts its running,
// healthy and draining workers itself, from State.Workers.
type Group struct {
	Name    string `json:"name"`
	Driver  string `json:"driver"`
	Desired int    `json:"desired"`
	Min     int    `json:"min"`
	Max     int    `json:"max"`
	// Failing and Reason are set while the group cannot keep its count.
	Failing bool   `json:"failing,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Scale is the autoscaler's view; nil when the group does not scale.
	Scale *Scale `json:"scale,omitempty"`
}

// Scale is what the autoscaler shows of one group.
type Scale struct {
	// Mode is the autoscaler's mode ("stable", "panic"), or how it
	// decides when it has no modes.
	Mode string `json:"mode"`
	// Rule states the target, e.g. "target_inflight 10".
	Rule string `json:"rule,omitempty"`
	// Last is its newest decision, nil before the first.
	Last *Decision `json:"last,omitempty"`
}

// Decision is one scaling decision.
type Decision struct {
	Time      time.Time `json:"time"`
	From      int       `json:"from"`
	To        int       `json:"to"`
	Direction string    `json:"direction,omitempty"`
	Mode      string    `json:"mode,omitempty"`
	Reason    string    `json:"reason"`
}

// Worker is one worker as the dashboard shows it.
type Worker struct {
	ID      string `json:"id"`
	Group   string `json:"group"`
	Driver  string `json:"driver"`
	Address string `json:"address"`
	// Status is the worker's life-cycle state (pending, running,
	// draining, stopped, failed, lost); the dashboard adds "gone" for a
	// worker that no longer exists.
	Status  string `json:"status"`
	Healthy bool   `json:"healthy"`
	// HealthError is why its last health check failed, while unhealthy.
	HealthError string `json:"health_error,omitempty"`
	// Ejected is set while a balancer ejects it for failing requests.
	Ejected bool `json:"ejected,omitempty"`
	// Reason is why a lost worker is lost.
	Reason        string    `json:"reason,omitempty"`
	InFlight      int64     `json:"in_flight"`
	Requests      uint64    `json:"requests"`
	Failed        uint64    `json:"failed"`
	MeanLatencyMS float64   `json:"mean_latency_ms"`
	StartedAt     time.Time `json:"started_at"`
	PID           int       `json:"pid,omitempty"`
	// Exit is how the worker ended, on one line, and LastWords the last
	// lines it wrote, once it has ended on its own.
	Exit      string `json:"exit,omitempty"`
	LastWords string `json:"last_words,omitempty"`

	// Set by the dashboard: seconds since StartedAt, and how many workers
	// of this line exited on their own before it (it replaced the last).
	UptimeS  int64 `json:"uptime_s"`
	Restarts int   `json:"restarts"`
}

// Driver is one driver plugin.
type Driver struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Reachable bool   `json:"reachable"`
	Detail    string `json:"detail,omitempty"`
	Running   bool   `json:"running"`
	PID       int    `json:"pid"`
	Restarts  int    `json:"restarts"`
	Error     string `json:"error,omitempty"`
}

// Balancer is one balancer's cumulative counters; the dashboard turns two
// readings a second apart into rates and quantiles.
type Balancer struct {
	Name  string   `json:"name"`
	Group string   `json:"group"`
	Addrs []string `json:"addrs"`
	// Classes count attempts by outcome: "1xx" … "5xx", and "error" for
	// no answer.
	Classes map[string]uint64 `json:"classes"`
	// Bounds are the latency buckets' upper bounds in seconds; Buckets
	// count attempts per bucket, not cumulative, one more than Bounds.
	Bounds  []float64 `json:"-"`
	Buckets []uint64  `json:"-"`
	// InFlight and Held are the requests being proxied and waiting now.
	InFlight int64 `json:"in_flight"`
	Held     int64 `json:"held"`
	// Retries granted, Unavailable the 503s golb answered itself.
	Retries     uint64 `json:"retries"`
	Unavailable uint64 `json:"unavailable"`
}

// Options tune a Server. Zero values are the defaults.
type Options struct {
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Interval between snapshots; default 1 s.
	Interval time.Duration
	// History is how many snapshots the charts keep; default 600 (10
	// minutes at 1 s).
	History int
	// Events is how many events the log keeps; default 500.
	Events int
	// GroupEvents is how many lifecycle events the log keeps per group,
	// apart, for GET /v1/groups/NAME/events; default DefaultGroupEvents.
	GroupEvents int
	// GoneFor is how long a worker that no longer exists stays in the
	// table, as "gone"; default 60 s.
	GoneFor time.Duration
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.History <= 0 {
		o.History = 600
	}
	if o.Events <= 0 {
		o.Events = 500
	}
	if o.GroupEvents <= 0 {
		o.GroupEvents = DefaultGroupEvents
	}
	if o.GoneFor <= 0 {
		o.GoneFor = time.Minute
	}
	return o
}

// Register adds the dashboard's routes to mux: the page (GET /, GET
// /dashboard/…), GET /v1/stream, GET /v1/events and POST
// /v1/workers/{id}/drain. Serve mux behind Guard.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", s.servePage)
	mux.Handle("GET /dashboard/", s.staticHandler())
	mux.HandleFunc("GET /v1/stream", s.serveStream)
	mux.HandleFunc("GET /v1/events", s.serveEvents)
	mux.HandleFunc("POST /v1/workers/{id}/drain", s.serveDrain)
}

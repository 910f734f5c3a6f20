package admin

import (
	"time"

	"github.com/golb/golb/core/autoscale"
)

// The JSON admin API's views. Their field names and tags are the contract:
// scripts and the golb command read them.

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
	// old workers serving; empty otherwise.
	RolloutStopped string `json:"rollout_stopped,omitempty"`
	// Autoscaler is set for a group with a scale block.
	Autoscaler *AutoscalerView `json:"autoscaler,omitempty"`
}

// AutoscalerView is the "autoscaler" object of a group in GET /v1/groups:
// the autoscaler's mode and figures at its last evaluation, and its last
// decision that changed the count.
type AutoscalerView struct {
	Mode autoscale.Mode `json:"mode"`
	// Figures are the last evaluation's, rounded to 2 decimals.
	autoscale.Figures
	// Wants is the count the last evaluation arrived at, and Why its reason.
	Wants int    `json:"wants"`
	Why   string `json:"why"`
	// Held is the requests waiting for a ready worker now, summed over
	// the group's balancers; HoldTimeouts those answered 503 after
	// hold_timeout, HoldRefused those answered 503 past hold_max.
	Held         int64  `json:"held"`
	HoldTimeouts uint64 `json:"hold_timeouts"`
	HoldRefused  uint64 `json:"hold_refused"`
	// FloorUntil is when the floor set by golb scale ends.
	FloorUntil time.Time `json:"floor_until,omitzero"`
	// LastDecision is the newest event of GET /v1/groups/NAME/events.
	LastDecision *autoscale.Decision `json:"last_decision,omitempty"`
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
	// crashed in Start: panic: …"), until it has run a while again.
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

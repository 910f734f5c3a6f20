// Package config decodes golb's HCL file into a validated Config. Every problem
// is an hcl.Diagnostic with file:line:column and a one-line fix hint, so golb
// never starts half-configured. Driver-specific blocks are decoded later against
// the schema the driver plugin announces (DecodeBlock).
package config

import (
	_ "embed"
	"fmt"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// DefaultFile is the embedded default, equal to the seed's config.yaml: three
// process workers from port 6000, two listeners from 5050, 500ms average delay,
// 12% failures, SQLite stats at ./worker-stats.db.
//
//go:embed default.hcl
var DefaultFile []byte

// DefaultFileName names the embedded default in diagnostics.
const DefaultFileName = "<embedded default>"

// Config is a whole golb file.
type Config struct {
	// DataDir holds state, worker logs and image archives. Default ".golb".
	DataDir string `hcl:"data_dir,optional"`
	// PluginDir is searched for external drivers named golb-driver-NAME.
	// Default "./plugins".
	PluginDir string `hcl:"plugin_dir,optional"`

	Admin     *Admin      `hcl:"admin,block"`
	Drivers   []*Driver   `hcl:"driver,block"`
	Plugins   []*Plugin   `hcl:"plugin,block"`
	Groups    []*Group    `hcl:"group,block"`
	Balancers []*Balancer `hcl:"balancer,block"`
	Stats     *Stats      `hcl:"stats,block"`

	Body hcl.Body `hcl:",body"`
	// Filename is where the config came from (DefaultFileName for the default).
	Filename string
}

// Admin is the admin API, /metrics and status endpoint.
type Admin struct {
	// Address to listen on. Default "127.0.0.1:5040": loopback only, since the
	// API can scale groups. Set it to "" to turn the admin API off.
	Address *string  `hcl:"address,optional"`
	Body    hcl.Body `hcl:",body"`
}

// Driver holds the settings of one driver plugin: `driver "docker" { host = … }`.
// Its attributes are decoded against the plugin's settings schema.
type Driver struct {
	Name string   `hcl:"name,label"`
	Body hcl.Body `hcl:",remain"`
}

// Plugin pins an external driver binary: golb refuses to run
// golb-driver-NAME unless its SHA-256 matches.
type Plugin struct {
	Name   string   `hcl:"name,label"`
	SHA256 string   `hcl:"sha256"`
	Body   hcl.Body `hcl:",body"`
}

// Group is a set of identical workers on one driver.
type Group struct {
	Name string `hcl:"name,label"`
	// Driver runs the workers: process (default), docker, or an external driver.
	Driver string `hcl:"driver,optional"`
	// Count is the desired number of workers when there is no scale block.
	// Default 1. Conflicts with scale: with a scale block, scale.min is the
	// initial count and count must be absent or within [min, max].
	Count *int `hcl:"count,optional"`
	// Port is the first worker port; each worker gets the next free one.
	// Required.
	Port int `hcl:"port"`
	// StopSignal is sent to stop a worker: one of drivers.StopSignals, in any
	// case, SIG optional; Parse leaves the canonical name ("SIGTERM").
	// Default "SIGTERM".
	StopSignal string `hcl:"stop_signal,optional"`
	// StopTimeout is how long a worker may take to exit before SIGKILL.
	// Default "10s".
	StopTimeout string `hcl:"stop_timeout,optional"`

	// App configures the built-in worker. Conflicts with a config block that
	// runs another program (command or image).
	App *App `hcl:"app,block"`
	// Config is the driver-specific block, decoded against the driver's schema.
	Config      *RawBlock    `hcl:"config,block"`
	Scale       *Scale       `hcl:"scale,block"`
	HealthCheck *HealthCheck `hcl:"health_check,block"`
	// Update is how a changed group rolls over (update.go). Default
	// max_parallel 1, healthy_deadline "60s".
	Update *Update `hcl:"update,block"`

	Body hcl.Body `hcl:",body"`

	// Decoded by Parse.
	StopTimeoutDur time.Duration
}

// RawBlock is a block whose attributes are decoded later against a schema.
type RawBlock struct {
	Body hcl.Body `hcl:",remain"`
}

// App holds the built-in worker's settings.
type App struct {
	// AvgDelay is the mean delay of /api/v1/hello; each delay is uniform in
	// [avg/2, 3·avg/2]. Default "500ms".
	AvgDelay string `hcl:"avg_delay,optional"`
	// FailureRate is the exact probability of an HTTP 500, 0..1. Default 0.
	FailureRate *float64 `hcl:"failure_rate,optional"`
	Body        hcl.Body `hcl:",body"`

	AvgDelayDur time.Duration
}

// HealthCheck is the balancer's active check of each worker.
type HealthCheck struct {
	Path     string   `hcl:"path,optional"`     // default "/healthz"
	Interval string   `hcl:"interval,optional"` // default "5s"
	Timeout  string   `hcl:"timeout,optional"`  // default "1s"; must be below interval
	Rise     *int     `hcl:"rise,optional"`     // passes to become healthy, default 1
	Fall     *int     `hcl:"fall,optional"`     // failures to become unhealthy, default 2
	Body     hcl.Body `hcl:",body"`

	IntervalDur, TimeoutDur time.Duration
}

// Balancer is a set of listeners in front of one group.
type Balancer struct {
	Name string `hcl:"name,label"`
	// Group is the group whose workers get the traffic. Required.
	Group string `hcl:"group"`
	// Bind is the address the listeners bind. Default "127.0.0.1": loopback
	// only; "0.0.0.0" serves every interface.
	Bind string `hcl:"bind,optional"`
	// Port is the first listener port. Required.
	Port int `hcl:"port"`
	// Listeners is how many ports from Port serve (the seed's "pool"). Default 1.
	Listeners *int `hcl:"listeners,optional"`
	// Policy is one of balancer.Policies: round_robin (default),
	// least_requests, random or p2c.
	Policy string `hcl:"policy,optional"`
	// Retries on another worker when the connection failed before the request
	// was sent. Default 1.
	Retries *int `hcl:"retries,optional"`
	// RetryOn widens retries. Default none. "5xx" also retries 5xx answers of
	// idempotent requests without a body; "connect-failure" is accepted and
	// always on. Retries = 0 turns both off.
	RetryOn []string `hcl:"retry_on,optional"`
	// DrainTimeout bounds how long a removed worker may finish in-flight
	// requests before it is stopped. Default "10s".
	DrainTimeout string `hcl:"drain_timeout,optional"`
	// ResponseTimeout bounds the wait for a worker's response headers once
	// the request is sent; past it the client gets a 504 and the attempt
	// counts as failed (a hung worker, e.g. a SIGSTOPped one). Default
	// "60s"; must be above 0.
	ResponseTimeout string `hcl:"response_timeout,optional"`

	// The HTTP limits of the listeners, on what clients send. A client that
	// breaks one gets a 4xx (or its connection closed), and it never counts
	// against a worker.

	// MaxHeaderBytes caps a request's head: the request line plus the header
	// block; a larger head is answered 431. Default 65536 (64 KiB); must be
	// between 1024 and 1048576.
	MaxHeaderBytes *int `hcl:"max_header_bytes,optional"`
	// HeaderReadTimeout bounds how long a client may take to send a whole
	// request head. Default "10s"; must be above 0.
	HeaderReadTimeout string `hcl:"header_read_timeout,optional"`
	// IdleTimeout closes a client's keep-alive connection that sends no new
	// request for this long. Default "120s"; must be above 0.
	IdleTimeout string `hcl:"idle_timeout,optional"`
	// BodyReadTimeout is the longest pause between two reads of a request
	// body, and the grace before BodyMinRate applies. Default "10s"; must be
	// above 0.
	BodyReadTimeout string `hcl:"body_read_timeout,optional"`
	// BodyMinRate is the average, in bytes per second, a request body must
	// keep up once BodyReadTimeout has passed (slow uploads are cut off).
	// Default 1024; 0 turns the check off; must not be negative.
	BodyMinRate *int `hcl:"body_min_rate,optional"`
	// TunnelIdleTimeout closes an upgraded connection (WebSocket) on which
	// neither side sent a byte for this long. Default "1h"; must be above 0.
	TunnelIdleTimeout string   `hcl:"tunnel_idle_timeout,optional"`
	Body              hcl.Body `hcl:",body"`

	DrainTimeoutDur, ResponseTimeoutDur                      time.Duration
	HeaderReadTimeoutDur, IdleTimeoutDur, BodyReadTimeoutDur time.Duration
	TunnelIdleTimeoutDur                                     time.Duration
}

// Stats configures where per-worker counts go.
type Stats struct {
	// Sink is "sqlite" (default) or "postgres", or another name registered with
	// core/stats.Register; an unknown name is an error listing the known ones.
	Sink string `hcl:"sink,optional"`
	// Path of the SQLite file. Default "worker-stats.db". Not with sink "postgres".
	Path string `hcl:"path,optional"`
	// DSN is the PostgreSQL connection string, a libpq URL or key=value string
	// (postgres only). Default: $GOLB_STATS_DSN, so that a password need not live
	// in the file; an error when both are set and differ, or neither is. After
	// Parse it holds the one in effect. It may hold a password: never print it.
	DSN string `hcl:"dsn,optional"`
	// Instance names this agent's rows in a database several agents share
	// (postgres only). Default: the host name and the absolute data_dir
	// (Config.StatsInstance). Two agents must not share one.
	Instance string `hcl:"instance,optional"`
	// FlushInterval between batches. Default "1s".
	FlushInterval string   `hcl:"flush_interval,optional"`
	Body          hcl.Body `hcl:",body"`

	FlushIntervalDur time.Duration
	// DSNFromEnv is set when DSN came from $GOLB_STATS_DSN.
	DSNFromEnv bool
}

// Group returns the group named name, or nil.
func (c *Config) Group(name string) *Group {
	for _, g := range c.Groups {
		if g.Name == name {
			return g
		}
	}
	return nil
}

// DriverBlock returns the settings block of driver name, or nil.
func (c *Config) DriverBlock(name string) *Driver {
	for _, d := range c.Drivers {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// DriversUsed lists the drivers the groups use, each once, in file order.
func (c *Config) DriversUsed() []string {
	var out []string
	seen := map[string]bool{}
	for _, g := range c.Groups {
		if !seen[g.Driver] {
			seen[g.Driver] = true
			out = append(out, g.Driver)
		}
	}
	return out
}

// AdminAddress is the admin API address, "" when turned off.
func (c *Config) AdminAddress() string { return *c.Admin.Address }

// PortClaim is a range of ports one block of the config claims.
type PortClaim struct {
	First, Last int
	Group       string // the group whose workers these are; "" for listeners and the admin API
	What        string // for messages: `group "hello" workers (6000-6002)`
	Range       hcl.Range
}

// PortClaims lists the port ranges the config gives out: each group's
// worker ports (port … port+MaxCount-1), each balancer's listeners and the
// admin API. Ranges that validation reports as invalid are left out.
func (c *Config) PortClaims() []PortClaim {
	inRange := func(first, last int) bool { return first >= 1 && first <= last && last <= 65535 }
	var out []PortClaim
	for _, g := range c.Groups {
		if n := max(g.MaxCount(), 1); n <= 1000 && inRange(g.Port, g.Port+n-1) {
			out = append(out, PortClaim{g.Port, g.Port + n - 1, g.Name,
				fmt.Sprintf("group %q workers (%d-%d)", g.Name, g.Port, g.Port+n-1), attrRange(g.Body, "port")})
		}
	}
	for _, b := range c.Balancers {
		if b.Listeners == nil {
			continue
		}
		if n := *b.Listeners; n >= 1 && n <= 64 && inRange(b.Port, b.Port+n-1) {
			out = append(out, PortClaim{b.Port, b.Port + n - 1, "",
				fmt.Sprintf("balancer %q listeners (%d-%d)", b.Name, b.Port, b.Port+n-1), attrRange(b.Body, "port")})
		}
	}
	if c.Admin != nil && c.Admin.Address != nil {
		if p, ok := adminPort(c.AdminAddress()); ok && p != 0 {
			out = append(out, PortClaim{p, p, "", fmt.Sprintf("the admin API (%d)", p), attrRange(c.Admin.Body, "address")})
		}
	}
	return out
}

// InitialCount is the desired count at start: count, or scale.min.
func (g *Group) InitialCount() int {
	if g.Count != nil {
		return *g.Count
	}
	if g.Scale != nil {
		return g.Scale.Min
	}
	return 1
}

// MaxCount is the most workers the group may run (for port planning).
func (g *Group) MaxCount() int {
	if g.Scale != nil {
		return g.Scale.Max
	}
	return g.InitialCount()
}

// RunsBuiltinWorker reports whether the group runs golb's built-in worker: its
// config block names no command or image of its own. Only then do the app
// settings apply.
func (g *Group) RunsBuiltinWorker() bool {
	if g.Config == nil {
		return true
	}
	return !hasAttr(g.Config.Body, "command") && !hasAttr(g.Config.Body, "image")
}

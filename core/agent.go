// Package core is golb's agent: it turns a validated config into running
// workers and balancers. It launches the driver plugins, keeps desired and
// actual state in go-memdb (core/state), reconciles them, feeds the balancers
// from WatchSets, flushes stats through a sink (core/stats) and serves the
// admin API.
package core

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/golb/golb/balancer"
	"github.com/golb/golb/core/config"
	"github.com/golb/golb/core/state"
	"github.com/golb/golb/core/stats"
)

// Labels core puts on every worker besides the SDK's own.
const (
	// LabelInstance scopes workers to one golb data directory, so two golb
	// agents (or a test) on one Docker engine never adopt each other's workers.
	LabelInstance = "golb.instance"
	// LabelSpec is a hash of everything that shapes a worker; a worker whose
	// hash no longer matches the config is replaced, not adopted.
	LabelSpec = "golb.spec"
)

// Options are the agent's settings that do not come from the config file.
type Options struct {
	// Self is how to run the golb binary itself (built-in drivers run as
	// `Self... driver NAME`). Default: os.Executable().
	Self []string
	// WorkerCommand is how to run golb's built-in worker: every driver gets
	// it in WorkerSpec.WorkerCommand for a group that runs the built-in
	// worker, so that external drivers can run it too. Default: Self
	// followed by "worker".
	WorkerCommand []string
	// Builtins are the drivers Self serves as `Self... driver NAME`, in
	// the order `golb drivers` lists them: cmd/golb passes the names of its
	// registry of built-in drivers. Any other driver is an external
	// golb-driver-NAME in plugin_dir. Default none.
	Builtins []string
	// Logger for the agent. Default slog.Default().
	Logger *slog.Logger
	// Verbose shows plugin debug logs.
	Verbose bool
}

// Agent runs one config.
type Agent struct {
	cfg       *config.Config
	logger    *slog.Logger
	store     *state.Store
	plugins   *pluginManager
	instance  string
	workerCmd []string // Options.WorkerCommand

	groups        map[string]*groupSpec
	failedDrivers []string // plugins Prepare could not start
	balancers     []*balancer.Balancer
	byGroup       map[string][]*balancer.Balancer
	agg           *stats.Aggregator
	autoscalers   *autoscaling // autoscale.go
	sink          stats.Sink

	// trafficCtx outlives the control loops at shutdown: worker supervisors
	// run on it until the listeners have drained.
	trafficCtx context.Context
	// controlCtx ends first at shutdown: background retries run on it.
	// Run sets both once, before it starts anything that reads them (the
	// admin API, the plugin monitor, adoption), and never again; code that
	// may run before Run (Reload) reads them under reloads.run.
	controlCtx context.Context

	mu      sync.Mutex
	crashes map[string]*crashLoop // by group
	adopted map[string]bool       // drivers whose earlier workers were adopted
	// cut are the ids of cut Starts whose late workers are looked for
	// (cutstart.go).
	cut cutStarts
	// stopGrace and destroyTimeout bound a worker's Stop (past its
	// stop_timeout) and Destroy: stop.go.
	stopGrace, destroyTimeout time.Duration
	// recoverTimeout bounds each Recover by a restarted plugin instance
	// (recoverAfterPluginCrash); a retry may take longer.
	recoverTimeout time.Duration
	// finalStop is set once shutdown stops the workers: a worker that
	// cannot be stopped then is reported, not retried.
	finalStop atomic.Bool

	// pluginNotes are the NOTEs a driver's plugin crash put on its groups.
	pluginNotes map[string]string // by driver
	// wg is the background work (goWork) shutdown waits for: work may be
	// added while Run waits (run.go).
	wg workGroup

	// fleetMu guards the swap of cfg, groups, balancers and byGroup by a
	// reload (fleet.go); fleetGen is closed at each swap.
	fleetMu  sync.RWMutex
	fleetGen chan struct{}
	// reloads is the reload history (reload.go).
	reloads reloadLog
	// newSettings are the driver settings a reload's plan resolves group
	// templates with (set on the plan's scratch agent only).
	newSettings map[string][]byte
	// metrics is the admin API's registry, nil without one: a reload
	// registers the collectors of the balancers it adds.
	metrics *prometheus.Registry
}

// groupSpec is a group's resolved, driver-checked worker template.
type groupSpec struct {
	cfg    *config.Group
	config json.RawMessage
	env    map[string]string
	hash   string
}

// New returns an agent for cfg. Call Prepare, then Run.
func New(cfg *config.Config, opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if len(opts.Self) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the golb binary: %w", err)
		}
		opts.Self = []string{exe}
	}
	if len(opts.WorkerCommand) == 0 {
		opts.WorkerCommand = append(slices.Clone(opts.Self), "worker")
	}
	store, err := state.New()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("resolving data_dir: %w", err)
	}
	cfg.DataDir = abs
	sum := sha256.Sum256([]byte(abs))
	return &Agent{
		cfg:       cfg,
		logger:    opts.Logger,
		store:     store,
		plugins:   newPluginManager(cfg, opts.Self, opts.Builtins, store, opts.Logger, opts.Verbose),
		instance:  hex.EncodeToString(sum[:6]),
		workerCmd: opts.WorkerCommand,
		groups:    map[string]*groupSpec{},
		byGroup:   map[string][]*balancer.Balancer{},
		crashes:   map[string]*crashLoop{},
		adopted:   map[string]bool{},

		pluginNotes:    map[string]string{},
		stopGrace:      defaultStopGrace,
		destroyTimeout: defaultDestroyTimeout,
		recoverTimeout: defaultRecoverTimeout,
		autoscalers:    newAutoscaling(),
		fleetGen:       make(chan struct{}),
	}, nil
}

// Store exposes the agent's state (for tests and the admin API).
func (a *Agent) Store() *state.Store { return a.store }

// Close stops the driver plugins (not their workers). Run calls it itself.
func (a *Agent) Close() { a.plugins.killAll() }

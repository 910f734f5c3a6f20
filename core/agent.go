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
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/hcl/v2"

	"github.com/golb/golb/balancer"
	"github.com/golb/golb/core/config"
	"github.com/golb/golb/core/state"
	"github.com/golb/golb/core/stats"
	"github.com/golb/golb/drivers"
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
	// Logger for the agent. Default slog.Default().
	Logger *slog.Logger
	// Verbose shows plugin debug logs.
	Verbose bool
}

// Agent runs one config.
type Agent struct {
	cfg      *config.Config
	logger   *slog.Logger
	store    *state.Store
	plugins  *pluginManager
	instance string

	groups    map[string]*groupSpec
	balancers []*balancer.Balancer
	byGroup   map[string][]*balancer.Balancer
	agg       *stats.Aggregator
	sink      stats.Sink

	// trafficCtx outlives the control loops at shutdown: worker supervisors
	// run on it until the listeners have drained.
	trafficCtx context.Context

	mu      sync.Mutex
	crashes map[string]*crashLoop // by group
	adopted map[string]bool       // drivers whose earlier workers were adopted
	wg      sync.WaitGroup
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
		cfg:      cfg,
		logger:   opts.Logger,
		store:    store,
		plugins:  newPluginManager(cfg, opts.Self, store, opts.Logger, opts.Verbose),
		instance: hex.EncodeToString(sum[:6]),
		groups:   map[string]*groupSpec{},
		byGroup:  map[string][]*balancer.Balancer{},
		crashes:  map[string]*crashLoop{},
		adopted:  map[string]bool{},
	}, nil
}

// Store exposes the agent's state (for tests and the admin API).
func (a *Agent) Store() *state.Store { return a.store }

// Prepare launches the drivers the config uses and checks every driver block
// against them. Error diagnostics mean nothing may start; Close releases the
// plugins either way.
func (a *Agent) Prepare(ctx context.Context) hcl.Diagnostics {
	var diags hcl.Diagnostics
	used := a.cfg.DriversUsed()
	for _, d := range a.cfg.Drivers {
		if !slices.Contains(used, d.Name) {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagWarning,
				Summary:  fmt.Sprintf("No group uses driver %q", d.Name),
				Detail:   "Its settings are not checked or used. Remove the block, or fix the name.",
				Subject:  blockRangeOf(d.Body).Ptr(),
			})
		}
	}
	for _, p := range a.cfg.Plugins {
		if slices.Contains(BuiltinDrivers, p.Name) {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("Driver %q is built into golb and cannot be pinned", p.Name),
				Detail:   "A plugin pin checks an external golb-driver-NAME binary; remove this block.",
				Subject:  blockRangeOf(p.Body).Ptr(),
			})
		}
	}
	if !slices.Contains(stats.Sinks(), a.cfg.Stats.Sink) {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Unknown stats sink %q", a.cfg.Stats.Sink),
			Detail:   "Use one of: " + strings.Join(stats.Sinks(), ", ") + ".",
			Subject:  attrRangeOf(a.cfg.Stats.Body, "sink").Ptr(),
		})
	}
	for _, name := range used {
		diags = append(diags, a.prepareDriver(ctx, name)...)
	}
	if diags.HasErrors() {
		return diags
	}
	for _, g := range a.cfg.Groups {
		diags = append(diags, a.prepareGroup(ctx, g)...)
	}
	return diags
}

func (a *Agent) prepareDriver(ctx context.Context, name string) hcl.Diagnostics {
	// The first group using the driver is where a missing driver is reported.
	var rng hcl.Range
	for _, g := range a.cfg.Groups {
		if g.Driver == name {
			rng = attrRangeOf(g.Body, "driver")
			break
		}
	}
	diagErr := func(summary, detail string) hcl.Diagnostics {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: rng.Ptr()}}
	}
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, info, err := a.plugins.launch(lctx, name)
	if errors.Is(err, ErrDriverNotFound) {
		return diagErr(fmt.Sprintf("Driver %q not found", name), fmt.Sprintf("Use a built-in driver (%v) or put an executable golb-driver-%s in plugin_dir (%s).", BuiltinDrivers, name, a.cfg.PluginDir))
	}
	if err != nil {
		return diagErr(fmt.Sprintf("Driver %q failed to start", name), err.Error())
	}
	var settings json.RawMessage
	var diags hcl.Diagnostics
	if blk := a.cfg.DriverBlock(name); blk != nil {
		settings, diags = config.DecodeBlock(blk.Body, info.SettingsSchema, fmt.Sprintf("driver %q", name))
		if diags.HasErrors() {
			c.Kill()
			return diags
		}
	}
	if err := a.plugins.configure(lctx, c, name, settings); err != nil {
		c.Kill()
		return diagErr(fmt.Sprintf("Driver %q rejected its settings", name), err.Error())
	}
	a.plugins.add(name, c, info, settings)
	fp, err := c.Fingerprint(lctx)
	if err != nil {
		fp = drivers.Fingerprint{Detail: err.Error()}
	}
	_ = a.store.UpsertDriver(&state.Driver{Name: name, Info: info, Fingerprint: fp, PluginPID: c.Pid(), Running: true})
	if !fp.Healthy {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning,
			Summary:  fmt.Sprintf("Driver %q cannot reach its runtime", name),
			Detail:   fp.Detail,
			Subject:  rng.Ptr(),
		})
	}
	return diags
}

func (a *Agent) prepareGroup(ctx context.Context, g *config.Group) hcl.Diagnostics {
	c, _, err := a.plugins.current(g.Driver)
	if err != nil {
		return nil // reported by prepareDriver
	}
	info, err := c.Info(ctx)
	if err != nil {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Driver " + g.Driver + " failed", Detail: err.Error()}}
	}
	// A group without a config block is checked as an empty one, so that a
	// driver's required attributes are reported, not discovered at start.
	body := hcl.Body(hcl.EmptyBody())
	if g.Config != nil {
		body = g.Config.Body
	}
	raw, diags := config.DecodeBlock(body, info.ConfigSchema, fmt.Sprintf("the %s driver's config block", g.Driver))
	if diags.HasErrors() {
		return rangeOnGroup(diags, g)
	}
	ds, err := c.ValidateConfig(ctx, raw)
	if err != nil {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Driver " + g.Driver + " could not validate the config block", Detail: err.Error(), Subject: attrRangeOf(g.Body, "driver").Ptr()}}
	}
	if diags = append(diags, rangeOnGroup(config.DriverDiagnostics(body, ds, g.Driver), g)...); diags.HasErrors() {
		return diags
	}
	// The app settings reach the built-in worker only: a group running its
	// own program sets its environment in its config block.
	env := map[string]string{}
	if g.RunsBuiltinWorker() {
		if d := appEnvConflict(g, raw); d != nil {
			return append(diags, d)
		}
		env["GOLB_AVG_DELAY"] = g.App.AvgDelayDur.String()
		env["GOLB_FAILURE_RATE"] = strconv.FormatFloat(*g.App.FailureRate, 'g', -1, 64)
	}
	h := sha256.New()
	var settings []byte
	if p, _, err := a.plugins.managed(g.Driver); err == nil {
		settings = p.settings
	}
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%s\x00%s\x00%s", g.Driver, settings, g.Port, raw, env["GOLB_AVG_DELAY"], env["GOLB_FAILURE_RATE"])
	a.groups[g.Name] = &groupSpec{cfg: g, config: raw, env: env, hash: hex.EncodeToString(h.Sum(nil))[:12]}
	return diags
}

// rangeOnGroup points diagnostics that have no source position (those of a
// config block the group does not have) at the group's driver attribute.
// appEnvConflict reports a built-in worker's config env that sets what the
// app block sets (golb would override it without a word).
func appEnvConflict(g *config.Group, raw json.RawMessage) *hcl.Diagnostic {
	var c struct {
		Env map[string]string `json:"env"`
	}
	if json.Unmarshal(raw, &c) != nil {
		return nil
	}
	for _, k := range []string{"GOLB_AVG_DELAY", "GOLB_FAILURE_RATE"} {
		if _, ok := c.Env[k]; ok {
			return &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "env sets " + k + ", which the app block sets for the built-in worker",
				Detail:   "Set it in app { avg_delay / failure_rate } instead.",
				Subject:  attrRangeOf(g.Config.Body, "env").Ptr(),
			}
		}
	}
	return nil
}

func rangeOnGroup(diags hcl.Diagnostics, g *config.Group) hcl.Diagnostics {
	for _, d := range diags {
		if d.Subject == nil || d.Subject.Filename == "" {
			d.Subject = attrRangeOf(g.Body, "driver").Ptr()
		}
	}
	return diags
}

// Close stops the driver plugins (not their workers). Run calls it itself.
func (a *Agent) Close() { a.plugins.killAll() }

// Run starts balancers, adopts or starts workers, and reconciles until ctx
// ends; then it drains the balancers, stops the workers, flushes stats and
// returns. A listener that cannot bind is an error before anything starts.
func (a *Agent) Run(ctx context.Context) (err error) {
	defer a.Close()
	if err := os.MkdirAll(a.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("creating data_dir: %w", err)
	}
	unlock, err := lockDataDir(a.cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	if a.sink, err = stats.Open(a.cfg.Stats.Sink, a.cfg.Stats.Path); err != nil {
		return err
	}
	defer a.sink.Close()
	if a.agg, err = stats.NewAggregator(a.sink, a.cfg.Stats.FlushIntervalDur, a.logger); err != nil {
		return err
	}
	for _, g := range a.cfg.Groups {
		min, max := 0, 1000
		if g.Scale != nil {
			min, max = g.Scale.Min, g.Scale.Max
		}
		if err := a.store.UpsertGroup(&state.Group{Name: g.Name, Driver: g.Driver, Desired: g.InitialCount(), Min: min, Max: max}); err != nil {
			return err
		}
	}
	if err := a.startBalancers(ctx); err != nil {
		return err
	}
	var admin *http.Server
	if addr := a.cfg.AdminAddress(); addr != "" {
		if admin, err = a.serveAdmin(addr); err != nil {
			a.shutdownBalancers(context.Background())
			return err
		}
	}

	// Four lifetimes, ended in this order at shutdown:
	//   control (reconciler, autoscaler): no new starts or scaling;
	//   traffic (balancer feeds, worker supervisors): until the listeners
	//     have drained, so a worker dying meanwhile still leaves the pool;
	//   stats flushing: until the workers are stopped;
	//   the plugin monitor: stopping workers needs a live plugin.
	background := context.WithoutCancel(ctx)
	monCtx, stopMonitor := context.WithCancel(background)
	defer stopMonitor()
	statsCtx, stopStats := context.WithCancel(background)
	defer stopStats()
	trafficCtx, stopTraffic := context.WithCancel(background)
	defer stopTraffic()
	controlCtx, stopControl := context.WithCancel(background)
	defer stopControl()
	a.trafficCtx = trafficCtx

	var monitorWG, statsWG, trafficWG, controlWG sync.WaitGroup
	spawn := func(wg *sync.WaitGroup, ctx context.Context, fn func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); fn(ctx) }()
	}
	spawn(&monitorWG, monCtx, func(ctx context.Context) { a.plugins.monitor(ctx, a.recoverAfterPluginCrash) })
	spawn(&statsWG, statsCtx, a.agg.Run)
	for group, bs := range a.byGroup {
		for _, b := range bs {
			spawn(&trafficWG, trafficCtx, a.feedBalancer(b, group))
		}
	}
	// Adoption stops at Ctrl-C like everything else; what it adopted by then
	// is stopped with the rest.
	adoptCtx, stopAdopt := context.WithCancel(controlCtx)
	context.AfterFunc(ctx, stopAdopt)
	a.adopt(adoptCtx)
	stopAdopt()
	spawn(&controlWG, controlCtx, a.reconcileLoop)
	spawn(&controlWG, controlCtx, a.autoscaleLoop)
	a.logger.Info("golb running", "groups", len(a.cfg.Groups), "balancers", len(a.balancers), "admin", a.cfg.AdminAddress())

	<-ctx.Done()
	a.logger.Info("shutting down: draining balancers, stopping workers")
	stopControl()
	controlWG.Wait()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.maxDrain()+5*time.Second)
	defer cancel()
	a.shutdownBalancers(shutdownCtx)
	stopTraffic()
	trafficWG.Wait()
	a.wg.Wait() // workers being started, stopped or supervised
	a.stopAllWorkers(context.Background())
	stopStats()
	statsWG.Wait()
	if err := a.agg.Flush(context.Background()); err != nil {
		a.logger.Error("final stats flush failed", "err", err)
	}
	stopMonitor()
	monitorWG.Wait()
	if admin != nil {
		_ = admin.Shutdown(shutdownCtx)
	}
	a.logger.Info("golb stopped")
	return nil
}

// lockDataDir takes an exclusive lock on data_dir, so that two agents never
// manage (and adopt, and remove) the same workers. The returned func releases it.
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, "golb.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking data_dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("%w: another golb (pid %s) is using %s; stop it, or give this config its own data_dir", ErrDataDirInUse, strings.TrimSpace(string(owner)), dir)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}

func (a *Agent) maxDrain() time.Duration {
	d := time.Duration(0)
	for _, b := range a.cfg.Balancers {
		d = max(d, b.DrainTimeoutDur)
	}
	return d
}

func (a *Agent) startBalancers(ctx context.Context) error {
	statsHandler := stats.Handler(a.agg)
	for _, bc := range a.cfg.Balancers {
		g := a.cfg.Group(bc.Group)
		hc := g.HealthCheck
		// The balancer reads 0 as "default"; golb's 0 means none.
		retries := *bc.Retries
		if retries == 0 {
			retries = -1
		}
		drain := bc.DrainTimeoutDur
		if drain == 0 {
			drain = time.Nanosecond
		}
		minRate := *bc.BodyMinRate // golb's 0 turns the check off, which the balancer spells negative
		if minRate == 0 {
			minRate = -1
		}
		var retryOn []string
		for _, r := range bc.RetryOn {
			if r != "connect-failure" { // always on
				retryOn = append(retryOn, r)
			}
		}
		b, err := balancer.New(balancer.Config{
			Name:      bc.Name,
			BindAddr:  bc.Bind,
			Port:      bc.Port,
			Listeners: *bc.Listeners,
			Policy:    bc.Policy,
			Retries:   retries,
			RetryOn:   retryOn,
			Health: balancer.HealthCheck{
				Path: hc.Path, Interval: hc.IntervalDur, Timeout: hc.TimeoutDur, Rise: *hc.Rise, Fall: *hc.Fall,
			},
			DrainTimeout:          drain,
			ResponseHeaderTimeout: bc.ResponseTimeoutDur,
			MaxHeaderBytes:        *bc.MaxHeaderBytes,
			HeaderReadTimeout:     bc.HeaderReadTimeoutDur,
			IdleTimeout:           bc.IdleTimeoutDur,
			BodyReadTimeout:       bc.BodyReadTimeoutDur,
			BodyMinRate:           minRate,
			Local:                 map[string]http.Handler{"/worker/stats": statsHandler},
			Logger:                a.logger,
		})
		if err != nil {
			a.shutdownBalancers(context.Background())
			return fmt.Errorf("configuring balancer %q: %w", bc.Name, err)
		}
		if err := b.Start(ctx); err != nil { // it names the balancer and the address
			a.shutdownBalancers(context.Background())
			return err
		}
		a.balancers = append(a.balancers, b)
		a.byGroup[bc.Group] = append(a.byGroup[bc.Group], b)
		a.agg.AddSource(bc.Name, balancerSource(b))
	}
	return nil
}

func balancerSource(b *balancer.Balancer) stats.Source {
	return func() []stats.Count {
		ws := b.Stats()
		out := make([]stats.Count, 0, len(ws))
		for _, w := range ws {
			if w.Removed && w.Success+w.Failed == 0 {
				continue // gone before its first request: not worth a stats row
			}
			out = append(out, stats.Count{WorkerID: w.ID, Success: w.Success, Failed: w.Failed, LatencySum: w.LatencySum})
		}
		return out
	}
}

func (a *Agent) shutdownBalancers(ctx context.Context) {
	var wg sync.WaitGroup
	for _, b := range a.balancers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Shutdown(ctx); err != nil {
				a.logger.Warn("balancer shutdown", "err", err)
			}
		}()
	}
	wg.Wait()
}

// feedBalancer keeps a balancer's pool equal to its group's running workers,
// woken by memdb on every change to them.
func (a *Agent) feedBalancer(b *balancer.Balancer, group string) func(context.Context) {
	return func(ctx context.Context) {
		for ctx.Err() == nil {
			ws := memdb.NewWatchSet()
			workers, err := a.store.WorkersByGroup(ws, group)
			if err != nil {
				a.logger.Error("reading workers for the balancer", "err", err)
				time.Sleep(time.Second)
				continue
			}
			var pool []balancer.Backend
			for _, w := range workers {
				if w.Status == state.StatusRunning && w.Address != "" {
					pool = append(pool, balancer.Backend{ID: w.ID, Address: w.Address})
				}
			}
			b.SetBackends(pool)
			_ = ws.WatchCtx(ctx)
		}
	}
}

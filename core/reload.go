package core

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/hcl/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/golb/golb/balancer"
	"github.com/golb/golb/core/config"
	"github.com/golb/golb/core/state"
	"github.com/golb/golb/core/stats"
)

// A reload re-reads the file golb was started with and applies the
// difference live, as Caddy does: the new config is validated whole (the
// checks of `golb validate`, driver config blocks included) and diffed
// against the running one into a plan (reload_plan.go); a change that cannot
// apply live refuses the whole reload with its reason; only then is anything
// changed. Groups converge through the reconciler (a changed shape rolls
// over: rollout.go), balancers change in place (balancer.Update), and
// autoscalers start, take their new scale blocks or stop, with the
// holding of their balancers (reload_scale.go).

// ReloadError is a reload that changed nothing: the file is invalid (Diags,
// with Files to print them with their source) or it asks for changes that
// cannot apply live (Refused, one reason each).
type ReloadError struct {
	Diags   hcl.Diagnostics
	Files   map[string]*hcl.File
	Refused []string
}

func (e *ReloadError) Error() string {
	if len(e.Refused) > 0 {
		return "reload refused, nothing changed: " + strings.Join(e.Refused, "; ")
	}
	return "reload refused, nothing changed: the config has errors: " + e.Diags.Error()
}

// Unwrap is ErrReloadRefused or ErrConfig.
func (e *ReloadError) Unwrap() error {
	if len(e.Refused) > 0 {
		return ErrReloadRefused
	}
	return ErrConfig
}

// Reload applies the config file golb was started with, as it is now. It
// returns the reload's event (also kept for `golb status`, logged and
// counted in /metrics); its error is a *ReloadError when nothing changed
// because of the file, or ErrNotRunning. A golb started without a file
// keeps the embedded default and says so.
func (a *Agent) Reload(ctx context.Context) (ReloadEvent, error) {
	a.reloads.run.Lock()
	defer a.reloads.run.Unlock()
	if a.controlCtx == nil || a.controlCtx.Err() != nil {
		return ReloadEvent{}, ErrNotRunning
	}
	old := a.config()
	if old.Filename == config.DefaultFileName {
		ev := a.reloads.add(ReloadUnchanged, "golb runs the embedded default (started without a file): there is no file to re-read; nothing changed")
		a.logger.Info("reload: nothing to re-read", "summary", ev.Summary)
		return ev, nil
	}
	cfg, files, diags := config.LoadWith(old.Filename, config.Options{Builtins: a.plugins.builtins})
	if !diags.HasErrors() {
		var err error
		if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot resolve data_dir", Detail: err.Error()})
		}
	}
	var p *reloadPlan
	if !diags.HasErrors() {
		p, diags = a.plan(ctx, old, cfg)
	}
	if diags.HasErrors() {
		ev := a.reloads.add(ReloadInvalid, fmt.Sprintf("%s has errors: %s", old.Filename, firstError(diags)))
		for _, d := range diags {
			if d.Severity == hcl.DiagError {
				a.logger.Error("reload refused: the config has an error; nothing changed", "error", firstError(hcl.Diagnostics{d}), "hint", d.Detail)
			}
		}
		return ev, &ReloadError{Diags: diags, Files: files}
	}
	if len(p.refused) > 0 {
		ev := a.reloads.add(ReloadRefused, strings.Join(p.refused, "; "))
		a.logger.Error("reload refused: changes that cannot apply live; nothing changed", "reasons", ev.Summary)
		return ev, &ReloadError{Refused: p.refused}
	}
	if len(p.changes) == 0 {
		ev := a.reloads.add(ReloadUnchanged, "no change")
		a.logger.Info("reload: the config is unchanged")
		return ev, nil
	}
	if err := a.apply(ctx, p); err != nil {
		ev := a.reloads.add(ReloadRefused, err.Error())
		a.logger.Error("reload refused; nothing changed", "err", err)
		return ev, &ReloadError{Refused: []string{err.Error()}}
	}
	ev := a.reloads.add(ReloadApplied, strings.Join(p.changes, "; "))
	a.logger.Info("reload applied", "changes", ev.Summary)
	return ev, nil
}

// firstError is the first error diagnostic, positioned, on one line.
func firstError(diags hcl.Diagnostics) string {
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			if d.Subject != nil {
				return fmt.Sprintf("%s:%d:%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, d.Summary)
			}
			return d.Summary
		}
	}
	return ""
}

// apply carries out a plan. What can fail (binding listeners) comes first;
// if it fails, what it did is undone and the error returned. Then the fleet
// is swapped and the groups' desired state written, which the reconciler
// and the balancer feeds act on.
func (a *Agent) apply(ctx context.Context, p *reloadPlan) error {
	statsHandler := stats.Handler(a.agg)
	var started []*balancer.Balancer
	// undo stops the balancers this reload started. They served from Start on,
	// so their counts are folded into the stats base, never dropped.
	undo := func() {
		for _, b := range started {
			_ = b.Shutdown(context.Background())
			a.retireSource(b)
		}
	}
	newByName := map[string]*balancer.Balancer{}
	for _, bc := range p.addBalancers {
		g := p.cfg.Group(bc.Group)
		bcfg := balancerConfig(bc, g)
		bcfg.Local = map[string]http.Handler{"/worker/stats": statsHandler}
		bcfg.Logger = a.logger
		bcfg.Hold = a.holdSettings(g) // its autoscaler starts in applyScale
		b, err := balancer.New(bcfg)
		if err == nil {
			// Its pool first: it serves as soon as its checks pass.
			b.SetBackends(a.poolOf(bc.Group))
			err = b.Start(ctx)
		}
		if err != nil {
			undo()
			return fmt.Errorf("starting balancer %q: %w", bc.Name, err)
		}
		// Counted from Start on: it may proxy before this reload is done (or
		// undone). Its own key: a balancer of its name may still be draining.
		a.agg.AddSource(sourceKey(b), balancerSource(b))
		started = append(started, b)
		if testHookBalancerStarted != nil {
			testHookBalancerStarted(b)
		}
		newByName[bc.Name] = b
	}
	var updated []*balancer.Balancer
	for _, u := range p.updateBalancers {
		if err := u.b.Update(ctx, u.cfg); err != nil {
			for _, b := range updated {
				_ = b.Update(context.Background(), p.oldBalancerCfg[b])
			}
			undo()
			return err
		}
		updated = append(updated, u.b)
	}

	// The new fleet: every balancer the new config has, each under its group.
	var bs []*balancer.Balancer
	byGroup := map[string][]*balancer.Balancer{}
	for _, bc := range p.cfg.Balancers {
		b := newByName[bc.Name]
		if b == nil {
			b = p.kept[bc.Name]
		}
		bs = append(bs, b)
		byGroup[bc.Group] = append(byGroup[bc.Group], b)
	}
	a.swapFleet(p.cfg, p.groups, bs, byGroup)
	for name, settings := range p.driverRestarts {
		a.restartDriver(ctx, name, settings)
	}

	for _, b := range started {
		if a.metrics != nil {
			if err := a.metrics.Register(b.Collector()); errors.As(err, &prometheus.AlreadyRegisteredError{}) {
				// The instance of the same name an earlier reload removed
				// still drains: unregisterMetrics registers this one then.
				a.logger.Debug("a new balancer's metrics wait for its draining namesake", "balancer", b.Name())
			} else if err != nil {
				a.logger.Warn("registering the metrics of a new balancer", "balancer", b.Name(), "err", err)
			}
		}
		a.goWork(a.trafficCtx, a.feedBalancer(b))
	}
	for _, g := range p.addGroups {
		lo, hi := 0, 1000
		if g.Scale != nil {
			lo, hi = g.Scale.Min, g.Scale.Max
		}
		if err := a.store.UpsertGroup(&state.Group{Name: g.Name, Driver: g.Driver, Desired: g.InitialCount(), Min: lo, Max: hi}); err != nil {
			a.logger.Error("reload: recording a new group", "group", g.Name, "err", err)
		}
	}
	for name, n := range p.counts {
		_ = a.store.UpdateGroup(name, func(g *state.Group) error { g.Desired = n; return nil })
	}
	a.applyScale(p)
	for _, name := range p.rollovers {
		driver := p.cfg.Group(name).Driver
		_ = a.store.UpdateGroup(name, func(g *state.Group) error { g.Driver = driver; return nil })
		n, err := a.beginRollout(name, p.groups[name].hash)
		if err != nil {
			a.logger.Error("reload: starting a rollover", "group", name, "err", err)
			continue
		}
		max, deadline := a.rolloutSettings(name)
		a.logger.Info("rollover begins: replacements start, old workers serve until they are healthy",
			"group", name, "outdated", n, "max_parallel", max, "healthy_deadline", deadline)
	}
	a.goWork(a.trafficCtx, func(context.Context) { a.removeLater(p.removeBalancers, p.removeGroups) })
	return nil
}

// unregisterMetrics takes the series of b, a removed balancer now closed,
// off /metrics. A balancer of the same name that a later reload added while
// b drained was refused registration then (the same descriptors): it is
// registered now, or /metrics would show it never again.
func (a *Agent) unregisterMetrics(b *balancer.Balancer) {
	if a.metrics == nil {
		return
	}
	a.reloads.run.Lock() // against a reload registering meanwhile
	defer a.reloads.run.Unlock()
	a.metrics.Unregister(b.Collector())
	for _, cur := range a.allBalancers() {
		if cur != b && cur.Name() == b.Name() {
			if err := a.metrics.Register(cur.Collector()); err != nil && !errors.As(err, &prometheus.AlreadyRegisteredError{}) {
				a.logger.Warn("registering the metrics of a re-added balancer", "balancer", cur.Name(), "err", err)
			}
		}
	}
}

// testHookBalancerStarted, when set (tests only, before the agent runs), is
// called by apply after each balancer it started, before the rest of the reload.
var testHookBalancerStarted func(*balancer.Balancer)

// removeLater closes the balancers a reload removed, each after its
// requests in flight finished (within its drain_timeout), and then stops the
// groups it removed: their workers serve the removed balancers' last
// requests first.
func (a *Agent) removeLater(bs []*balancer.Balancer, groups []string) {
	var wg sync.WaitGroup
	for _, b := range bs {
		wg.Go(func() {
			if err := b.Shutdown(context.Background()); err != nil {
				a.logger.Warn("removed balancer's drain cut short", "balancer", b.Name(), "err", err)
			}
			a.retireSource(b) // its last requests are counted now
			a.unregisterMetrics(b)
			a.logger.Info("removed balancer closed", "balancer", b.Name())
		})
	}
	wg.Wait()
	a.reloads.run.Lock()
	defer a.reloads.run.Unlock()
	for _, name := range groups {
		if a.config().Group(name) != nil {
			// A later reload brought it back while the balancers removed
			// with it drained: its workers served their last requests, and
			// now those with other settings roll over.
			a.rollReadded(name)
			continue
		}
		_ = a.store.UpdateGroup(name, func(g *state.Group) error { g.Desired, g.Min, g.Max = 0, 0, 0; return nil })
		a.goWork(a.controlCtx, func(ctx context.Context) { a.forgetGroup(ctx, name) })
	}
}

// rollReadded rolls over the workers of group, removed by a reload and
// added back by a later one before they were stopped, that do not run its
// settings now: an added group has no rollover of its own (apply), so they
// would serve with the settings of before its removal for good. A group
// whose rollover is under way already (a reload changed it since) is left
// to it.
func (a *Agent) rollReadded(group string) {
	gs := a.spec(group)
	ws, err := a.store.WorkersByGroup(nil, group)
	if gs == nil || err != nil {
		return
	}
	stale := false
	for _, w := range ws {
		stale = stale || w.Status.Live() && !w.Outdated && (w.Handle == nil || w.Handle.Labels[LabelSpec] != gs.hash)
	}
	if !stale {
		return
	}
	n, err := a.beginRollout(group, gs.hash)
	if err != nil {
		a.logger.Error("starting the rollover of a group added back", "group", group, "err", err)
		return
	}
	maxParallel, deadline := a.rolloutSettings(group)
	a.logger.Info("group added back while its removed balancers drained: its workers with the settings of before roll over",
		"group", group, "outdated", n, "max_parallel", maxParallel, "healthy_deadline", deadline)
}

// poolOf is group's running workers, as the feeds give them to a balancer.
func (a *Agent) poolOf(group string) []balancer.Backend {
	ws, _ := a.store.WorkersByGroup(nil, group)
	var pool []balancer.Backend
	for _, w := range ws {
		if w.Status == state.StatusRunning && w.Address != "" {
			pool = append(pool, balancer.Backend{ID: w.ID, Address: w.Address})
		}
	}
	return pool
}

// forgetGroup drops a group a reload removed once its workers are gone
// (drained and stopped by the reconciler), unless a later reload brought it
// back.
func (a *Agent) forgetGroup(ctx context.Context, name string) {
	for ctx.Err() == nil {
		ws := memdb.NewWatchSet()
		workers, err := a.store.WorkersByGroup(ws, name)
		if err == nil && len(workers) == 0 {
			break
		}
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = ws.WatchCtx(wctx)
		cancel()
	}
	if ctx.Err() != nil {
		return
	}
	a.reloads.run.Lock()
	defer a.reloads.run.Unlock()
	if a.config().Group(name) != nil {
		return // back in the config
	}
	a.fleetMu.Lock()
	groups := make(map[string]*groupSpec, len(a.groups))
	for k, v := range a.groups {
		if k != name {
			groups[k] = v
		}
	}
	a.groups = groups
	a.fleetMu.Unlock()
	if err := a.store.DeleteGroup(name); err != nil {
		a.logger.Warn("forgetting a removed group", "group", name, "err", err)
		return
	}
	a.logger.Info("removed group's workers are stopped; group forgotten", "group", name)
}

// errorsAsReload reports whether err is a *ReloadError, and returns it.
func errorsAsReload(err error) (*ReloadError, bool) {
	var re *ReloadError
	ok := errors.As(err, &re)
	return re, ok
}

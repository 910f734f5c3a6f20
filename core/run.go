package core

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/golb/golb/core/state"
	"github.com/golb/golb/core/stats"
)

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
	octx, cancelOpen := context.WithTimeout(ctx, 30*time.Second)
	a.sink, err = stats.Open(octx, a.cfg.StatsSettings())
	cancelOpen()
	if err != nil {
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

	// Four lifetimes, ended in this order at shutdown:
	//   control (adoption, reconciler, autoscaler): ends as soon as ctx
	//     does: no new starts or scaling;
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
	unwatch := context.AfterFunc(ctx, stopControl) // a Ctrl-C during adoption ends it
	defer unwatch()
	// Set before anything that reads them starts: the admin API (a drain
	// request), the plugin monitor, adoption. Reload reads them, and the
	// metrics registry serveAdmin sets, under reloads.run.
	a.reloads.run.Lock()
	a.trafficCtx, a.controlCtx = trafficCtx, controlCtx
	var admin *http.Server
	if addr := a.cfg.AdminAddress(); addr != "" {
		if admin, err = a.serveAdmin(addr); err != nil {
			a.reloads.run.Unlock()
			a.shutdownBalancers(context.Background())
			return err
		}
	}
	a.reloads.run.Unlock()

	var monitorWG, statsWG, trafficWG, controlWG sync.WaitGroup
	spawn := func(wg *sync.WaitGroup, ctx context.Context, fn func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); fn(ctx) }()
	}
	spawn(&monitorWG, monCtx, func(ctx context.Context) {
		a.plugins.monitor(ctx, pluginHooks{
			restarted: a.recoverAfterPluginCrash,
			crashed:   a.notePluginCrash,
			settled:   func(driver string) { a.notePluginCrash(driver, "") },
		})
	})
	spawn(&statsWG, statsCtx, a.agg.Run)
	_, byGroup := a.fleetBalancers()
	for _, bs := range byGroup {
		for _, b := range bs {
			spawn(&trafficWG, trafficCtx, a.feedBalancer(b))
		}
	}
	// Adoption comes before the reconciler, which starts nothing of a driver
	// whose earlier workers are not known yet. A driver whose runtime cannot
	// list them now is retried for the whole control lifetime: its groups
	// start as soon as the runtime answers.
	for driver, note := range a.adopt(controlCtx) {
		spawn(&controlWG, controlCtx, func(ctx context.Context) { a.awaitRuntime(ctx, driver, note) })
	}
	spawn(&controlWG, controlCtx, a.reconcileLoop)
	spawn(&controlWG, controlCtx, a.autoscaleLoop)
	cfg := a.config()
	a.logger.Info("golb running", "groups", len(cfg.Groups), "balancers", len(a.allBalancers()), "admin", cfg.AdminAddress())

	<-ctx.Done()
	a.logger.Info("shutting down: draining balancers, stopping workers")
	a.wg.refuse() // a drain requested from now on: shutdown stops every worker
	a.plugins.hurryUp()
	stopControl()
	controlWG.Wait()
	// A reload under way finishes first; a later one finds control stopped.
	a.reloads.run.Lock()
	a.reloads.run.Unlock() //nolint:staticcheck // an empty critical section: a barrier
	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.maxDrain()+5*time.Second)
	defer cancel()
	a.shutdownBalancers(shutdownCtx)
	stopTraffic()
	trafficWG.Wait()
	a.wg.Wait() // workers being started, stopped or supervised, and what they start meanwhile
	left := a.stopAllWorkers(context.Background())
	stopStats()
	statsWG.Wait()
	// The final flush may take stop's grace period: a database that is down
	// then costs what it holds, logged with the count, not a hung shutdown.
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), a.statsGrace())
	if err := a.agg.Flush(flushCtx); err != nil {
		a.logger.Error("final stats flush failed", "err", err, "requests_lost", a.agg.Health().Unflushed)
	}
	cancelFlush()
	stopMonitor()
	monitorWG.Wait()
	// A plugin restart during the stops recovers or removes workers in the
	// background: waited for too, and a worker it could not remove (kept
	// lost) is named with the others.
	a.wg.Wait()
	left = withLost(left, a.store)
	if admin != nil {
		_ = admin.Shutdown(shutdownCtx)
	}
	if err := a.stopReport(left); err != nil {
		a.logger.Error("golb stopped, but not cleanly: workers may still run", "left", len(left))
		return err
	}
	a.logger.Info("golb stopped")
	return nil
}

// statsGrace is how long the final stats flush may take: the longest
// stop_timeout of the groups, and at least 5 s.
func (a *Agent) statsGrace() time.Duration {
	d := 5 * time.Second
	for _, g := range a.config().Groups {
		d = max(d, g.StopTimeoutDur)
	}
	return d
}

// withLost adds to left the lost workers the store still has that left does
// not name: after the final stops, workers golb could not stop.
func withLost(left []*state.Worker, store *state.Store) []*state.Worker {
	named := map[string]bool{}
	for _, w := range left {
		named[w.ID] = true
	}
	ws, _ := store.Workers(nil)
	for _, w := range ws {
		if w.Status == state.StatusLost && !named[w.ID] {
			left = append(left, w)
		}
	}
	return left
}

// workGroup counts the agent's background work (goWork) for shutdown to
// wait for. Unlike a sync.WaitGroup, work may be added while Run waits (a
// stop's keepLost, a plugin restart's recovery during shutdown): Wait
// returns once none is left, however much was added meanwhile, and may be
// called again. Once refused (shutdown began), tryAdd refuses new work that
// shutdown makes moot (a drain requested through the admin API).
type workGroup struct {
	mu      sync.Mutex
	n       int
	idle    chan struct{} // closed when n drops to 0; nil while it is 0
	refused bool
}

// Add adds delta, which may be negative, to the count of work.
func (g *workGroup) Add(delta int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.add(delta)
}

func (g *workGroup) add(delta int) {
	if g.n == 0 && delta > 0 {
		g.idle = make(chan struct{})
	}
	g.n += delta
	switch {
	case g.n < 0:
		panic("core: workGroup: negative count")
	case g.n == 0 && g.idle != nil:
		close(g.idle)
		g.idle = nil
	}
}

// Done ends one piece of work.
func (g *workGroup) Done() { g.Add(-1) }

// Go runs fn in a goroutine, counted.
func (g *workGroup) Go(fn func()) {
	g.Add(1)
	go func() {
		defer g.Done()
		fn()
	}()
}

// tryAdd counts one piece of work, unless refuse was called: then it
// returns false and counts nothing.
func (g *workGroup) tryAdd() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.refused {
		return false
	}
	g.add(1)
	return true
}

// refuse makes every later tryAdd fail.
func (g *workGroup) refuse() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refused = true
}

// Wait blocks until no work is counted.
func (g *workGroup) Wait() {
	for {
		g.mu.Lock()
		idle := g.idle
		g.mu.Unlock()
		if idle == nil {
			return
		}
		<-idle
	}
}

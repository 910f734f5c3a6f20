package core

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/golb/golb/balancer"
	"github.com/golb/golb/core/config"
	"github.com/golb/golb/core/state"
	"github.com/golb/golb/core/stats"
)

// balancerConfig is the balancer.Config of a balancer block serving group g.
// core/config has filled every default, and golb's config and the balancer
// agree on what 0 means (retries, drain_timeout and body_min_rate: none), so
// each value is handed on as it is.
func balancerConfig(bc *config.Balancer, g *config.Group) balancer.Config {
	hc := g.HealthCheck
	var retryOn []string
	for _, r := range bc.RetryOn {
		if r != "connect-failure" { // the balancer always retries those
			retryOn = append(retryOn, r)
		}
	}
	return balancer.Config{
		Name:      bc.Name,
		BindAddr:  bc.Bind,
		Port:      bc.Port,
		Listeners: *bc.Listeners,
		Policy:    bc.Policy,
		Retries:   *bc.Retries,
		RetryOn:   retryOn,
		Health: balancer.HealthCheck{
			Path: hc.Path, Interval: hc.IntervalDur, Timeout: hc.TimeoutDur, Rise: *hc.Rise, Fall: *hc.Fall,
		},
		DrainTimeout:          bc.DrainTimeoutDur,
		ResponseHeaderTimeout: bc.ResponseTimeoutDur,
		MaxHeaderBytes:        *bc.MaxHeaderBytes,
		HeaderReadTimeout:     bc.HeaderReadTimeoutDur,
		IdleTimeout:           bc.IdleTimeoutDur,
		BodyReadTimeout:       bc.BodyReadTimeoutDur,
		BodyMinRate:           *bc.BodyMinRate,
		TunnelIdleTimeout:     bc.TunnelIdleTimeoutDur,
	}
}

// startBalancers binds every balancer's listeners, or none: a listener that
// cannot bind shuts down those already started and is returned.
func (a *Agent) startBalancers(ctx context.Context) error {
	statsHandler := stats.Handler(a.agg)
	for _, bc := range a.cfg.Balancers {
		cfg := balancerConfig(bc, a.cfg.Group(bc.Group))
		cfg.Local = map[string]http.Handler{"/worker/stats": statsHandler}
		cfg.Logger = a.logger
		cfg.Hold = a.holdConfig(a.cfg.Group(bc.Group))
		b, err := balancer.New(cfg)
		if err != nil {
			a.shutdownBalancers(context.Background())
			return fmt.Errorf("configuring balancer %q: %w", bc.Name, err)
		}
		if err := b.Start(ctx); err != nil { // it names the balancer and the address
			a.shutdownBalancers(context.Background())
			return err
		}
		a.fleetMu.Lock() // a reader (balancersOf) may look while Run starts them
		a.balancers = append(a.balancers, b)
		a.byGroup[bc.Group] = append(a.byGroup[bc.Group], b)
		a.fleetMu.Unlock()
		a.agg.AddSource(sourceKey(b), balancerSource(b))
	}
	return nil
}

// sourceKey names b's stats source: its name and the instance, since a reload
// may add a balancer back under its name while the old one still drains, and
// each must count (and be folded when it stops) on its own.
func sourceKey(b *balancer.Balancer) string { return fmt.Sprintf("%s@%p", b.Name(), b) }

// retireSource folds b's final counts into the stats base and drops its source,
// once b is shut down. A drain cut short closed b's connections, but the
// requests they carried may still be counting their failures: wait (boundedly)
// for none in flight. One still in flight after that keeps the source, never
// losing a count, and is logged.
func (a *Agent) retireSource(b *balancer.Balancer) {
	deadline := time.Now().Add(retireWait)
	for b.InFlight() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := b.InFlight(); n > 0 {
		a.logger.Warn("stopped balancer still has requests in flight; its stats stay counted live", "balancer", b.Name(), "inflight", n)
		return
	}
	a.agg.RemoveSource(sourceKey(b))
}

// retireWait bounds retireSource's wait for a shut-down balancer's last requests.
const retireWait = 5 * time.Second

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

// shutdownBalancers stops every balancer at once, each draining its
// in-flight requests within its drain_timeout and ctx.
func (a *Agent) shutdownBalancers(ctx context.Context) {
	var wg sync.WaitGroup
	for _, b := range a.allBalancers() {
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
// woken by memdb on every change to them, and by a reload (which may move
// the balancer to another group). It ends once a reload removed b.
func (a *Agent) feedBalancer(b *balancer.Balancer) func(context.Context) {
	return func(ctx context.Context) {
		for ctx.Err() == nil {
			ws := memdb.NewWatchSet()
			ws.Add(a.fleetChanged())
			group, ok := a.groupOfBalancer(b)
			if !ok {
				return
			}
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

// maxDrain is the longest drain_timeout of any balancer (shutdown's bound).
func (a *Agent) maxDrain() time.Duration {
	d := time.Duration(0)
	for _, b := range a.config().Balancers {
		d = max(d, b.DrainTimeoutDur)
	}
	return d
}

// drainTimeout is how long a worker of group being removed may finish its
// in-flight requests: the longest drain_timeout of the balancers serving it.
func (a *Agent) drainTimeout(group string) time.Duration {
	d := time.Duration(0)
	for _, b := range a.config().Balancers {
		if b.Group == group {
			d = max(d, b.DrainTimeoutDur)
		}
	}
	return d
}

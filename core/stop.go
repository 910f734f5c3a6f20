package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/golb/golb/balancer"
	"github.com/golb/golb/core/state"
	"github.com/golb/golb/drivers"
)

// Stopping a worker is the driver's Stop (its stop signal, then SIGKILL
// after the group's stop_timeout), then Destroy. A plugin is someone else's
// code, so neither call is trusted to return:
//   - Stop may take stop_timeout plus stopGrace; past that, or when it
//     fails, golb calls Destroy anyway, which kills the worker;
//   - Destroy may take destroyTimeout; a worker that Destroy could not
//     remove is kept as lost (its Reason says why), out of every pool, and
//     Destroy is retried with backoff, from lostRetryFirst up to
//     lostRetryMax, until it succeeds or the worker is seen to exit. It is
//     never logged as stopped, nor forgotten;
//   - at shutdown, each worker golb could not stop is named with its pid
//     or container and how to kill it (stopReport), and Run returns
//     ErrWorkersLeft. The next `golb run` adopts and stops it.
const (
	defaultStopGrace      = 10 * time.Second
	defaultDestroyTimeout = 30 * time.Second
	lostRetryFirst        = time.Second
	lostRetryMax          = 30 * time.Second
)

// stopSettings is how a group's workers are stopped: its stop_signal and
// stop_timeout, or SIGTERM and 10 s for a group the config no longer has.
func (a *Agent) stopSettings(group string) (signal string, timeout time.Duration) {
	if gs := a.spec(group); gs != nil {
		return gs.cfg.StopSignal, gs.cfg.StopTimeoutDur
	}
	return "SIGTERM", 10 * time.Second
}

// haltBudget bounds a whole halt of one of group's workers: Stop, Destroy,
// and a plugin restart between them.
func (a *Agent) haltBudget(group string) time.Duration {
	_, timeout := a.stopSettings(group)
	return timeout + a.stopGrace + a.destroyTimeout + maxBackoff
}

// halt stops worker id of group, then destroys it: Destroy is called even
// when Stop failed, outlived its deadline, or killed the plugin (then on the
// new instance). It returns nil once the worker is gone, else Destroy's
// error, with Stop's; forced says that Stop failed.
func (a *Agent) halt(ctx context.Context, driver, id, group string) (forced bool, err error) {
	signal, timeout := a.stopSettings(group)
	start := time.Now()
	// A plugin that died before the Stop gets it again on its new
	// instance (withPlugin); one that dies in it again gets Destroy.
	stopErr := a.withPlugin(ctx, driver, func(c *drivers.Client) error {
		sctx, cancel := context.WithTimeout(ctx, timeout+a.stopGrace)
		defer cancel()
		return c.Stop(sctx, id, signal, timeout)
	})
	if errors.Is(stopErr, drivers.ErrNotFound) {
		stopErr = nil
	}
	if stopErr != nil {
		a.logger.Warn("worker did not stop; destroying it", "worker", id, "driver", driver,
			"stop_timeout", timeout.String(), "waited", time.Since(start).Round(time.Millisecond).String(), "err", stopErr)
	}
	_, err = a.destroy(ctx, driver, id, group)
	if err != nil && stopErr != nil {
		return true, fmt.Errorf("stop: %v; destroy: %w", stopErr, err)
	}
	return stopErr != nil, err
}

// destroy destroys worker id within destroyTimeout; its signature is
// halt's, whose Destroy part it is.
func (a *Agent) destroy(ctx context.Context, driver, id, _ string) (forced bool, err error) {
	return true, a.withPlugin(ctx, driver, func(c *drivers.Client) error {
		dctx, cancel := context.WithTimeout(ctx, a.destroyTimeout)
		defer cancel()
		return c.Destroy(dctx, id)
	})
}

// stopWorker stops and destroys a worker, then forgets it. With drain, it
// first takes the worker out of every pool and waits up to its group's
// drainTimeout for its in-flight requests. A worker it cannot stop is kept
// as lost, and retried in the background until ctx ends. It returns nil
// once the worker is stopped.
func (a *Agent) stopWorker(ctx context.Context, id string, drain bool) error {
	w, _ := a.store.Worker(nil, id)
	if w == nil {
		return nil
	}
	if drain {
		a.drain(ctx, w)
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.haltBudget(w.Group))
	defer cancel()
	halt := a.halt
	if w.Status == state.StatusLost {
		halt = a.destroy // its Stop failed already
	}
	forced, err := halt(hctx, w.Driver, id, w.Group)
	if err != nil {
		a.keepLost(ctx, w, err, ctx.Err() == nil && !a.finalStop.Load())
		return err
	}
	a.store.UpdateWorker(id, func(w *state.Worker) { w.Status = state.StatusStopped })
	_ = a.store.DeleteWorker(id)
	how := "stopped"
	if forced {
		how = "destroyed" // killed by Destroy: its Stop failed
	}
	a.logger.Info("worker stopped", "worker", id, "group", w.Group, "how", how)
	return nil
}

// beginStop moves worker id to draining if its status is one of from, in
// one transaction, and reports whether it did. Only the caller that moved
// it stops it: two reconcile passes, or a pass and a drain on request, that
// both read it running never stop it twice.
func (a *Agent) beginStop(id string, from ...state.WorkerStatus) bool {
	moved := false
	_, _ = a.store.UpdateWorker(id, func(w *state.Worker) {
		if slices.Contains(from, w.Status) {
			w.Status, moved = state.StatusDraining, true
		}
	})
	return moved
}

// drain takes w out of every pool now, not when the feeds catch up (no new
// request may reach it), then waits for all of its balancers at once, under
// one deadline, for its requests in flight.
func (a *Agent) drain(ctx context.Context, w *state.Worker) {
	bs := a.balancersOf(w.Group)
	for _, b := range bs {
		b.MarkDown(w.ID)
	}
	dctx, cancel := context.WithTimeout(ctx, a.drainTimeout(w.Group))
	defer cancel()
	var wg sync.WaitGroup
	for _, b := range bs {
		wg.Go(func() {
			if err := b.WaitIdle(dctx, w.ID); err != nil && !errors.Is(err, balancer.ErrUnknownBackend) {
				a.logger.Warn("drain timeout; stopping worker with requests in flight", "worker", w.ID)
			}
		})
	}
	wg.Wait()
}

// removeUnwanted stops and destroys a worker golb does not keep (one left
// by an earlier run, one scaled away while it started), which may have no
// record in the store; one that cannot be stopped is recorded lost.
func (a *Agent) removeUnwanted(ctx context.Context, w *state.Worker) {
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.haltBudget(w.Group))
	defer cancel()
	if _, err := a.halt(hctx, w.Driver, w.ID, w.Group); err != nil {
		a.keepLost(ctx, w, err, ctx.Err() == nil && !a.finalStop.Load())
		return
	}
	_ = a.store.DeleteWorker(w.ID)
}

// keepLost records w lost with err as its reason, out of every pool, and
// with retry, tries Destroy again in the background until ctx ends.
func (a *Agent) keepLost(ctx context.Context, w *state.Worker, err error, retry bool) {
	reason := "could not be stopped: " + err.Error()
	found, _ := a.store.UpdateWorker(w.ID, func(cur *state.Worker) { cur.Status, cur.Reason = state.StatusLost, reason })
	if !found {
		cp := *w
		cp.Status, cp.Reason = state.StatusLost, reason
		_ = a.store.UpsertWorker(&cp)
	}
	for _, b := range a.balancersOf(w.Group) {
		b.MarkDown(w.ID)
	}
	if !retry {
		return // shutdown: stopReport names it
	}
	a.logger.Error("worker could not be stopped; keeping it as lost (it may still run) and retrying",
		append(whereabouts(w), "err", err)...)
	{
		// Until shutdown: it waits for these goroutines, then tries once more.
		if a.controlCtx != nil {
			ctx = a.controlCtx
		}
		a.goWork(ctx, func(ctx context.Context) { a.retryLost(ctx, w.ID) })
	}
}

// retryLost destroys lost worker id, with backoff, until it works, the
// worker is no longer lost (it exited, or shutdown took it over), or ctx
// ends.
func (a *Agent) retryLost(ctx context.Context, id string) {
	for delay := lostRetryFirst; ; delay = min(delay*2, lostRetryMax) {
		if !wait(ctx, delay, nil) {
			return
		}
		w, _ := a.store.Worker(nil, id)
		if w == nil || w.Status != state.StatusLost {
			return
		}
		_, err := a.destroy(ctx, w.Driver, id, w.Group)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			if w, _ := a.store.Worker(nil, id); w != nil { // not seen exiting meanwhile
				_ = a.store.DeleteWorker(id)
				a.logger.Info("lost worker destroyed at last", "worker", id, "group", w.Group)
			}
			return
		}
		reason := "could not be stopped: destroy: " + err.Error()
		if reason != w.Reason {
			a.logger.Warn("still cannot destroy a lost worker", "worker", id, "err", err, "retry_in", min(delay*2, lostRetryMax).String())
		}
		a.store.UpdateWorker(id, func(cur *state.Worker) {
			if cur.Status == state.StatusLost {
				cur.Reason = reason
			}
		})
	}
}

// stopAllWorkers stops every worker in parallel, without draining (shutdown,
// once the listeners have drained), and waits for them. It returns those it
// could not stop, as lost.
func (a *Agent) stopAllWorkers(ctx context.Context) []*state.Worker {
	a.finalStop.Store(true) // no more background retries: this is the last try
	ws, _ := a.store.Workers(nil)
	for _, w := range ws {
		a.store.UpdateWorker(w.ID, func(w *state.Worker) {
			if w.Status != state.StatusLost {
				w.Status = state.StatusDraining
			}
		})
	}
	var mu sync.Mutex
	var left []string
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() {
			if a.stopWorker(context.WithoutCancel(ctx), w.ID, false) != nil {
				mu.Lock()
				left = append(left, w.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	var out []*state.Worker
	for _, id := range left {
		if w, _ := a.store.Worker(nil, id); w != nil {
			out = append(out, w)
		}
	}
	return append(out, a.stopStrays(context.WithoutCancel(ctx))...)
}

// stopStrays stops and destroys, at shutdown, each worker a driver runs
// for this data dir that the store does not hold: one whose Start finished
// in its plugin after golb had given up on it (startTimeout), or any other
// worker golb lost track of. Only drivers whose earlier workers were
// adopted are asked: until then the store cannot know them all. It returns
// those it could not stop, recorded lost, for stopReport.
func (a *Agent) stopStrays(ctx context.Context) []*state.Worker {
	var out []*state.Worker
	for _, mp := range a.plugins.all() {
		a.mu.Lock()
		adopted := a.adopted[mp.name]
		a.mu.Unlock()
		c, _, err := a.plugins.current(mp.name)
		if !adopted || err != nil {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		hs, err := c.List(lctx, map[string]string{drivers.LabelManaged: "true", LabelInstance: a.instance})
		cancel()
		if err != nil {
			a.logger.Warn("listing workers at shutdown, to stop any golb lost track of", "driver", mp.name, "err", err)
			continue
		}
		for _, h := range hs {
			if w, _ := a.store.Worker(nil, h.ID); w != nil {
				continue // stopped by stopAllWorkers, or reported by it
			}
			group := h.Labels[drivers.LabelGroup]
			w := &state.Worker{ID: h.ID, Group: group, Driver: mp.name, Port: portOf(h.Address), Address: h.Address,
				Handle: h, StartedAt: h.StartedAt}
			a.logger.Warn("stopping a worker golb had lost track of", "worker", h.ID, "group", group, "driver", mp.name, "address", h.Address)
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_ = c.Recover(rctx, h) // only a recovered worker can be stopped gracefully
			cancel()
			hctx, cancel := context.WithTimeout(ctx, a.haltBudget(group))
			forced, err := a.halt(hctx, mp.name, h.ID, group)
			cancel()
			if err != nil {
				a.keepLost(ctx, w, err, false)
				if lw, _ := a.store.Worker(nil, h.ID); lw != nil {
					out = append(out, lw)
				}
				continue
			}
			how := "stopped"
			if forced {
				how = "destroyed"
			}
			a.logger.Info("worker stopped", "worker", h.ID, "group", group, "how", how)
		}
	}
	return out
}

// stopReport logs each worker shutdown could not stop, with how to kill
// it, and returns Run's error naming them; nil when there are none.
func (a *Agent) stopReport(left []*state.Worker) error {
	if len(left) == 0 {
		return nil
	}
	ids := make([]string, 0, len(left))
	for _, w := range left {
		a.logger.Error("worker could not be stopped and may still run", append(whereabouts(w), "reason", w.Reason)...)
		ids = append(ids, w.ID)
	}
	return fmt.Errorf("%w: %d could not be stopped and may still run: %v; kill each as logged above, or run golb again with this data_dir (it adopts and stops them)",
		ErrWorkersLeft, len(left), ids)
}

// whereabouts tells a user where worker w runs, as log attributes: its id
// and group, its pid or container id (from the driver's details or, failing
// those, from its handle's state) and a command that kills it.
func whereabouts(w *state.Worker) []any {
	pid, container := w.Details["pid"], w.Details["container_id"]
	if pid == "" && container == "" && w.Handle != nil {
		var st struct {
			PID       json.Number `json:"pid"`
			Container string      `json:"container_id"`
		}
		if json.Unmarshal(w.Handle.State, &st) == nil {
			pid, container = st.PID.String(), st.Container
		}
	}
	attrs := []any{"worker", w.ID, "group", w.Group, "driver", w.Driver}
	var kill string
	switch {
	case pid != "" && w.Driver == "process":
		attrs = append(attrs, "pid", pid)
		kill = "kill -KILL -- -" + pid // the worker leads its process group
	case pid != "":
		attrs = append(attrs, "pid", pid)
		kill = "kill -KILL " + pid
	case container != "" && w.Driver == "docker":
		attrs = append(attrs, "container", container)
		kill = "docker rm -f " + container
	case container != "":
		attrs = append(attrs, "container", container)
		kill = "remove container " + container + " with the " + w.Driver + " runtime's own tool"
	default:
		kill = "run golb again with this data_dir: it adopts and stops it"
	}
	return append(attrs, "kill", kill)
}

// lostExited forgets a lost worker that its driver saw exit: it no longer
// runs, and what it left is destroyed if the driver can.
func (a *Agent) lostExited(ctx context.Context, w *state.Worker, res drivers.ExitResult) {
	a.logger.Info("lost worker has exited; forgetting it", "worker", w.ID, "group", w.Group, "exit", res.String())
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.destroyTimeout)
	defer cancel()
	a.destroyQuietly(dctx, w.Driver, w.ID)
	_ = a.store.DeleteWorker(w.ID)
}

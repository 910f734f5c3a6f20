package core

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/golb/golb/core/state"
	"github.com/golb/golb/drivers"
)

// adopt finds the workers an earlier golb left running (for this data dir)
// and re-attaches to those the config still wants. Those of a group whose
// settings changed serve on until their replacements are healthy (rollOut).
// The others are stopped and removed: no orphans, no duplicates. It returns
// the drivers whose List failed (their runtime is down), each with the note
// it put on their groups: the caller runs awaitRuntime for each. Until that
// succeeds their groups start nothing, so a worker that is merely unlisted
// is never duplicated.
func (a *Agent) adopt(ctx context.Context) (waiting map[string]string) {
	waiting = map[string]string{}
	for _, mp := range a.plugins.all() {
		err := a.adoptDriver(ctx, mp.name)
		if err == nil || ctx.Err() != nil { // adopted, or shutting down
			continue
		}
		a.logger.Error("cannot list the workers an earlier run left; its groups wait for the runtime", "driver", mp.name, "err", err)
		note := waitingNote(mp.name, err)
		a.markWaiting(mp.name, "", note)
		waiting[mp.name] = note
	}
	return waiting
}

// How often awaitRuntime asks a runtime that is down for its workers: after
// awaitFirst, then twice as long each time up to awaitMax, so that a group
// starts within awaitMax of its runtime coming back.
const (
	awaitFirst = 250 * time.Millisecond
	awaitMax   = 2 * time.Second
)

// awaitRuntime retries adopting driver's earlier workers until its runtime
// answers or ctx (the control lifetime) ends. Meanwhile its groups are
// failing with note, "waiting for DRIVER: ERROR", kept up to date with the
// latest error, for `golb status`; once the runtime answers, the mark is
// lifted, which wakes the reconciler to start the groups.
func (a *Agent) awaitRuntime(ctx context.Context, driver, note string) {
	start := time.Now()
	for delay := awaitFirst; ; delay = min(delay*2, awaitMax) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		err := a.adoptDriver(ctx, driver)
		if err == nil {
			a.markWaiting(driver, note, "")
			a.logger.Info("runtime reachable: earlier workers adopted, its groups start", "driver", driver, "waited", time.Since(start).Round(time.Millisecond))
			return
		}
		if ctx.Err() != nil {
			return
		}
		if next := waitingNote(driver, err); next != note {
			a.logger.Warn("still cannot list the workers an earlier run left", "driver", driver, "err", err)
			a.markWaiting(driver, note, next)
			note = next
		}
	}
}

// waitingNote is the Reason of a group whose driver cannot list its workers.
func waitingNote(driver string, err error) string {
	return "waiting for " + driver + ": " + err.Error()
}

// markWaiting replaces the waiting note old ("" for none) of every group on
// driver with note ("" lifts the mark). A group whose Reason is another one
// is left alone: only awaitRuntime's own mark is lifted.
func (a *Agent) markWaiting(driver, old, note string) {
	for _, g := range a.config().Groups {
		if g.Driver != driver {
			continue
		}
		_ = a.store.UpdateGroup(g.Name, func(sg *state.Group) error {
			if sg.Reason == old {
				sg.Failing, sg.Reason = note != "", note
			}
			return nil
		})
	}
}

// adoptDriver adopts one driver's workers and, on success, lets the
// reconciler start that driver's groups.
func (a *Agent) adoptDriver(ctx context.Context, driver string) error {
	c, _, err := a.plugins.current(driver)
	if err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	hs, err := c.List(lctx, map[string]string{drivers.LabelManaged: "true", LabelInstance: a.instance})
	cancel()
	if err != nil {
		return err
	}
	// Oldest first, so a lowered count keeps the longest-running workers.
	sort.Slice(hs, func(i, j int) bool { return hs[i].StartedAt.Before(hs[j].StartedAt) })
	kept, outdated := map[string]int{}, map[string]int{}
	for _, h := range hs {
		group := h.Labels[drivers.LabelGroup]
		gs := a.spec(group)
		reason := ""
		stale := false // serves until its replacements are healthy (rollOut)
		switch {
		case gs == nil:
			reason = "its group is no longer in the config"
		case gs.cfg.Driver != driver:
			reason = "its group now uses another driver"
		case h.Labels[LabelSpec] != gs.hash:
			stale = true
			if outdated[group] >= gs.cfg.MaxCount() {
				reason = "its group's settings changed"
			}
		case kept[group] >= gs.cfg.MaxCount():
			reason = "the group wants fewer workers now"
		}
		// Recover even a worker about to be removed: only a recovered worker
		// can be stopped gracefully.
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		rerr := c.Recover(rctx, h)
		cancel()
		if reason == "" && rerr != nil {
			reason = "it cannot be recovered: " + rerr.Error()
		}
		if reason != "" {
			// In the background: graceful stops can take a while, and the
			// workers being kept should serve meanwhile.
			a.logger.Info("removing worker left from an earlier run", "worker", h.ID, "reason", reason)
			w := &state.Worker{ID: h.ID, Group: group, Driver: driver, Port: portOf(h.Address), Address: h.Address,
				Handle: h, StartedAt: h.StartedAt, Adopted: true, Details: a.inspectDetails(driver, h.ID)}
			a.goWork(ctx, func(ctx context.Context) { a.removeUnwanted(ctx, w) })
			continue
		}
		if stale {
			outdated[group]++
		} else {
			kept[group]++
		}
		w := &state.Worker{
			ID: h.ID, Group: group, Driver: driver, Port: portOf(h.Address), Address: h.Address,
			Status: state.StatusRunning, Handle: h, StartedAt: h.StartedAt, Adopted: true, Outdated: stale,
			Details: a.inspectDetails(driver, h.ID),
		}
		if err := a.store.UpsertWorker(w); err != nil {
			continue
		}
		if stale {
			a.logger.Info("adopted worker from an earlier run; its group's settings changed, so it serves until its replacement is healthy",
				"worker", h.ID, "group", group, "address", h.Address)
		} else {
			a.logger.Info("adopted worker from an earlier run", "worker", h.ID, "group", group, "address", h.Address)
		}
		a.superviseAsync(ctx, h.ID, driver, group)
	}
	// A scaled group keeps what it adopted (within its bounds), so a restart
	// under load does not stop warm workers for the autoscaler to start again.
	for group, n := range kept {
		_ = a.store.UpdateGroup(group, func(g *state.Group) error {
			g.Desired = max(g.Desired, min(n, g.Max))
			return nil
		})
	}
	a.mu.Lock()
	a.adopted[driver] = true
	a.mu.Unlock()
	return nil
}

func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// After a plugin restart, the new instance recovers every worker golb knows
// on that driver, at most recoverParallel at once, each within
// recoverTimeout. Only a definite answer loses a worker: the plugin does not
// know it (ErrNotFound) or its process is gone (ErrStaleHandle). Any other
// failure (a deadline, a transport error, the runtime unreachable) says the
// plugin is sick, not the worker, which keeps serving: it stays in its
// pools, where its health checks decide its traffic, and its Recover is
// retried in the background (recoverLater). Once a Recover has timed out,
// those not started yet are not waited for either but retried later, so
// that the supervisors and stops move to the new instance within about two
// recoverTimeouts. A new instance that hangs is killed by the liveness
// probe meanwhile (pluginManager.monitor), and the next one recovers all.
const (
	defaultRecoverTimeout = 10 * time.Second
	recoverParallel       = 8
)

// unrecovered is a worker a plugin instance has not recovered yet, and why.
type unrecovered struct {
	w   *state.Worker
	err error
}

// recoverAfterPluginCrash re-attaches a new plugin instance to every worker
// golb knows on that driver, before the supervisors wait on them again; then
// it removes the workers the instance runs for golb that golb has no record
// of.
func (a *Agent) recoverAfterPluginCrash(ctx context.Context, driver string, c *drivers.Client) {
	ws, err := a.store.WorkersByDriver(nil, driver)
	if err != nil {
		return
	}
	known := ws[:0:0]
	for _, w := range ws {
		if w.Handle != nil { // else its Start was in flight; startWorker cleans up
			known = append(known, w)
		}
	}
	start := time.Now()
	later, died := a.recoverAll(ctx, driver, c, known, a.recoverTimeout)
	if died {
		// This instance died too; the next one recovers everything.
		a.logger.Error("driver plugin died during recovery", "driver", driver)
		return
	}
	for _, u := range later {
		a.logger.Warn("worker not recovered yet by the new plugin instance; it keeps serving, and its recovery is retried",
			"worker", u.w.ID, "driver", driver, "err", u.err)
	}
	if len(known) > 0 {
		a.logger.Info("workers recovered by the new plugin instance", "driver", driver,
			"recovered", len(known)-len(later), "retrying", len(later), "took", time.Since(start).Round(time.Millisecond).String())
	}
	if len(later) > 0 {
		lctx := ctx
		if a.trafficCtx != nil {
			lctx = a.trafficCtx // until the supervisors stop at shutdown
		}
		a.goWork(lctx, func(ctx context.Context) { a.recoverLater(ctx, driver, c, later) })
	}
	a.removeUnknown(ctx, driver, c)
}

// recoverAll has c recover ws, at most recoverParallel at once, each within
// timeout. A worker recovered is logged; one the plugin definitely lost is
// marked lost and destroyed (loseWorker). It returns the others, not
// recovered yet, and whether c died meanwhile (then nothing is returned:
// the next instance recovers everything).
func (a *Agent) recoverAll(ctx context.Context, driver string, c *drivers.Client, ws []*state.Worker, timeout time.Duration) (later []unrecovered, died bool) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu   sync.Mutex
		sick bool // a Recover timed out: the rest are not waited for
		wg   sync.WaitGroup
	)
	slots := make(chan struct{}, recoverParallel)
	for _, w := range ws {
		slots <- struct{}{} // each Recover ends within timeout
		mu.Lock()
		stop, skip := died, sick
		if skip && !stop {
			later = append(later, unrecovered{w, errors.New("not tried: the plugin timed out recovering another worker")})
		}
		mu.Unlock()
		if stop || skip {
			<-slots
			if stop {
				break
			}
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			rctx, rcancel := context.WithTimeout(ctx, timeout)
			err := c.Recover(rctx, w.Handle)
			rcancel()
			switch {
			case err == nil:
				a.logger.Info("worker recovered by the new plugin instance", "worker", w.ID)
			case errors.Is(err, drivers.ErrPluginExited) || c.Exited():
				mu.Lock()
				died = true
				mu.Unlock()
				cancel()
			case errors.Is(err, drivers.ErrNotFound) || errors.Is(err, drivers.ErrStaleHandle):
				a.loseWorker(ctx, driver, w, err)
			default:
				mu.Lock()
				later = append(later, unrecovered{w, err})
				sick = sick || errors.Is(err, context.DeadlineExceeded)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if died {
		return nil, true
	}
	return later, false
}

// loseWorker handles a worker the plugin says it no longer runs: lost, out
// of every pool, and destroyed in the background (what it left); one that
// cannot be destroyed is kept lost and retried (keepLost).
func (a *Agent) loseWorker(ctx context.Context, driver string, w *state.Worker, why error) {
	a.logger.Error("worker lost with its plugin", "worker", w.ID, "err", why)
	a.store.UpdateWorker(w.ID, func(w *state.Worker) { w.Status, w.Reason = state.StatusLost, "not recovered: "+why.Error() })
	for _, b := range a.balancersOf(w.Group) {
		b.MarkDown(w.ID)
	}
	a.goWork(context.WithoutCancel(ctx), func(ctx context.Context) {
		if _, err := a.destroy(ctx, driver, w.ID, w.Group); err != nil {
			// It may still run: kept lost, and retried.
			a.keepLost(ctx, w, fmt.Errorf("not recovered: %v; destroy: %w", why, err), !a.finalStop.Load())
			return
		}
		_ = a.store.DeleteWorker(w.ID)
	})
}

// recoverLater retries, with backoff, the recovery of the workers plugin
// instance c could not recover yet, each try within three recoverTimeouts
// (nothing waits on it: a slow plugin gets the time it needs), until
// each is recovered or lost, c is replaced (the next instance recovers
// them all) or ctx ends. A worker golb stopped or forgot meanwhile is
// dropped.
func (a *Agent) recoverLater(ctx context.Context, driver string, c *drivers.Client, ws []unrecovered) {
	for delay := lostRetryFirst; len(ws) > 0; delay = min(delay*2, lostRetryMax) {
		if !wait(ctx, delay, nil) {
			return
		}
		if cur, _, err := a.plugins.current(driver); err != nil || cur != c || c.Exited() {
			return
		}
		var still []*state.Worker
		for _, u := range ws {
			if w, _ := a.store.Worker(nil, u.w.ID); w != nil && w.Handle != nil && w.Status != state.StatusStopped {
				still = append(still, w)
			}
		}
		later, died := a.recoverAll(ctx, driver, c, still, 3*a.recoverTimeout)
		if died || ctx.Err() != nil {
			return
		}
		for _, u := range later {
			a.logger.Debug("worker still not recovered by the plugin; retrying", "worker", u.w.ID, "err", u.err, "retry_in", min(delay*2, lostRetryMax).String())
		}
		ws = later
	}
}

// removeUnknown removes the workers plugin instance c runs for this golb
// that golb has no record of. (A pending one is being started right now;
// leave it be.) Not before the driver's adoption: until then golb has no
// record of the workers awaitRuntime is about to adopt. Each is removed on
// its own, in the background, as an earlier run's worker is
// (removeUnwanted): one that cannot be stopped is kept lost, retried, and
// named at shutdown.
func (a *Agent) removeUnknown(ctx context.Context, driver string, c *drivers.Client) {
	a.mu.Lock()
	adopted := a.adopted[driver]
	a.mu.Unlock()
	if !adopted {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, a.recoverTimeout)
	hs, err := c.List(lctx, map[string]string{drivers.LabelManaged: "true", LabelInstance: a.instance})
	cancel()
	if err != nil {
		if !c.Exited() && ctx.Err() == nil {
			a.logger.Warn("cannot list the workers of the new plugin instance; workers unknown to golb, if any, are left until its next restart or golb's",
				"driver", driver, "err", err)
		}
		return
	}
	for _, h := range hs {
		if w, _ := a.store.Worker(nil, h.ID); w != nil {
			continue
		}
		a.logger.Info("removing worker unknown to golb", "worker", h.ID, "driver", driver)
		a.goWork(ctx, func(ctx context.Context) { a.removeStray(ctx, driver, c, h) })
	}
}

// removeStray stops h, a worker of driver's that golb has no record of:
// recovered first, so that it can be stopped gracefully (one that cannot
// be is destroyed by halt), and kept lost while that fails.
func (a *Agent) removeStray(ctx context.Context, driver string, c *drivers.Client, h *drivers.Handle) {
	w := &state.Worker{ID: h.ID, Group: h.Labels[drivers.LabelGroup], Driver: driver, Port: portOf(h.Address), Address: h.Address,
		Status: state.StatusDraining, Handle: h, StartedAt: h.StartedAt}
	rctx, cancel := context.WithTimeout(ctx, a.recoverTimeout)
	err := c.Recover(rctx, h)
	cancel()
	if err != nil {
		a.logger.Debug("recovering a worker unknown to golb, to stop it", "worker", h.ID, "err", err)
	}
	w.Details = a.inspectDetails(driver, h.ID)
	a.removeUnwanted(ctx, w)
	if w, _ := a.store.Worker(nil, h.ID); w == nil {
		a.logger.Info("worker unknown to golb removed", "worker", h.ID, "driver", driver)
	}
}

package core

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
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

// recoverAfterPluginCrash re-attaches a new plugin instance to every worker
// golb knows on that driver, before the supervisors wait on them again.
func (a *Agent) recoverAfterPluginCrash(ctx context.Context, driver string, c *drivers.Client) {
	ws, err := a.store.WorkersByDriver(nil, driver)
	if err != nil {
		return
	}
	for _, w := range ws {
		if w.Handle == nil {
			continue // its Start was in flight; startWorker cleans up
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.Recover(rctx, w.Handle)
		cancel()
		if errors.Is(err, drivers.ErrPluginExited) {
			// This instance died too; the next one recovers everything.
			a.logger.Error("driver plugin died during recovery", "driver", driver)
			return
		}
		if err != nil {
			a.logger.Error("worker lost with its plugin", "worker", w.ID, "err", err)
			a.store.UpdateWorker(w.ID, func(w *state.Worker) { w.Status, w.Reason = state.StatusLost, "not recovered: "+err.Error() })
			for _, b := range a.balancersOf(w.Group) {
				b.MarkDown(w.ID)
			}
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			derr := c.Destroy(dctx, w.ID)
			cancel()
			if derr != nil {
				// It may still run: kept lost, and retried.
				a.keepLost(ctx, w, fmt.Errorf("not recovered: %v; destroy: %w", err, derr), !a.finalStop.Load())
				continue
			}
			_ = a.store.DeleteWorker(w.ID)
			continue
		}
		a.logger.Info("worker recovered by the new plugin instance", "worker", w.ID)
	}
	// A worker the plugin runs for us that golb has no record of at all is
	// removed. (A pending one is being started right now; leave it be.) Not
	// before the driver's adoption: until then golb has no record of the
	// workers awaitRuntime is about to adopt.
	a.mu.Lock()
	adopted := a.adopted[driver]
	a.mu.Unlock()
	if !adopted {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	hs, err := c.List(lctx, map[string]string{drivers.LabelManaged: "true", LabelInstance: a.instance})
	if err != nil {
		return
	}
	for _, h := range hs {
		if w, _ := a.store.Worker(nil, h.ID); w == nil {
			a.logger.Info("removing worker unknown to golb", "worker", h.ID)
			_ = c.Recover(lctx, h)
			_ = c.Stop(lctx, h.ID, "SIGTERM", 5*time.Second)
			_ = c.Destroy(lctx, h.ID)
		}
	}
}

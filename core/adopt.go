package core

import (
	"context"
	"errors"
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
// The others are stopped and removed: no orphans, no duplicates. A driver whose List fails (its runtime
// is down) is retried in the background; until it succeeds, its groups start
// nothing, so a worker that is merely unlisted is never duplicated.
func (a *Agent) adopt(ctx context.Context) {
	for _, mp := range a.plugins.all() {
		err := a.adoptDriver(ctx, mp.name)
		if err == nil {
			continue
		}
		a.logger.Error("listing workers left from an earlier run; retrying", "driver", mp.name, "err", err)
		a.markDriverGroups(mp.name, "cannot list its earlier workers: "+err.Error())
		a.goWork(ctx, func(ctx context.Context) {
			for delay := time.Second; ; delay = min(delay*2, 30*time.Second) {
				select {
				case <-ctx.Done():
					return
				case <-time.After(delay):
				}
				if err := a.adoptDriver(ctx, mp.name); err == nil {
					a.markDriverGroups(mp.name, "")
					return
				}
			}
		})
	}
}

// markDriverGroups sets (or with "" clears) the failing mark of every group
// on driver.
func (a *Agent) markDriverGroups(driver, reason string) {
	for _, g := range a.cfg.Groups {
		if g.Driver == driver {
			_ = a.store.UpdateGroup(g.Name, func(sg *state.Group) error {
				sg.Failing, sg.Reason = reason != "", reason
				return nil
			})
		}
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
		gs := a.groups[group]
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
			signal, timeout := a.stopSettings(group)
			id := h.ID
			a.goWork(context.WithoutCancel(ctx), func(ctx context.Context) {
				sctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
				defer cancel()
				if err := a.stopAndDestroy(sctx, driver, id, signal, timeout); err != nil {
					a.logger.Warn("removing worker", "worker", id, "err", err)
				}
			})
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
			a.store.UpdateWorker(w.ID, func(w *state.Worker) { w.Status = state.StatusLost })
			for _, b := range a.byGroup[w.Group] {
				b.MarkDown(w.ID)
			}
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_ = c.Destroy(dctx, w.ID)
			cancel()
			_ = a.store.DeleteWorker(w.ID)
			continue
		}
		a.logger.Info("worker recovered by the new plugin instance", "worker", w.ID)
	}
	// A worker the plugin runs for us that golb has no record of at all is
	// removed. (A pending one is being started right now; leave it be.)
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

package core

import (
	"context"
	"sync"
	"time"

	"github.com/golb/golb/drivers"
)

// This file watches for the worker of a cut Start. A Start cut at its
// deadline (or by its plugin's crash) is destroyed by id at once
// (startCut), but a plugin that ignores the cancel may finish the Start
// later, after that Destroy found nothing: the worker then runs unknown to
// golb, serving no one and holding its port, until golb's shutdown or the
// plugin's next restart removes it. So each cut Start's id is watched: its
// driver is listed now and then, and a worker with that id that golb has
// no record of is removed as soon as it shows up.

// How a cut Start's id is watched: listed after cutSweepFirst, then twice
// as long each time up to cutSweepMax, for cutWatchFor after the cut.
// Variables, so that tests can shorten them (before an agent runs).
var (
	cutSweepFirst = time.Second
	cutSweepMax   = 30 * time.Second
	cutWatchFor   = 10 * time.Minute
)

// cutStarts are the ids of cut Starts still watched, by driver, each with
// the time its watch ends; sweeping marks a driver whose sweep runs.
type cutStarts struct {
	mu       sync.Mutex
	ids      map[string]map[string]time.Time
	sweeping map[string]bool
}

// watchCutStart watches id, a cut Start of driver's, and starts the
// driver's sweep when none runs.
func (a *Agent) watchCutStart(ctx context.Context, driver, id string) {
	cs := &a.cut
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.ids == nil {
		cs.ids, cs.sweeping = map[string]map[string]time.Time{}, map[string]bool{}
	}
	if cs.ids[driver] == nil {
		cs.ids[driver] = map[string]time.Time{}
	}
	cs.ids[driver][id] = time.Now().Add(cutWatchFor)
	if cs.sweeping[driver] {
		return
	}
	cs.sweeping[driver] = true
	if a.controlCtx != nil {
		ctx = a.controlCtx // until shutdown, which stops any stray itself (stopStrays)
	}
	a.goWork(ctx, func(ctx context.Context) { a.sweepCutStarts(ctx, driver) })
}

// sweepCutStarts lists driver's workers until no cut Start of its is
// watched any more (or ctx ends), and removes each watched one that runs
// without a record in golb's state.
func (a *Agent) sweepCutStarts(ctx context.Context, driver string) {
	for delay := cutSweepFirst; ; delay = min(2*delay, cutSweepMax) {
		select {
		case <-ctx.Done():
			a.cut.mu.Lock()
			a.cut.sweeping[driver] = false
			a.cut.mu.Unlock()
			return
		case <-time.After(delay):
		}
		watched := a.watchedCuts(driver)
		if len(watched) == 0 {
			return // watchedCuts ended the sweep
		}
		c, _, err := a.plugins.current(driver)
		if err != nil {
			continue // the plugin is restarting: its new instance removes every unknown worker
		}
		lctx, cancel := context.WithTimeout(ctx, a.recoverTimeout)
		hs, err := c.List(lctx, map[string]string{drivers.LabelManaged: "true", LabelInstance: a.instance})
		cancel()
		if err != nil {
			if ctx.Err() == nil && !c.Exited() {
				a.logger.Debug("listing workers, to find a cut start's late worker", "driver", driver, "err", err)
			}
			continue
		}
		for _, h := range hs {
			if !watched[h.ID] {
				continue
			}
			if w, _ := a.store.Worker(nil, h.ID); w != nil {
				continue // kept lost while its Destroy is retried: that removes it
			}
			a.forgetCut(driver, h.ID)
			a.logger.Warn("a cut start's worker came up late; removing it", "worker", h.ID, "driver", driver, "address", h.Address)
			a.removeStray(ctx, driver, c, h)
		}
	}
}

// watchedCuts returns the ids of driver's cut Starts still watched,
// dropping those whose watch ended. When none is left it ends the sweep,
// under the same lock as watchCutStart's check: an id watched a moment
// later starts a sweep of its own.
func (a *Agent) watchedCuts(driver string) map[string]bool {
	cs := &a.cut
	cs.mu.Lock()
	defer cs.mu.Unlock()
	now := time.Now()
	out := map[string]bool{}
	for id, until := range cs.ids[driver] {
		if now.After(until) {
			delete(cs.ids[driver], id)
			continue
		}
		out[id] = true
	}
	if len(out) == 0 {
		cs.sweeping[driver] = false
	}
	return out
}

func (a *Agent) forgetCut(driver, id string) {
	a.cut.mu.Lock()
	delete(a.cut.ids[driver], id)
	a.cut.mu.Unlock()
}

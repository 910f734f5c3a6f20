package core

import (
	"context"
	"fmt"
	"time"

	"github.com/golb/golb/core/state"
)

// A rollover replaces the workers of a group whose shape changed (on a
// reload, or on a restart with a changed file: the same code). Its old
// workers are marked Outdated and serve on; rollOut (reconcile.go) stops one
// each time a replacement is healthy in every balancer of the group. This
// file bounds it as Nomad's update block does: at most max_parallel
// replacements are starting at once, so the group's healthy count never drops
// below count − max_parallel; and a replacement that is not healthy within
// healthy_deadline, or that fails, stops the rollover: the old workers keep
// serving, and the group says why (state.Group.RolloutStopped) until its
// settings change again.

// rolloutSettings are a group's max_parallel and healthy_deadline.
func (a *Agent) rolloutSettings(group string) (maxParallel int, deadline time.Duration) {
	maxParallel, deadline = 1, 60*time.Second
	if gs := a.spec(group); gs != nil && gs.cfg.Update != nil {
		maxParallel, deadline = *gs.cfg.Update.MaxParallel, gs.cfg.Update.HealthyDeadlineDur
	}
	return maxParallel, deadline
}

// boundRollout returns g with Desired lowered so that reconcileCount starts
// no more replacements than max_parallel allows beside those starting
// already (live workers not yet healthy everywhere), and none once the
// rollover stopped. Workers missing from the group altogether (outdated
// ones that died, a scale-up) are made up at once, beyond max_parallel and
// after a stop too, with the new settings, as Nomad's reconciler places a
// lost allocation even in a failed deployment (with the job's current
// version): a stopped rollover holds back replacements, never the count. It
// never lowers Desired below the live count: the bound only holds back
// starts, it never stops a worker.
func (a *Agent) boundRollout(g *state.Group, live, outdated []*state.Worker) *state.Group {
	if len(live) >= g.Desired {
		return g
	}
	missing := max(g.Desired-len(live)-len(outdated), 0)
	cp := *g
	if g.RolloutStopped != "" {
		cp.Desired = len(live) + missing
		return &cp
	}
	maxParallel, _ := a.rolloutSettings(g.Name)
	serving := a.servingIn(g.Name)
	starting := 0
	for _, w := range live {
		if w.Status != state.StatusRunning || !serving(w.ID) {
			starting++
		}
	}
	room := max(maxParallel-starting, 0)
	cp.Desired = min(g.Desired, len(live)+room+missing)
	return &cp
}

// checkRollout stops a rollover whose replacement failed (a crash or a
// failed start of a worker with the new settings since the rollover began:
// an outdated worker's death is not counted, workerExited) or is not
// healthy within the group's healthy_deadline. It returns the stopped
// rollover's note when it stopped it now. A stopped rollover is not checked
// again: what starts after it (making up for outdated workers that died)
// is a worker of the group like any other, not a replacement on trial.
func (a *Agent) checkRollout(ctx context.Context, g *state.Group, live []*state.Worker, serving func(string) bool) string {
	if g.RolloutStopped != "" {
		return ""
	}
	_, deadline := a.rolloutSettings(g.Name)
	a.mu.Lock()
	crashed := ""
	if cl := a.crashes[g.Name]; cl != nil && cl.streak > 0 {
		crashed = fmt.Sprintf("a replacement failed (%d in a row)", cl.streak)
	}
	a.mu.Unlock()
	var late []*state.Worker
	for _, w := range live {
		if (w.Status != state.StatusRunning || !serving(w.ID)) && time.Since(w.StartedAt) > deadline {
			late = append(late, w)
		}
	}
	reason := crashed
	if len(late) > 0 {
		reason = fmt.Sprintf("replacement %s not healthy within healthy_deadline %v", late[0].ID, deadline)
	}
	if reason == "" {
		return ""
	}
	return a.stopRollout(ctx, g.Name, reason, live, serving)
}

// stopRollout marks group's rollover stopped for reason, and stops its
// replacements that are not serving: the old workers carry the traffic. It
// returns the group's note.
func (a *Agent) stopRollout(ctx context.Context, group, reason string, live []*state.Worker, serving func(string) bool) string {
	note := "rollout stopped: " + reason + "; the old workers keep serving"
	_ = a.store.UpdateGroup(group, func(g *state.Group) error {
		g.RolloutStopped = note
		return nil
	})
	a.logger.Error("rollout stopped; the workers with the old settings keep serving", "group", group, "reason", reason)
	a.reloads.event(group, note)
	a.stopUnready(ctx, live, serving)
	return note
}

// stopUnready stops the replacements of a stopped rollover that are not
// serving (live holds no outdated worker): a running one is drained and
// stopped; one still starting is marked draining, which startWorker takes
// for "no longer wanted" and removes once its Start returns.
func (a *Agent) stopUnready(ctx context.Context, live []*state.Worker, serving func(string) bool) {
	for _, w := range live {
		if w.Status == state.StatusRunning && serving(w.ID) {
			continue
		}
		if a.beginStop(w.ID, state.StatusPending) {
			continue // startWorker removes it
		}
		if !a.beginStop(w.ID, state.StatusRunning) {
			continue
		}
		a.goWork(ctx, func(ctx context.Context) { a.stopWorker(ctx, w.ID, true) })
	}
}

// beginRollout marks group's workers outdated (they serve until replaced)
// unless they already run with the template hash (a reload back to the
// settings they were started with un-marks them), and forgets the group's
// crash streak and stopped rollover, so that the new settings get a fresh
// start. It returns how many workers are outdated.
func (a *Agent) beginRollout(group, hash string) (int, error) {
	a.mu.Lock()
	delete(a.crashes, group)
	a.mu.Unlock()
	ws, err := a.store.WorkersByGroup(nil, group)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, w := range ws {
		if !w.Status.Live() {
			continue
		}
		outdated := w.Handle == nil || w.Handle.Labels[LabelSpec] != hash
		if outdated {
			n++
		}
		if outdated != w.Outdated {
			_, _ = a.store.UpdateWorker(w.ID, func(w *state.Worker) { w.Outdated = outdated })
		}
	}
	err = a.store.UpdateGroup(group, func(g *state.Group) error {
		g.RolloutStopped = ""
		if ownedByCrashLoop(g.Reason) {
			g.Failing, g.Reason = false, ""
		}
		return nil
	})
	return n, err
}

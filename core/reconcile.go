package core

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/golb/golb/core/state"
	"github.com/golb/golb/drivers"
)

// Crash-loop handling: the first replacement is immediate; a worker that dies
// within minUptime of its start counts as a crash, and each further crash in a
// row doubles the delay before the next start, up to maxBackoff. After
// failingAfter crashes in a row the group is marked failing.
const (
	minUptime    = 10 * time.Second
	baseBackoff  = 250 * time.Millisecond
	maxBackoff   = 30 * time.Second
	failingAfter = 5
)

// crashLoop tracks consecutive quick crashes of one group.
type crashLoop struct {
	streak  int
	notTill time.Time
}

// reconcileLoop converges actual on desired state whenever either changes.
func (a *Agent) reconcileLoop(ctx context.Context) {
	for ctx.Err() == nil {
		ws := memdb.NewWatchSet()
		next := a.reconcile(ctx, ws)
		wctx := ctx
		var cancel context.CancelFunc = func() {}
		if !next.IsZero() {
			wctx, cancel = context.WithDeadline(ctx, next)
		}
		_ = ws.WatchCtx(wctx)
		cancel()
	}
}

// reconcile makes one pass over every group. It returns when the next pass is
// due for a reason memdb cannot signal (a backoff ending), or zero.
func (a *Agent) reconcile(ctx context.Context, ws memdb.WatchSet) time.Time {
	groups, err := a.store.Groups(ws)
	if err != nil {
		a.logger.Error("reconcile: reading groups", "err", err)
		return time.Now().Add(time.Second)
	}
	all, err := a.store.Workers(ws)
	if err != nil {
		a.logger.Error("reconcile: reading workers", "err", err)
		return time.Now().Add(time.Second)
	}
	var next time.Time
	for _, g := range groups {
		if t := a.reconcileGroup(ctx, g, all); !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next
}

func (a *Agent) reconcileGroup(ctx context.Context, g *state.Group, all []*state.Worker) time.Time {
	var live []*state.Worker
	for _, w := range all {
		if w.Group == g.Name && w.Status.Live() {
			live = append(live, w)
		}
	}
	switch {
	case len(live) < g.Desired:
		a.mu.Lock()
		cl := a.crashes[g.Name]
		a.mu.Unlock()
		if cl != nil && time.Now().Before(cl.notTill) {
			return cl.notTill
		}
		if _, _, err := a.plugins.current(g.Driver); err != nil {
			return time.Now().Add(time.Second)
		}
		used := map[int]bool{}
		for _, w := range all {
			used[w.Port] = true
		}
		spec := a.groups[g.Name]
		for i := len(live); i < g.Desired; i++ {
			port, ok := allocPort(spec.cfg.Port, used)
			if !ok {
				a.logger.Error("no free port for a worker", "group", g.Name, "from", spec.cfg.Port)
				return time.Now().Add(time.Second)
			}
			used[port] = true
			w := &state.Worker{ID: newWorkerID(g.Name), Group: g.Name, Driver: g.Driver, Port: port, Status: state.StatusPending, StartedAt: time.Now().UTC()}
			if err := a.store.UpsertWorker(w); err != nil {
				a.logger.Error("recording new worker", "err", err)
				continue
			}
			a.goWork(ctx, func(ctx context.Context) { a.startWorker(ctx, w) })
		}
	case len(live) > g.Desired:
		// Stop the newest first: the oldest have warm caches and proven health.
		sort.Slice(live, func(i, j int) bool { return live[i].StartedAt.After(live[j].StartedAt) })
		for _, w := range live[:len(live)-g.Desired] {
			if _, err := a.store.UpdateWorker(w.ID, func(w *state.Worker) { w.Status = state.StatusDraining }); err != nil {
				continue
			}
			a.goWork(ctx, func(ctx context.Context) { a.stopWorker(ctx, w.ID, true) })
		}
	}
	return time.Time{}
}

// goWork runs fn in the background; shutdown waits for it.
func (a *Agent) goWork(ctx context.Context, fn func(context.Context)) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		fn(ctx)
	}()
}

// allocPort returns the lowest port from first that no worker uses and that
// can be bound on 127.0.0.1 right now.
func allocPort(first int, used map[int]bool) (int, bool) {
	for p := first; p <= 65535; p++ {
		if used[p] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		return p, true
	}
	return 0, false
}

func newWorkerID(group string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return group + "-" + hex.EncodeToString(b[:])
}

// specFor builds the WorkerSpec of worker w.
func (a *Agent) specFor(w *state.Worker) drivers.WorkerSpec {
	gs := a.groups[w.Group]
	env := map[string]string{"GOLB_WORKER_ID": w.ID}
	for k, v := range gs.env {
		env[k] = v
	}
	return drivers.WorkerSpec{
		ID:       w.ID,
		Group:    w.Group,
		Port:     w.Port,
		BindAddr: "127.0.0.1",
		Env:      env,
		Labels:   map[string]string{LabelInstance: a.instance, LabelSpec: gs.hash},
		Config:   gs.config,
	}
}

func (a *Agent) startWorker(ctx context.Context, w *state.Worker) {
	c, _, err := a.plugins.current(w.Driver)
	if err == nil {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		var h *drivers.Handle
		h, err = c.Start(sctx, a.specFor(w))
		cancel()
		if err == nil {
			a.store.UpdateWorker(w.ID, func(w *state.Worker) {
				w.Status, w.Handle, w.Address = state.StatusRunning, h, h.Address
			})
			a.logger.Info("worker started", "worker", w.ID, "group", w.Group, "address", h.Address)
			a.superviseAsync(ctx, w.ID, w.Driver, w.Group)
			return
		}
	}
	a.logger.Error("starting worker failed", "worker", w.ID, "group", w.Group, "driver", w.Driver, "err", err)
	_ = a.store.DeleteWorker(w.ID)
	a.recordCrash(w.Group, 0, err.Error())
}

// recordCrash notes a worker that failed to start or died young.
func (a *Agent) recordCrash(group string, uptime time.Duration, reason string) {
	a.mu.Lock()
	cl := a.crashes[group]
	if cl == nil {
		cl = &crashLoop{}
		a.crashes[group] = cl
	}
	if uptime >= minUptime {
		cl.streak = 0
	}
	cl.streak++
	delay := time.Duration(0)
	if cl.streak > 1 {
		delay = min(baseBackoff<<(cl.streak-2), maxBackoff)
	}
	cl.notTill = time.Now().Add(delay)
	failing := cl.streak >= failingAfter
	a.mu.Unlock()
	_ = a.store.UpdateGroup(group, func(g *state.Group) error {
		g.Failing = failing
		if failing {
			g.Reason = reason
		} else {
			g.Reason = ""
		}
		return nil
	})
	if failing {
		a.logger.Error("group is crash-looping; backing off", "group", group, "crashes_in_a_row", cl.streak, "next_start_in", delay, "last_error", reason)
	}
}

// superviseAsync watches a running worker until it exits or golb stops.
func (a *Agent) superviseAsync(ctx context.Context, id, driver, group string) {
	a.goWork(ctx, func(ctx context.Context) { a.supervise(ctx, id, driver, group) })
}

func (a *Agent) supervise(ctx context.Context, id, driver, group string) {
	for {
		c, replaced, err := a.plugins.current(driver)
		if err != nil {
			return
		}
		res, err := c.Wait(ctx, id)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, drivers.ErrPluginExited):
			// The plugin crashed; its workers run on. Wait for the new
			// instance, which recovers this worker, and watch it again.
			select {
			case <-replaced:
				continue
			case <-ctx.Done():
				return
			}
		case errors.Is(err, drivers.ErrNotFound):
			a.workerExited(ctx, id, group, state.StatusLost, drivers.ExitResult{ExitCode: -1, Err: "the driver no longer knows this worker"})
			return
		case err != nil:
			a.logger.Warn("waiting on worker", "worker", id, "err", err)
			select {
			case <-time.After(time.Second):
				continue
			case <-ctx.Done():
				return
			}
		}
		a.workerExited(ctx, id, group, state.StatusFailed, res)
		return
	}
}

// workerExited handles a worker that ended on its own (failed) or that its
// driver no longer knows (lost): out of the pool, cleaned up, forgotten; the
// reconciler starts a replacement.
func (a *Agent) workerExited(ctx context.Context, id, group string, status state.WorkerStatus, res drivers.ExitResult) {
	w, _ := a.store.Worker(nil, id)
	if w == nil || !w.Status.Live() {
		return // golb stopped it on purpose
	}
	for _, b := range a.byGroup[group] {
		b.MarkDown(id)
	}
	a.store.UpdateWorker(id, func(w *state.Worker) { w.Status, w.Exit = status, &res })
	a.logger.Warn("worker exited; replacing it", "worker", id, "group", group, "exit", res.String())
	if c, _, err := a.plugins.current(w.Driver); err == nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		if err := c.Destroy(dctx, id); err != nil {
			a.logger.Warn("cleaning up exited worker", "worker", id, "err", err)
		}
		cancel()
	}
	_ = a.store.DeleteWorker(id)
	a.recordCrash(group, time.Since(w.StartedAt), res.String())
}

// stopWorker drains (when the balancer still sends it traffic), stops and
// destroys a worker, then forgets it.
func (a *Agent) stopWorker(ctx context.Context, id string, drain bool) {
	w, _ := a.store.Worker(nil, id)
	if w == nil {
		return
	}
	gs := a.groups[w.Group]
	if drain {
		for _, b := range a.byGroup[w.Group] {
			dctx, cancel := context.WithTimeout(ctx, a.drainTimeout(w.Group))
			if err := b.WaitIdle(dctx, id); err != nil {
				a.logger.Warn("drain timeout; stopping worker with requests in flight", "worker", id)
			}
			cancel()
		}
	}
	timeout := 10 * time.Second
	signal := "SIGTERM"
	if gs != nil {
		timeout, signal = gs.cfg.StopTimeoutDur, gs.cfg.StopSignal
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout+30*time.Second)
	defer cancel()
	err := a.withPlugin(sctx, w.Driver, func(c *drivers.Client) error {
		if err := c.Stop(sctx, id, signal, timeout); err != nil && !errors.Is(err, drivers.ErrNotFound) {
			return err
		}
		return c.Destroy(sctx, id)
	})
	if err != nil {
		a.logger.Warn("stopping worker", "worker", id, "err", err)
	}
	a.store.UpdateWorker(id, func(w *state.Worker) { w.Status = state.StatusStopped })
	_ = a.store.DeleteWorker(id)
	a.logger.Info("worker stopped", "worker", id, "group", w.Group)
}

// withPlugin runs fn with the driver's plugin; if the plugin turns out to have
// crashed, it waits for the new instance (which recovered the workers) and
// runs fn once more.
func (a *Agent) withPlugin(ctx context.Context, driver string, fn func(c *drivers.Client) error) error {
	for attempt := 0; ; attempt++ {
		c, replaced, err := a.plugins.current(driver)
		if err != nil {
			return err
		}
		err = fn(c)
		if !errors.Is(err, drivers.ErrPluginExited) || attempt > 0 {
			return err
		}
		select {
		case <-replaced:
		case <-ctx.Done():
			return err
		}
	}
}

func (a *Agent) drainTimeout(group string) time.Duration {
	d := time.Duration(0)
	for _, b := range a.cfg.Balancers {
		if b.Group == group {
			d = max(d, b.DrainTimeoutDur)
		}
	}
	return d
}

// stopAllWorkers stops every worker in parallel (shutdown).
func (a *Agent) stopAllWorkers(ctx context.Context) {
	ws, _ := a.store.Workers(nil)
	for _, w := range ws {
		a.store.UpdateWorker(w.ID, func(w *state.Worker) { w.Status = state.StatusDraining })
	}
	for _, w := range ws {
		a.goWork(ctx, func(ctx context.Context) { a.stopWorker(ctx, w.ID, false) })
	}
	a.wg.Wait()
}

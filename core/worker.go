package core

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/golb/golb/core/state"
	"github.com/golb/golb/drivers"
)

// bindAddr is the address every worker binds (a driver whose worker must
// bind elsewhere inside its runtime, a container, overrides BIND_ADDR).
const bindAddr = "127.0.0.1"

// specFor builds the WorkerSpec of worker w. Its Env has what every worker
// reads, PORT, BIND_ADDR and GOLB_WORKER_ID, plus the app settings for the
// built-in worker, whose argv is in WorkerCommand.
func (a *Agent) specFor(w *state.Worker) drivers.WorkerSpec {
	gs := a.spec(w.Group)
	env := map[string]string{
		"PORT":           strconv.Itoa(w.Port),
		"BIND_ADDR":      bindAddr,
		"GOLB_WORKER_ID": w.ID,
	}
	for k, v := range gs.env {
		env[k] = v
	}
	spec := drivers.WorkerSpec{
		ID:       w.ID,
		Group:    w.Group,
		Port:     w.Port,
		BindAddr: bindAddr,
		Env:      env,
		Labels:   map[string]string{LabelInstance: a.instance, LabelSpec: gs.hash},
		Config:   gs.config,
	}
	if gs.cfg.RunsBuiltinWorker() {
		spec.WorkerCommand = slices.Clone(a.workerCmd)
	}
	return spec
}

// startTimeout bounds one Start call (an image load can take a while). A
// variable so that tests can shorten it; set it before an agent runs.
var startTimeout = 2 * time.Minute

// startWorker starts pending worker w through its driver and, once started,
// records it running and supervises it. A failed start counts as a crash of
// its group; a worker no longer wanted by the time it started is removed.
func (a *Agent) startWorker(ctx context.Context, w *state.Worker) {
	c, replaced, err := a.plugins.current(w.Driver)
	if err != nil {
		_ = a.store.DeleteWorker(w.ID)
		return
	}
	// Start is not cancelled with the agent: a worker started a moment before
	// shutdown is recorded as running, so that shutdown stops it.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startTimeout)
	defer cancel()
	h, err := c.Start(sctx, a.specFor(w))
	if errors.Is(err, drivers.ErrPluginExited) {
		// The worker may have started before the plugin died. Once the new
		// instance runs, remove whatever carries this id; a fresh worker
		// replaces it. Not the group's fault: no crash is recorded.
		select {
		case <-replaced:
			a.startCut(ctx, w, err)
		case <-ctx.Done(): // shutting down: the new instance's List cleanup removes it
			_ = a.store.DeleteWorker(w.ID)
		case <-sctx.Done():
			_ = a.store.DeleteWorker(w.ID)
		}
		return
	}
	if err == nil && h == nil { // a Driver that is not the SDK's client
		err = &drivers.BadReplyError{Driver: w.Driver, Call: "Start", Problem: "no worker handle"}
	}
	if errors.Is(err, drivers.ErrBadReply) {
		a.startRefused(sctx, w, err)
		return
	}
	if err != nil {
		if ctx.Err() == nil { // not shutting down
			a.logStartError(w, err)
			a.recordCrash(w.Group, 0, err.Error()) // before the delete wakes the reconciler
		}
		if startMayHaveRun(sctx, err) {
			a.startCut(ctx, w, err)
			return
		}
		_ = a.store.DeleteWorker(w.ID)
		return
	}
	details := a.inspectDetails(w.Driver, w.ID)
	kept := false
	_, _ = a.store.UpdateWorker(w.ID, func(cur *state.Worker) {
		if cur.Status == state.StatusPending {
			cur.Status, cur.Handle, cur.Address, cur.Details = state.StatusRunning, h, h.Address, details
			kept = true
		}
	})
	if !kept {
		// Scaled away or shut down while it started.
		a.logger.Info("worker no longer wanted after it started; removing it", "worker", w.ID)
		cp := *w
		cp.Handle, cp.Address, cp.Details = h, h.Address, details
		a.removeUnwanted(ctx, &cp)
		return
	}
	a.logger.Info("worker started", "worker", w.ID, "group", w.Group, "address", h.Address)
	a.superviseAsync(ctx, w.ID, w.Driver, w.Group)
}

// startMayHaveRun reports whether a failed Start may have left its worker
// running: the call was cut (its deadline passed, it was cancelled) rather
// than answered with the driver's refusal, so the plugin may have finished
// it, or be finishing it still.
func startMayHaveRun(sctx context.Context, err error) bool {
	return sctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// startCut removes what a Start that failed halfway (cut at its deadline,
// or by its plugin's crash) may have left under w's id: Destroy, through
// the plugin (its new instance after a crash), as for a bad reply. A
// worker that Destroy cannot remove is kept as lost, out of every pool, and
// retried (keepLost), never forgotten: it may run. One whose Destroy died
// with the plugin is forgotten: the next instance removes every worker
// golb has no record of (recoverAfterPluginCrash), and so does shutdown
// (stopStrays). One the plugin finishes after the Destroy is removed when
// the watch on its id finds it (watchCutStart).
func (a *Agent) startCut(ctx context.Context, w *state.Worker, startErr error) {
	// The plugin may yet finish the Start after this Destroy: its worker
	// is looked for until it shows up or the watch ends (cutstart.go).
	a.watchCutStart(ctx, w.Driver, w.ID)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.destroyTimeout)
	derr := a.withPlugin(dctx, w.Driver, func(c *drivers.Client) error { return c.Destroy(dctx, w.ID) })
	cancel()
	if derr != nil && !errors.Is(derr, drivers.ErrNotFound) && !errors.Is(derr, drivers.ErrPluginExited) {
		a.keepLost(ctx, w, fmt.Errorf("start: %v; destroy: %w", startErr, derr), ctx.Err() == nil && !a.finalStop.Load())
		return
	}
	_ = a.store.DeleteWorker(w.ID)
}

// logStartError logs a failed Start: at ERROR the first of its group's
// crash streak and each that says something new, at DEBUG the same error
// again (a crash-looping group retries with backoff, up to every 30 s).
func (a *Agent) logStartError(w *state.Worker, err error) {
	msg := err.Error()
	if a.firstStartError(w.Group, msg) {
		a.logger.Error("starting worker failed", "worker", w.ID, "group", w.Group, "driver", w.Driver, "err", msg)
		return
	}
	a.logger.Debug("starting worker failed again the same way", "worker", w.ID, "group", w.Group, "driver", w.Driver)
}

// startRefused handles a Start whose reply the SDK client refused (no handle,
// a bad address, an oversized state): the plugin's bug. The start counts as
// failed, with the crash-loop backoff (whose failing mark puts err in the
// group's NOTE); whatever the plugin may have started under w's id is
// destroyed, so that it does not run on unknown to golb. The error is logged
// once per crash streak and distinct message, not at every retry.
func (a *Agent) startRefused(ctx context.Context, w *state.Worker, err error) {
	msg := err.Error()
	if a.firstStartError(w.Group, msg) {
		a.logger.Error("driver plugin sent a bad reply; counting the start as failed",
			"worker", w.ID, "group", w.Group, "driver", w.Driver, "err", msg)
	} else {
		a.logger.Debug("driver plugin sent the same bad reply again", "worker", w.ID, "group", w.Group, "driver", w.Driver)
	}
	derr := a.withPlugin(ctx, w.Driver, func(c *drivers.Client) error { return c.Destroy(ctx, w.ID) })
	if derr != nil && !errors.Is(derr, drivers.ErrNotFound) {
		a.logger.Warn("removing worker after a bad start reply", "worker", w.ID, "err", derr)
	}
	a.recordCrash(w.Group, 0, msg) // before the delete wakes the reconciler
	_ = a.store.DeleteWorker(w.ID)
}

// firstStartError reports whether msg, a failed start's error, is new for
// group's crash streak, and remembers it.
func (a *Agent) firstStartError(group, msg string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	cl := a.crashes[group]
	if cl == nil {
		cl = &crashLoop{}
		a.crashes[group] = cl
	}
	if cl.lastErr == msg {
		return false
	}
	cl.lastErr = msg
	return true
}

// destroyQuietly destroys a worker, logging (not returning) a failure.
func (a *Agent) destroyQuietly(ctx context.Context, driver, id string) {
	err := a.withPlugin(ctx, driver, func(c *drivers.Client) error { return c.Destroy(ctx, id) })
	if err != nil {
		a.logger.Warn("removing worker", "worker", id, "err", err)
	}
}

// superviseAsync watches a running worker until it exits or golb's traffic
// stops at shutdown (after the listeners drained: a worker that dies while
// they drain still leaves the pool).
func (a *Agent) superviseAsync(ctx context.Context, id, driver, group string) {
	if a.trafficCtx != nil {
		ctx = a.trafficCtx
	}
	a.goWork(ctx, func(ctx context.Context) { a.supervise(ctx, id, driver, group) })
}

// How long supervise waits before it asks again after a Wait failed: from
// waitRetryFirst, doubling up to waitRetryMax while it keeps failing.
const (
	waitRetryFirst = time.Second
	waitRetryMax   = 30 * time.Second
)

func (a *Agent) supervise(ctx context.Context, id, driver, group string) {
	recovered := false
	retry, lastErr := waitRetryFirst, ""
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
				retry, lastErr = waitRetryFirst, "" // a new instance: a fresh start
				continue
			case <-ctx.Done():
				return
			}
		case errors.Is(err, drivers.ErrNotFound):
			// A plugin instance that came up while this worker's Start was
			// finishing did not recover it: recover it from its handle.
			// Only the plugin's definite answer loses it; a sick plugin
			// (a timeout, a crash meanwhile) is asked again.
			w, _ := a.store.Worker(nil, id)
			if recovered || w == nil || w.Handle == nil {
				a.workerExited(ctx, id, group, state.StatusLost, drivers.ExitResult{ExitCode: -1, Err: "the driver no longer knows this worker"})
				return
			}
			rctx, cancel := context.WithTimeout(ctx, a.recoverTimeout)
			rerr := c.Recover(rctx, w.Handle)
			cancel()
			switch {
			case rerr == nil:
				recovered = true // once: a Wait that still does not know it loses it
				continue
			case errors.Is(rerr, drivers.ErrNotFound) || errors.Is(rerr, drivers.ErrStaleHandle):
				a.workerExited(ctx, id, group, state.StatusLost, drivers.ExitResult{ExitCode: -1, Err: "the driver no longer knows this worker: " + rerr.Error()})
				return
			case errors.Is(rerr, drivers.ErrPluginExited):
				select {
				case <-replaced:
					continue
				case <-ctx.Done():
					return
				}
			}
			a.logger.Warn("recovering a worker its plugin did not know failed; asking again", "worker", id, "err", rerr, "retry_in", retry.String())
			select {
			case <-time.After(retry):
				retry = min(retry*2, waitRetryMax)
				continue
			case <-ctx.Done():
				return
			}
		case err != nil:
			// Logged when it starts failing and when its error changes;
			// asked again with backoff, not every second forever.
			if msg := err.Error(); msg != lastErr {
				a.logger.Warn("waiting on worker failed; asking again with backoff", "worker", id, "err", msg, "retry_in", retry.String())
				lastErr = msg
			} else {
				a.logger.Debug("waiting on worker failed again the same way", "worker", id, "retry_in", retry.String())
			}
			select {
			case <-time.After(retry):
				retry = min(retry*2, waitRetryMax)
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
	if w != nil && w.Status == state.StatusLost {
		a.lostExited(ctx, w, res)
		return
	}
	if w == nil || !w.Status.Live() {
		return // golb stopped it on purpose
	}
	// The backoff first: the status change below wakes the reconciler,
	// which must already see it. An outdated worker's exit is no crash of
	// its group's settings: none is started with its settings again, and
	// it must not stop the rollover replacing it (checkRollout).
	if !w.Outdated {
		a.recordCrash(group, time.Since(w.StartedAt), res.String())
	}
	for _, b := range a.balancersOf(group) {
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

package process

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/proc"
)

// handle is one worker the plugin instance tracks: a child it started, or a
// process it re-attached to after a restart.
type handle struct {
	id    string
	state workerState
	group *proc.Group // the worker's process group, led by state.PID
	exit  *proc.Exit  // finished when the whole group has exited
}

func newHandle(id string, st workerState) *handle {
	return &handle{id: id, state: st, group: &proc.Group{PGID: st.PID}, exit: proc.NewExit()}
}

// newChildHandle tracks a process this plugin started: cmd.Wait gives the
// exact exit status, and the end of its stderr log says why. The exit is
// seen before the leader is reaped, so that its zombie keeps the group's ID
// ours while the rest of the group is ended: a wrapper's child must not keep
// the worker's port after the wrapper died (crashed, or stopped).
func newChildHandle(d *Driver, id string, st workerState, cmd *exec.Cmd) *handle {
	h := newHandle(id, st)
	go func() {
		if err := proc.WaitExited(cmd.Process.Pid); err == nil {
			h.drain(d)
		}
		err := cmd.Wait()
		res := exitResult(cmd, err)
		res.Output = proc.ExitOutput(st.Stderr)
		h.exit.Finish(res)
	}()
	return h
}

// drain ends the rest of the group once its leader has exited: at once, or
// after a Stop's timeout.
func (h *handle) drain(d *Driver) {
	if left := h.group.Drain(); left > 0 {
		d.logger.Info("worker's main process exited; ended the processes left in its group", "worker", h.id, "pid", h.state.PID, "left", left)
	}
}

// exitResult reads how a child that cmd.Wait returned for ended.
func exitResult(cmd *exec.Cmd, err error) drivers.ExitResult {
	if cmd.ProcessState == nil {
		msg := "exit status unknown"
		if err != nil {
			msg = err.Error()
		}
		return drivers.ExitResult{ExitCode: -1, Err: msg}
	}
	res := drivers.ExitResult{ExitCode: cmd.ProcessState.ExitCode()}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.Signal = int(ws.Signal())
		res.ExitCode = -1
	}
	return res
}

// newAdoptedHandle tracks a process started by an earlier plugin instance. It is
// not our child, so its exit status cannot be known: a pidfd (or, on kernels
// without one, polling /proc) tells when it is gone. Its result is ExitCode
// -1 with no signal or error, which reads "exit status unknown (not our
// child)"; its stderr log may say why, and the result shows a line of it
// only when that reads like an error (ExitResult.String).
func newAdoptedHandle(d *Driver, id string, st workerState) *handle {
	h := newHandle(id, st)
	go func() {
		_ = st.Identity.Wait(context.Background())
		// Seen at once (a pidfd), while what is left of the group still
		// pins its ID.
		h.drain(d)
		h.exit.Finish(drivers.ExitResult{ExitCode: -1, Output: proc.ExitOutput(st.Stderr)})
	}()
	return h
}

func (d *Driver) lookup(id string) (*handle, error) { return d.workers.Get(id) }

// Wait implements drivers.Driver.
func (d *Driver) Wait(ctx context.Context, id string) (drivers.ExitResult, error) {
	h, err := d.lookup(id)
	if err != nil {
		return drivers.ExitResult{}, err
	}
	return h.exit.Wait(ctx)
}

// Inspect implements drivers.Driver.
func (d *Driver) Inspect(_ context.Context, id string) (drivers.Status, error) {
	h, err := d.lookup(id)
	if err != nil {
		return drivers.Status{}, err
	}
	st := drivers.Status{
		ID:        id,
		State:     drivers.StateRunning,
		StartedAt: h.state.StartedAt,
		Details: map[string]string{
			"pid":    strconv.Itoa(h.state.PID),
			"stdout": h.state.Stdout,
			"stderr": h.state.Stderr,
		},
	}
	if res, at, ok := h.exit.Result(); ok {
		st.State, st.ExitedAt, st.Exit = drivers.StateExited, at, &res
	}
	return st, nil
}

// Stop implements drivers.Driver: the signal goes to the worker's whole process
// group, then SIGKILL after timeout. It returns once no process of the group
// runs: a wrapper that dies on the signal while its server ignores it is not
// a stopped worker, as the server keeps the port.
func (d *Driver) Stop(ctx context.Context, id string, signal string, timeout time.Duration) error {
	h, err := d.lookup(id)
	if err != nil {
		return err
	}
	sig, err := proc.ParseSignal(signal)
	if err != nil {
		return err
	}
	release := h.group.Hold() // the members get the timeout, as the leader does
	defer release()
	if _, _, ok := h.exit.Result(); ok {
		return nil // the group is gone, and its ID may be another's by now
	}
	_ = h.group.Signal(sig)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-h.exit.Done():
		return nil
	case <-t.C:
		d.logger.Warn("worker ignored signal, killing it", "worker", id, "signal", proc.SignalName(sig), "timeout", timeout.String())
	case <-ctx.Done():
		return ctx.Err()
	}
	_ = h.group.Kill()
	select {
	case <-h.exit.Done():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// keptLogs is how many gone workers' log files Destroy keeps for post-mortems
// (they are output, not state); older ones are removed.
const keptLogs = 50

// Destroy implements drivers.Driver.
func (d *Driver) Destroy(ctx context.Context, id string) error {
	store := d.store()
	h, err := d.lookup(id)
	if err == nil {
		if _, _, ok := h.exit.Result(); !ok {
			_ = h.group.Kill()
			select {
			case <-h.exit.Done():
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	} else if st, rerr := readState(store, id); rerr == nil {
		// Known only from its state file (not recovered yet): kill it too,
		// and what is left of its group if its leader is gone.
		if err := d.killLeftovers(ctx, id, st); err != nil {
			return fmt.Errorf("destroying worker %s: %w", id, err)
		}
	}
	d.workers.Remove(id)
	if err := store.Remove(id); err != nil {
		return fmt.Errorf("destroying worker %s: %w", id, err)
	}
	// A worker still known from its state file alone keeps its logs.
	known := func(id string) bool {
		_, err := os.Stat(store.Path(id))
		return d.workers.Has(id) || err == nil
	}
	if err := proc.PruneLogs(d.logDir(), keptLogs, known); err != nil {
		d.logger.Warn("pruning old worker logs", "err", err)
	}
	return nil
}

// Recover implements drivers.Driver.
func (d *Driver) Recover(_ context.Context, hd *drivers.Handle) error {
	if hd == nil {
		return fmt.Errorf("%w: nil handle", drivers.ErrStaleHandle)
	}
	if d.workers.Has(hd.ID) {
		return nil
	}
	st, err := decodeState(hd)
	if err != nil {
		return err
	}
	if !st.Alive() {
		// Its leader is gone; a wrapper's child may still hold its port.
		_ = d.killLeftovers(context.Background(), hd.ID, st)
		return fmt.Errorf("%w: worker %s (pid %d) is no longer running", drivers.ErrStaleHandle, hd.ID, st.PID)
	}
	store := d.store()
	if _, err := os.Stat(store.Path(hd.ID)); os.IsNotExist(err) {
		// Keep List truthful for a worker recovered from a handle alone.
		if err := writeState(store, hd.ID, st); err != nil {
			return fmt.Errorf("recovering worker %s: %w", hd.ID, err)
		}
	}
	if d.workers.Adopt(hd.ID, func() *handle { return newAdoptedHandle(d, hd.ID, st) }) {
		d.logger.Debug("worker recovered", "worker", hd.ID, "pid", st.PID)
	}
	return nil
}

// List implements drivers.Driver. It reads the state files, so it finds workers
// after any crash; a record whose process is gone (or whose PID now belongs to
// another process) is removed.
func (d *Driver) List(ctx context.Context, labels map[string]string) ([]*drivers.Handle, error) {
	store := d.store()
	ids, err := store.IDs()
	if err != nil {
		return nil, fmt.Errorf("listing workers: %w", err)
	}
	var out []*drivers.Handle
	for _, id := range ids {
		st, err := readState(store, id)
		if err != nil {
			d.logger.Warn("ignoring unreadable worker state", "path", store.Path(id), "err", err)
			continue
		}
		if h, err := d.lookup(id); err == nil {
			// A worker this instance tracks keeps its record until
			// Destroy, and is listed until its whole group is gone.
			if _, _, ok := h.exit.Result(); ok {
				continue
			}
		} else if !st.Alive() {
			// One that exited while no plugin watched it (golb was down)
			// is a leftover: what is left of its group is killed, its
			// record goes, its logs stay.
			d.logger.Info("removing the record of a worker that exited while unwatched", "worker", id)
			if err := d.killLeftovers(ctx, id, st); err != nil {
				d.logger.Warn("killing what is left of a worker", "worker", id, "err", err)
				continue
			}
			_ = store.Remove(id)
			continue
		}
		if !drivers.MatchLabels(st.Labels, labels) {
			continue
		}
		out = append(out, st.handle(id))
	}
	return out, nil
}

// killLeftovers ends a worker this instance does not track, known from its
// record: its whole group while its leader runs (the group's ID is then
// surely the worker's), else the processes still in its group that carry its
// GOLB_WORKER_ID (once the leader is gone and all of its group with it, the
// ID could be another group's). It returns once none of them runs, or ctx
// ends.
func (d *Driver) killLeftovers(ctx context.Context, id string, st workerState) error {
	mark := workerMark(id)
	if st.Alive() {
		_ = syscall.Kill(-st.PID, syscall.SIGKILL)
		// What the kill reached carries the mark, unless it replaced its
		// environment; a SIGKILLed process is gone in a moment anyway.
	}
	n, err := proc.KillMarked(ctx, st.PID, mark)
	if n > 0 {
		d.logger.Info("killed processes left of a worker", "worker", id, "pid", st.PID, "left", n)
	}
	return err
}

// workerMark is the environment variable every process of worker id
// inherits (workerEnv), which tells its processes from any other's.
func workerMark(id string) string { return "GOLB_WORKER_ID=" + id }

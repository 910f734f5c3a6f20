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
	exit  *proc.Exit // finished when the process has exited
}

// newChildHandle tracks a process this plugin started: cmd.Wait gives the
// exact exit status, and the end of its stderr log says why.
func newChildHandle(id string, st workerState, cmd *exec.Cmd) *handle {
	h := &handle{id: id, state: st, exit: proc.NewExit()}
	go func() {
		err := cmd.Wait()
		res := exitResult(cmd, err)
		res.Output = proc.ExitOutput(st.Stderr)
		h.exit.Finish(res)
	}()
	return h
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
func newAdoptedHandle(id string, st workerState) *handle {
	h := &handle{id: id, state: st, exit: proc.NewExit()}
	go func() {
		_ = st.Identity.Wait(context.Background())
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
// group, then SIGKILL after timeout.
func (d *Driver) Stop(ctx context.Context, id string, signal string, timeout time.Duration) error {
	h, err := d.lookup(id)
	if err != nil {
		return err
	}
	sig, err := proc.ParseSignal(signal)
	if err != nil {
		return err
	}
	if _, _, ok := h.exit.Result(); ok {
		return nil
	}
	_ = proc.KillGroup(h.state.PID, sig)
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
	_ = proc.KillGroup(h.state.PID, syscall.SIGKILL)
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
			_ = proc.KillGroup(h.state.PID, syscall.SIGKILL)
			select {
			case <-h.exit.Done():
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	} else if st, rerr := readState(store, id); rerr == nil && st.Alive() {
		// Known only from its state file (not recovered yet): kill it too.
		_ = proc.KillGroup(st.PID, syscall.SIGKILL)
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
		return fmt.Errorf("%w: worker %s (pid %d) is no longer running", drivers.ErrStaleHandle, hd.ID, st.PID)
	}
	store := d.store()
	if _, err := os.Stat(store.Path(hd.ID)); os.IsNotExist(err) {
		// Keep List truthful for a worker recovered from a handle alone.
		if err := writeState(store, hd.ID, st); err != nil {
			return fmt.Errorf("recovering worker %s: %w", hd.ID, err)
		}
	}
	if d.workers.Adopt(hd.ID, func() *handle { return newAdoptedHandle(hd.ID, st) }) {
		d.logger.Debug("worker recovered", "worker", hd.ID, "pid", st.PID)
	}
	return nil
}

// List implements drivers.Driver. It reads the state files, so it finds workers
// after any crash; a record whose process is gone (or whose PID now belongs to
// another process) is removed.
func (d *Driver) List(_ context.Context, labels map[string]string) ([]*drivers.Handle, error) {
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
		if !st.Alive() {
			// A worker this instance tracks keeps its record until Destroy;
			// one that exited while no plugin watched it (golb was down) is
			// a leftover: its record goes, its logs stay.
			if _, err := d.lookup(id); err != nil {
				d.logger.Info("removing the record of a worker that exited while unwatched", "worker", id)
				_ = store.Remove(id)
			}
			continue
		}
		if !drivers.MatchLabels(st.Labels, labels) {
			continue
		}
		out = append(out, st.handle(id))
	}
	return out, nil
}

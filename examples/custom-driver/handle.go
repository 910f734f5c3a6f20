package bwrap

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/proc"
)

// killGrace is how long Stop waits for the outer bwrap to report the exit of
// a SIGKILLed sandbox before it kills bwrap too.
const killGrace = 5 * time.Second

// handle is one worker the plugin instance tracks: a sandbox it started, or
// one it re-attached to after a restart.
type handle struct {
	id    string
	state workerState
	exit  *proc.Exit // finished when the outer bwrap has exited
}

// newChildHandle tracks a sandbox this plugin started: cmd.Wait gives bwrap's
// exit status, which is the worker's, and the end of its stderr log says why.
func newChildHandle(id string, st workerState, cmd *exec.Cmd) *handle {
	h := &handle{id: id, state: st, exit: proc.NewExit()}
	go func() {
		err := cmd.Wait()
		var res drivers.ExitResult
		switch ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); {
		case ok && ws.Signaled():
			// bwrap itself was killed: the worker's own status is lost.
			res = drivers.ExitResult{ExitCode: -1, Signal: int(ws.Signal())}
		case cmd.ProcessState != nil:
			res = exitResult(cmd.ProcessState.ExitCode())
		default:
			res = drivers.ExitResult{ExitCode: -1, Err: err.Error()}
		}
		st.reap()
		res.Output = proc.ExitOutput(st.Stderr)
		h.exit.Finish(res)
	}()
	return h
}

// newAdoptedHandle tracks a sandbox started by an earlier plugin instance. The
// outer bwrap is not our child, but it writes the worker's exit code to the
// status file it was given (--json-status-fd), so the result is still known.
func newAdoptedHandle(id string, st workerState, statusFile string) *handle {
	h := &handle{id: id, state: st, exit: proc.NewExit()}
	go func() {
		_ = st.Identity.Wait(context.Background())
		st.reap()
		res := drivers.ExitResult{ExitCode: -1, Err: "exit status unknown: bwrap ended without reporting it"}
		if code, ok := readExitCode(statusFile); ok {
			res = exitResult(code)
		}
		res.Output = proc.ExitOutput(st.Stderr)
		h.exit.Finish(res)
	}()
	return h
}

// exitResult decodes bwrap's exit code: bwrap reports a worker killed by
// signal N as 128+N, like a shell. A worker that itself exits with 129..192
// is indistinguishable from that; golb's workers exit 0, 1 or 2.
func exitResult(code int) drivers.ExitResult {
	if code > 128 && code <= 128+64 {
		return drivers.ExitResult{ExitCode: -1, Signal: code - 128}
	}
	return drivers.ExitResult{ExitCode: code}
}

// readExitCode reads the {"exit-code": N} record bwrap appends to its
// --json-status-fd when the sandbox ends.
func readExitCode(path string) (int, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReader(f))
	for {
		var rec struct {
			ExitCode *int `json:"exit-code"`
		}
		if err := dec.Decode(&rec); err != nil {
			return 0, false
		}
		if rec.ExitCode != nil {
			return *rec.ExitCode, true
		}
	}
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
			"pid":           strconv.Itoa(h.state.PID),
			"sandbox_pid":   strconv.Itoa(h.state.SandboxPID),
			"pid_namespace": strconv.FormatUint(h.state.PIDNamespace, 10),
			"stdout":        h.state.Stdout,
			"stderr":        h.state.Stderr,
		},
	}
	if res, at, ok := h.exit.Result(); ok {
		st.State, st.ExitedAt, st.Exit = drivers.StateExited, at, &res
	}
	return st, nil
}

// Stop implements drivers.Driver: the signal goes to the sandbox's process
// group; after timeout, SIGKILL to the sandbox's init ends every process in
// it, and the outer bwrap then exits reporting the kill.
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
	h.state.signal(sig)
	if sig != syscall.SIGKILL {
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
		h.state.signal(syscall.SIGKILL)
	}
	grace := time.NewTimer(killGrace)
	defer grace.Stop()
	select {
	case <-h.exit.Done():
		return nil
	case <-grace.C:
		d.logger.Warn("bwrap did not exit after its sandbox was killed, killing it", "worker", id, "pid", h.state.PID)
	case <-ctx.Done():
		return ctx.Err()
	}
	h.state.kill()
	select {
	case <-h.exit.Done():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// statusFile is where bwrap writes its JSON status (sandbox pid, then exit
// code) for worker id: beside its state file.
func statusFile(store proc.Store, id string) string {
	return filepath.Join(store.Dir, id+".status")
}

// Destroy implements drivers.Driver. Log files are kept for post-mortems; they
// are output, not state.
func (d *Driver) Destroy(ctx context.Context, id string) error {
	store := d.store()
	h, err := d.lookup(id)
	if err == nil {
		if _, _, ok := h.exit.Result(); !ok {
			h.state.kill()
			select {
			case <-h.exit.Done():
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	} else if st, rerr := readState(store, id); rerr == nil {
		// Known only from its state file (not recovered yet): kill it too.
		st.kill()
	}
	d.workers.Remove(id)
	if err := store.Remove(id); err != nil {
		return fmt.Errorf("destroying worker %s: %w", id, err)
	}
	if err := os.Remove(statusFile(store, id)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("destroying worker %s: %w", id, err)
	}
	return nil
}

// Recover implements drivers.Driver. It adopts the outer bwrap when the handle
// still names it (PID and start time) and its sandbox still runs.
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
		return fmt.Errorf("%w: worker %s (bwrap pid %d) is no longer running", drivers.ErrStaleHandle, hd.ID, st.PID)
	}
	if !st.sandboxAlive() {
		return fmt.Errorf("%w: the sandbox of worker %s (pid %d) is gone", drivers.ErrStaleHandle, hd.ID, st.SandboxPID)
	}
	store := d.store()
	if _, err := os.Stat(store.Path(hd.ID)); os.IsNotExist(err) {
		// Keep List truthful for a worker recovered from a handle alone.
		if err := writeState(store, hd.ID, st); err != nil {
			return fmt.Errorf("recovering worker %s: %w", hd.ID, err)
		}
	}
	if d.workers.Adopt(hd.ID, func() *handle { return newAdoptedHandle(hd.ID, st, statusFile(store, hd.ID)) }) {
		d.logger.Info("worker recovered", "worker", hd.ID, "pid", st.PID, "sandbox_pid", st.SandboxPID)
	}
	return nil
}

// List implements drivers.Driver. It reads the state files, so it finds
// workers after any crash; a record whose bwrap is gone (or whose PID now
// belongs to another process) is left out until Destroy removes it.
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
		if !st.Alive() || !drivers.MatchLabels(st.Labels, labels) {
			continue
		}
		out = append(out, st.handle(id))
	}
	return out, nil
}

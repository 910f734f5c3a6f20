package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/golb/golb/drivers"
)

// handle is one worker the plugin instance tracks: a child it started, or a
// process it re-attached to after a restart.
type handle struct {
	id    string
	state workerState

	done chan struct{} // closed when the process has exited
	mu   sync.Mutex
	exit drivers.ExitResult
	at   time.Time
}

// newChildHandle tracks a process this plugin started: cmd.Wait gives the
// exact exit status.
func newChildHandle(id string, st workerState, cmd *exec.Cmd) *handle {
	h := &handle{id: id, state: st, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		res := drivers.ExitResult{ExitCode: cmd.ProcessState.ExitCode()}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = int(ws.Signal())
			res.ExitCode = -1
		} else if err != nil && cmd.ProcessState == nil {
			res.Err = err.Error()
		}
		h.finish(res)
	}()
	return h
}

// newAdoptedHandle tracks a process started by an earlier plugin instance. It is
// not our child, so its exit status cannot be known: a pidfd (or, on kernels
// without one, polling /proc) tells when it is gone.
func newAdoptedHandle(id string, st workerState) *handle {
	h := &handle{id: id, state: st, done: make(chan struct{})}
	go func() {
		waitForeign(st)
		h.finish(drivers.ExitResult{ExitCode: -1, Err: "exit status unknown: worker was re-attached"})
	}()
	return h
}

func (h *handle) finish(res drivers.ExitResult) {
	h.mu.Lock()
	h.exit, h.at = res, time.Now().UTC()
	h.mu.Unlock()
	close(h.done)
}

func (h *handle) exited() (drivers.ExitResult, time.Time, bool) {
	select {
	case <-h.done:
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.exit, h.at, true
	default:
		return drivers.ExitResult{}, time.Time{}, false
	}
}

// waitForeign blocks until the process in st is gone.
func waitForeign(st workerState) {
	if fd, err := unix.PidfdOpen(st.PID, 0); err == nil {
		defer unix.Close(fd)
		// A pidfd refers to the process it was opened on; recheck the start
		// time now that the fd pins it, in case the PID was reused meanwhile.
		if !st.alive() {
			return
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, -1)
			if err == nil || !errors.Is(err, unix.EINTR) {
				return
			}
		}
	}
	for st.alive() {
		time.Sleep(100 * time.Millisecond)
	}
}

func pidfdSupported() bool {
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

func (d *Driver) lookup(id string) (*handle, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, ok := d.workers[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", drivers.ErrNotFound, id)
	}
	return h, nil
}

// Wait implements drivers.Driver.
func (d *Driver) Wait(ctx context.Context, id string) (drivers.ExitResult, error) {
	h, err := d.lookup(id)
	if err != nil {
		return drivers.ExitResult{}, err
	}
	select {
	case <-h.done:
		res, _, _ := h.exited()
		return res, nil
	case <-ctx.Done():
		return drivers.ExitResult{}, ctx.Err()
	}
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
	if res, at, ok := h.exited(); ok {
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
	sig, err := parseSignal(signal)
	if err != nil {
		return err
	}
	if _, _, ok := h.exited(); ok {
		return nil
	}
	killGroup(h.state.PID, sig)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-h.done:
		return nil
	case <-t.C:
		d.logger.Warn("worker ignored signal, killing it", "worker", id, "signal", sig, "timeout", timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	killGroup(h.state.PID, syscall.SIGKILL)
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Destroy implements drivers.Driver. Log files are kept for post-mortems; they
// are output, not state.
func (d *Driver) Destroy(ctx context.Context, id string) error {
	stateFile, _, _ := d.paths(id)
	h, err := d.lookup(id)
	if err == nil {
		if _, _, ok := h.exited(); !ok {
			killGroup(h.state.PID, syscall.SIGKILL)
			select {
			case <-h.done:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	} else if st, rerr := readState(stateFile); rerr == nil && st.alive() {
		// Known only from its state file (not recovered yet): kill it too.
		killGroup(st.PID, syscall.SIGKILL)
	}
	d.mu.Lock()
	delete(d.workers, id)
	d.mu.Unlock()
	if err := os.Remove(stateFile); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("destroying worker %s: %w", id, err)
	}
	return nil
}

// Recover implements drivers.Driver.
func (d *Driver) Recover(_ context.Context, hd *drivers.Handle) error {
	if hd == nil {
		return fmt.Errorf("%w: nil handle", drivers.ErrStaleHandle)
	}
	d.mu.Lock()
	_, known := d.workers[hd.ID]
	d.mu.Unlock()
	if known {
		return nil
	}
	st, err := decodeState(hd.StateVersion, hd.State)
	if err != nil {
		return err
	}
	if !st.alive() {
		return fmt.Errorf("%w: worker %s (pid %d) is no longer running", drivers.ErrStaleHandle, hd.ID, st.PID)
	}
	stateFile, _, _ := d.paths(hd.ID)
	if _, err := os.Stat(stateFile); os.IsNotExist(err) {
		// Keep List truthful for a worker recovered from a handle alone.
		if err := writeState(stateFile, st); err != nil {
			return fmt.Errorf("recovering worker %s: %w", hd.ID, err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, known := d.workers[hd.ID]; !known {
		d.workers[hd.ID] = newAdoptedHandle(hd.ID, st)
		d.logger.Info("worker recovered", "worker", hd.ID, "pid", st.PID)
	}
	return nil
}

// List implements drivers.Driver. It reads the state files, so it finds workers
// after any crash; a record whose process is gone (or whose PID now belongs to
// another process) is removed.
func (d *Driver) List(_ context.Context, labels map[string]string) ([]*drivers.Handle, error) {
	stateFile, _, _ := d.paths("x")
	dir := filepath.Dir(stateFile)
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing workers: %w", err)
	}
	var out []*drivers.Handle
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		id := strings.TrimSuffix(e.Name(), ".json")
		path := filepath.Join(dir, e.Name())
		st, err := readState(path)
		if err != nil {
			d.logger.Warn("ignoring unreadable worker state", "path", path, "err", err)
			continue
		}
		if !st.alive() || !matchLabels(st.Labels, labels) {
			// An exited worker's record stays until Destroy removes it.
			continue
		}
		out = append(out, st.handle(id))
	}
	return out, nil
}

func matchLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func killGroup(pid int, sig syscall.Signal) {
	// Negative pid: the whole process group the worker leads.
	if err := syscall.Kill(-pid, sig); err != nil {
		_ = syscall.Kill(pid, sig)
	}
}

var signals = map[string]syscall.Signal{
	"": syscall.SIGTERM, "SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT,
	"SIGKILL": syscall.SIGKILL, "SIGHUP": syscall.SIGHUP, "SIGQUIT": syscall.SIGQUIT,
	"SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2,
}

func parseSignal(s string) (syscall.Signal, error) {
	sig, ok := signals[strings.ToUpper(s)]
	if !ok {
		if sig, ok = signals["SIG"+strings.ToUpper(s)]; !ok {
			return 0, fmt.Errorf("%w: unknown signal %q", drivers.ErrBadConfig, s)
		}
	}
	return sig, nil
}

package nice

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/proc"
)

// worker is one worker this plugin instance tracks: one it started, or one
// an earlier instance started and this one recovered.
type worker struct {
	state state
	group *proc.Group // its process group, which it leads
	exit  *proc.Exit  // finished once the process and its whole group have ended
}

func newWorker(st state) *worker {
	return &worker{state: st, group: &proc.Group{PGID: st.PID}, exit: proc.NewExit()}
}

// exitOf is how the child cmd ended, with the end of its stderr log.
func exitOf(cmd *exec.Cmd, stderr string) drivers.ExitResult {
	res := drivers.ExitResult{ExitCode: -1, Output: proc.ExitOutput(stderr)}
	if ps := cmd.ProcessState; ps != nil {
		res.ExitCode = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = int(ws.Signal())
		}
	}
	return res
}

func (d *Driver) Wait(ctx context.Context, id string) (drivers.ExitResult, error) {
	w, err := d.workers.Get(id) // ErrNotFound for an unknown id
	if err != nil {
		return drivers.ExitResult{}, err
	}
	return w.exit.Wait(ctx)
}

func (d *Driver) Inspect(_ context.Context, id string) (drivers.Status, error) {
	w, err := d.workers.Get(id)
	if err != nil {
		return drivers.Status{}, err
	}
	st := drivers.Status{ID: id, State: drivers.StateRunning, StartedAt: w.state.StartedAt,
		Details: map[string]string{"pid": strconv.Itoa(w.state.PID), "stderr": w.state.Stderr}}
	if res, at, done := w.exit.Result(); done {
		st.State, st.ExitedAt, st.Exit = drivers.StateExited, at, &res
	}
	return st, nil
}

// Stop signals the worker's process group, and SIGKILLs it after timeout.
// It returns when the whole group has exited (a wrapper's child that ignores
// the signal gets the timeout too), or as soon as ctx ends: golb then calls
// Destroy.
func (d *Driver) Stop(ctx context.Context, id, signal string, timeout time.Duration) error {
	w, err := d.workers.Get(id)
	if err != nil {
		return err
	}
	sig, err := drivers.ParseSignal(signal) // "" is SIGTERM
	if err != nil {
		return err
	}
	defer w.group.Hold()() // the group's other members get the timeout too
	if _, _, done := w.exit.Result(); done {
		return nil // and its pid may be another process's by now
	}
	_ = w.group.Signal(sig)
	select {
	case <-w.exit.Done():
		return nil
	case <-time.After(timeout):
		_ = w.group.Kill()
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-w.exit.Done():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Destroy kills what is left of the worker and forgets it. An unknown id is
// not an error; a worker known only from its state file is killed too.
func (d *Driver) Destroy(ctx context.Context, id string) error {
	store := d.store()
	if w, err := d.workers.Get(id); err == nil {
		if _, _, done := w.exit.Result(); !done {
			_ = w.group.Kill()
		}
		select {
		case <-w.exit.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
	} else if st, err := readState(store, id); err == nil {
		if err := killLeftovers(ctx, id, st); err != nil {
			return err
		}
	}
	d.workers.Remove(id)
	return store.Remove(id)
}

// killLeftovers ends a worker known from its record alone: its process group
// while it runs; once it is gone, the group's ID may be another's, so only
// the processes of the group that carry its GOLB_WORKER_ID are killed.
func killLeftovers(ctx context.Context, id string, st state) error {
	if st.Alive() {
		_ = proc.KillGroup(st.PID, syscall.SIGKILL)
	}
	_, err := proc.KillMarked(ctx, st.PID, "GOLB_WORKER_ID="+id)
	return err
}

// Recover re-attaches to a worker an earlier plugin instance started, from
// its handle: nothing is restarted. It is not this process's child, so its
// exit code cannot be known; proc.Identity.Wait still tells when it ends.
func (d *Driver) Recover(_ context.Context, h *drivers.Handle) error {
	st, err := decodeState(h)
	if err != nil {
		return err
	}
	if !st.Alive() { // gone, or its pid now belongs to another process
		_ = killLeftovers(context.Background(), h.ID, st) // a wrapper's child may hold the port
		return fmt.Errorf("%w: worker %s (pid %d) is not running", drivers.ErrStaleHandle, h.ID, st.PID)
	}
	d.workers.Adopt(h.ID, func() *worker { // a second Recover changes nothing
		w := newWorker(st)
		go func() {
			_ = st.Identity.Wait(context.Background())
			w.group.Drain() // at once: what is left pins the group's ID
			// ExitCode -1, no signal: "exit status unknown (not our child)".
			w.exit.Finish(drivers.ExitResult{ExitCode: -1, Output: proc.ExitOutput(st.Stderr)})
		}()
		return w
	})
	return nil
}

// List reads the state files, not memory: after a crash of the plugin or of
// golb, it still finds every live worker. A record whose process is gone
// and that no instance tracks is removed.
func (d *Driver) List(ctx context.Context, labels map[string]string) ([]*drivers.Handle, error) {
	store := d.store()
	ids, err := store.IDs()
	if err != nil {
		return nil, fmt.Errorf("listing workers: %w", err)
	}
	var out []*drivers.Handle
	for _, id := range ids {
		st, err := readState(store, id)
		if errors.Is(err, fs.ErrNotExist) {
			continue // destroyed meanwhile
		}
		if err != nil {
			return nil, err
		}
		if w, err := d.workers.Get(id); err == nil {
			if _, _, done := w.exit.Result(); done {
				continue // its record stays until Destroy
			}
		} else if !st.Alive() {
			// Exited while no instance watched it: end what it left.
			if killLeftovers(ctx, id, st) == nil {
				_ = store.Remove(id)
			}
			continue
		}
		if drivers.MatchLabels(st.Labels, labels) {
			out = append(out, st.handle(id))
		}
	}
	return out, nil
}

package containerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/proc"
)

// handle is one worker the plugin instance tracks: a task it started, or one
// it re-attached to after a restart. Both are the same to containerd, so
// Wait, Stop and Inspect work alike for them.
type handle struct {
	id    string
	state workerState
	task  client.Task
	exit  *proc.Exit
	// watchCtx carries the task.Wait stream; cancel ends it (Destroy).
	watchCtx context.Context
	cancel   context.CancelFunc
}

func newHandle(id string, st workerState, task client.Task) *handle {
	ctx, cancel := context.WithCancel(context.Background())
	return &handle{id: id, state: st, task: task, exit: proc.NewExit(), watchCtx: ctx, cancel: cancel}
}

func (d *Driver) lookup(id string) (*handle, error) { return d.workers.Get(id) }

// settledOutput is the worker's last words once its log stops growing:
// the shim copies the task's output into the log on its own, and under
// load the exit event came before the last lines were written (Wait's
// Output then lacked them). An empty log has not settled: the first lines
// may still be on their way (ExitReportsOutput flaked in CI when two
// empty looks 50 ms apart were taken as settled). It waits at most
// logSettle.
func settledOutput(path string) string {
	deadline := time.Now().Add(logSettle)
	size := int64(-1)
	for {
		st, err := os.Stat(path)
		if err != nil || st.Size() > 0 && st.Size() == size || time.Now().After(deadline) {
			return proc.ExitOutput(path)
		}
		size = st.Size()
		time.Sleep(logSettleStep)
	}
}

const (
	logSettle     = time.Second
	logSettleStep = 50 * time.Millisecond
)

// watch records the task's exit from its Wait stream: containerd tells, no
// polling. A stream cut by the daemon (a restart) is opened again, after 1 s
// and then twice as long each time up to 10 s; Wait on a task that has
// exited meanwhile answers at once.
func (d *Driver) watch(h *handle, exits <-chan client.ExitStatus) {
	retry, warned := time.Second, false
	for {
		var st client.ExitStatus
		select {
		case st = <-exits:
		case <-h.watchCtx.Done():
			return
		}
		err := st.Error()
		switch {
		case err == nil:
			res := exitResult(st.ExitCode())
			res.Output = settledOutput(h.state.Log)
			h.exit.Finish(res)
			return
		case h.watchCtx.Err() != nil:
			return
		case errdefs.IsNotFound(err):
			h.exit.Finish(drivers.ExitResult{ExitCode: -1, Err: "task of container " + h.state.ContainerID + " was deleted outside golb", Output: proc.ExitOutput(h.state.Log)})
			return
		}
		if !warned {
			d.logger.Warn("waiting on task: stream cut, waiting again", "worker", h.id, "err", err)
			warned = true
		}
		select {
		case <-h.watchCtx.Done():
			return
		case <-time.After(retry):
		}
		retry = min(2*retry, 10*time.Second)
		if exits, err = h.task.Wait(h.watchCtx); err != nil {
			failed := make(chan client.ExitStatus, 1)
			failed <- *client.NewExitStatus(client.UnknownExitStatus, time.Time{}, err)
			exits = failed
		}
	}
}

// exitResult reads a task's exit status: the shim reports a death by signal
// N as 128+N, which is how the signal is known here.
func exitResult(code uint32) drivers.ExitResult {
	res := drivers.ExitResult{ExitCode: int(code)}
	if code > 128 && code <= 128+64 {
		res.Signal = int(code) - 128
	}
	return res
}

// Wait implements drivers.Driver.
func (d *Driver) Wait(ctx context.Context, id string) (drivers.ExitResult, error) {
	h, err := d.lookup(id)
	if err != nil {
		return drivers.ExitResult{}, err
	}
	return h.exit.Wait(ctx)
}

// Inspect implements drivers.Driver. The details name the container, the
// task's pid and the log file.
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
			"container_id": h.state.ContainerID,
			"namespace":    h.state.Namespace,
			"pid":          strconv.FormatUint(uint64(h.state.Pid), 10),
			"image":        h.state.Image,
			"address":      h.state.Address,
			"log":          h.state.Log,
		},
	}
	if res, at, done := h.exit.Result(); done {
		st.State, st.ExitedAt, st.Exit = drivers.StateExited, at, &res
	}
	return st, nil
}

// Stop implements drivers.Driver: the signal to the task, SIGKILL after
// timeout, then the exited task is deleted (which frees its shim and its
// root filesystem's mount). Destroy deletes the container.
func (d *Driver) Stop(ctx context.Context, id string, signal string, timeout time.Duration) error {
	h, err := d.lookup(id)
	if err != nil {
		return err
	}
	sig, err := drivers.ParseSignal(signal)
	if err != nil {
		return err
	}
	_, s, err := d.engine()
	if err != nil {
		return err
	}
	if _, _, done := h.exit.Result(); !done {
		if err := kill(ctx, h.task, sig); err != nil {
			return engineErr(s, "stopping worker "+id, err)
		}
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		select {
		case <-h.exit.Done():
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			d.logger.Warn("worker ignored signal, killing it", "worker", id, "signal", drivers.SignalName(sig), "timeout", timeout.String())
			if err := kill(ctx, h.task, syscall.SIGKILL); err != nil {
				return engineErr(s, "killing worker "+id, err)
			}
			if _, err := h.exit.Wait(ctx); err != nil {
				return err
			}
		}
	}
	if _, err := h.task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		return engineErr(s, "deleting the task of worker "+id, err)
	}
	return nil
}

// kill signals a task; one that already exited is not an error.
func kill(ctx context.Context, task client.Task, sig syscall.Signal) error {
	err := task.Kill(ctx, sig)
	if err == nil || errdefs.IsNotFound(err) || strings.Contains(err.Error(), "process already finished") {
		return nil
	}
	return err
}

// Destroy implements drivers.Driver: the task is killed and deleted, then
// the container with its snapshot. A worker this instance does not track
// (not recovered yet) is found by golb's labels.
func (d *Driver) Destroy(ctx context.Context, id string) error {
	cli, s, err := d.engine()
	if err != nil {
		return err
	}
	var cids []string
	h, herr := d.lookup(id)
	if herr == nil {
		cids = []string{h.state.ContainerID}
	} else {
		cs, err := cli.ContainerService().List(ctx, `labels."`+drivers.LabelManaged+`"==true`)
		if err != nil {
			return engineErr(s, "destroying worker "+id, err)
		}
		for _, c := range cs {
			if c.Labels[drivers.LabelWorker] == id {
				cids = append(cids, c.ID)
			}
		}
	}
	for _, cid := range cids {
		if err := deleteContainer(ctx, cli, cid); err != nil {
			return engineErr(s, "destroying worker "+id, err)
		}
	}
	if h != nil {
		// The kill's exit is on its way to watch; a Wait must not hang on
		// a worker that is gone.
		select {
		case <-h.exit.Done():
		case <-time.After(2 * time.Second):
		}
		h.exit.Finish(drivers.ExitResult{ExitCode: -1, Err: "worker destroyed", Output: proc.ExitOutput(h.state.Log)})
		h.cancel()
		d.workers.Remove(id)
	}
	if len(cids) > 0 {
		d.logger.Debug("worker destroyed", "worker", id, "containers", cids)
		d.pruneLogs(ctx, cli)
	}
	return nil
}

// keepLogs is how many logs of destroyed workers stay in DataDir/logs.
const keepLogs = 20

// pruneLogs removes the logs of all but the newest keepLogs workers that
// are gone, so that a crash-looping group does not fill the disk. A worker
// is gone when this instance does not track it and no golb container of the
// namespace carries its id: one not recovered yet (core destroys the
// unwanted before it recovers the rest) keeps its log. Should containerd not
// answer, nothing is removed.
func (d *Driver) pruneLogs(ctx context.Context, cli *client.Client) {
	dir := d.logDir()
	// The directory is read before the containers are listed: a Start
	// creates its container before the task that opens its log, so every
	// log seen here of a live worker has its container in the list.
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	cs, err := cli.ContainerService().List(ctx, `labels."`+drivers.LabelManaged+`"==true`)
	if err != nil {
		d.logger.Debug("not pruning worker logs: listing containers", "err", err)
		return
	}
	live := map[string]bool{}
	for _, c := range cs {
		live[c.Labels[drivers.LabelWorker]] = true
	}
	type old struct {
		path string
		mod  time.Time
	}
	var gone []old
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok || live[id] || d.workers.Has(id) {
			continue
		}
		if fi, err := e.Info(); err == nil {
			gone = append(gone, old{filepath.Join(dir, e.Name()), fi.ModTime()})
		}
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i].mod.After(gone[j].mod) })
	for i := keepLogs; i < len(gone); i++ {
		_ = os.Remove(gone[i].path)
	}
}

// workerID reports whether the golb.worker label of container cid is a
// worker id (drivers.WorkerSpec.Validate's rule), which names its log
// file. Another one (say "../../etc/shadow") would make golb read some
// other file as the worker's output: such a container is skipped, and
// logged the first time.
func (d *Driver) workerID(cid, id string) bool {
	if validWorkerID(id) {
		return true
	}
	d.mu.Lock()
	first := !d.badLabel[cid]
	if d.badLabel == nil {
		d.badLabel = map[string]bool{}
	}
	d.badLabel[cid] = true
	d.mu.Unlock()
	if first {
		d.logger.Warn("golb container whose "+drivers.LabelWorker+" label is no worker id, skipped", "container", cid, "label", id)
	}
	return false
}

// validWorkerID applies the SDK's rule for worker ids.
func validWorkerID(id string) bool {
	return drivers.WorkerSpec{ID: id, Port: 1}.Validate() == nil
}

// Recover implements drivers.Driver: it loads the container named in the
// handle and re-attaches to its task, if that still runs and still is that
// worker. A task that exited meanwhile is refused with how it ended, so that
// golb removes it and starts another.
func (d *Driver) Recover(ctx context.Context, hd *drivers.Handle) error {
	if hd == nil {
		return fmt.Errorf("%w: nil handle", drivers.ErrStaleHandle)
	}
	if d.workers.Has(hd.ID) {
		return nil
	}
	if !validWorkerID(hd.ID) {
		return fmt.Errorf("%w: invalid worker id %q", drivers.ErrStaleHandle, hd.ID)
	}
	st, err := decodeState(hd)
	if err != nil {
		return err
	}
	cli, s, err := d.engine()
	if err != nil {
		return err
	}
	if st.Namespace != "" && st.Namespace != s.Namespace {
		return fmt.Errorf("%w: worker %s runs in containerd namespace %s, this driver uses %s", drivers.ErrStaleHandle, hd.ID, st.Namespace, s.Namespace)
	}
	ctr, err := cli.LoadContainer(ctx, st.ContainerID)
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("%w: worker %s: container %s no longer exists", drivers.ErrStaleHandle, hd.ID, st.ContainerID)
	}
	if err != nil {
		return engineErr(s, "recovering worker "+hd.ID, err)
	}
	info, err := ctr.Info(ctx, client.WithoutRefreshedMetadata)
	if err != nil {
		return engineErr(s, "recovering worker "+hd.ID, err)
	}
	if info.Labels[drivers.LabelWorker] != hd.ID {
		return fmt.Errorf("%w: container %s is not worker %s", drivers.ErrStaleHandle, st.ContainerID, hd.ID)
	}
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("%w: worker %s (container %s) has no task: it exited", drivers.ErrStaleHandle, hd.ID, st.ContainerID)
	}
	if err != nil {
		return engineErr(s, "recovering worker "+hd.ID, err)
	}
	ts, err := task.Status(ctx)
	if err != nil {
		return engineErr(s, "recovering worker "+hd.ID, err)
	}
	if ts.Status != client.Running {
		res := exitResult(ts.ExitStatus)
		return fmt.Errorf("%w: worker %s (container %s) exited meanwhile: %s", drivers.ErrStaleHandle, hd.ID, st.ContainerID, res)
	}
	if st.Pid != 0 && task.Pid() != st.Pid {
		return fmt.Errorf("%w: worker %s runs as pid %d, its handle says %d", drivers.ErrStaleHandle, hd.ID, task.Pid(), st.Pid)
	}
	fresh := stateFromContainer(info, s.Namespace, task.Pid(), d.logDir())
	h := newHandle(hd.ID, fresh, task)
	exits, err := task.Wait(h.watchCtx)
	if err != nil {
		h.cancel()
		return engineErr(s, "recovering worker "+hd.ID, err)
	}
	if d.workers.Adopt(hd.ID, func() *handle { return h }) {
		go d.watch(h, exits)
		d.logger.Debug("worker recovered", "worker", hd.ID, "container", fresh.ContainerID, "pid", fresh.Pid)
	} else {
		h.cancel()
	}
	return nil
}

// List implements drivers.Driver. It asks containerd for the namespace's
// containers carrying golb.managed=true and all of labels. A container whose
// task exited (or has none) is listed too, so that golb hears how it ended
// from Recover and removes it.
func (d *Driver) List(ctx context.Context, labels map[string]string) ([]*drivers.Handle, error) {
	cli, s, err := d.engine()
	if err != nil {
		return nil, err
	}
	cs, err := cli.ContainerService().List(ctx, `labels."`+drivers.LabelManaged+`"==true`)
	if err != nil {
		return nil, engineErr(s, "listing workers", err)
	}
	logDir := d.logDir()
	var out []*drivers.Handle
	for _, c := range cs {
		id := c.Labels[drivers.LabelWorker]
		if id == "" || !drivers.MatchLabels(c.Labels, labels) || !d.workerID(c.ID, id) {
			continue
		}
		var pid uint32
		if ctr, err := cli.LoadContainer(ctx, c.ID); err == nil {
			if task, err := ctr.Task(ctx, nil); err == nil {
				pid = task.Pid()
			} else if !errdefs.IsNotFound(err) {
				return nil, engineErr(s, "listing workers", err)
			}
		} else if !errdefs.IsNotFound(err) {
			return nil, engineErr(s, "listing workers", err)
		} else {
			continue // deleted since the list
		}
		st := stateFromContainer(c, s.Namespace, pid, logDir)
		if st.Address == "" {
			d.logger.Warn("golb container without an address label, skipped", "container", c.ID)
			continue
		}
		out = append(out, st.handle(id))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// stateFromContainer rebuilds a worker's record from containerd alone, as
// List and Recover do after a crash.
func stateFromContainer(c containers.Container, ns string, pid uint32, logDir string) workerState {
	id := c.Labels[drivers.LabelWorker]
	log := ""
	if validWorkerID(id) { // callers check it; a path from a label is never trusted
		log = filepath.Join(logDir, id+".log")
	}
	return workerState{
		Version:     stateVersion,
		ContainerID: c.ID,
		Namespace:   ns,
		Pid:         pid,
		Image:       c.Image,
		Log:         log,
		Record: drivers.Record{
			Group:     c.Labels[drivers.LabelGroup],
			Address:   c.Labels[labelAddress],
			Labels:    c.Labels,
			StartedAt: c.CreatedAt.UTC(),
		},
	}
}

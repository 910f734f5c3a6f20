package docker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/golb/golb/drivers"
)

// handle is one worker the plugin instance tracks: a container it started, or
// one it re-attached to after a restart. Both are the same to the engine, so
// Wait, Stop and Inspect work alike for them; only the container id is kept.
type handle struct {
	id    string
	state workerState
}

func (d *Driver) lookup(id string) (*handle, error) { return d.workers.Get(id) }

// Wait implements drivers.Driver. It asks the engine to wait for the container
// to stop running, so it works the same for a container re-attached after a
// plugin restart. The result carries the end of the container's logs, which
// go with the container when golb removes it.
func (d *Driver) Wait(ctx context.Context, id string) (drivers.ExitResult, error) {
	h, err := d.lookup(id)
	if err != nil {
		return drivers.ExitResult{}, err
	}
	cli, err := d.engine()
	if err != nil {
		return drivers.ExitResult{}, err
	}
	code, err := waitExit(ctx, cli, h.state.ContainerID)
	if cerrdefs.IsNotFound(err) {
		return drivers.ExitResult{ExitCode: -1, Err: "container " + h.state.Name + " was removed outside golb"}, nil
	}
	if err != nil {
		return drivers.ExitResult{}, engineErr(cli, "waiting for worker "+id, err)
	}
	ins, err := cli.ContainerInspect(ctx, h.state.ContainerID)
	var res drivers.ExitResult
	if err != nil || ins.ContainerJSONBase == nil || ins.State == nil {
		res = exitResult(&container.State{ExitCode: code})
	} else {
		res = exitResult(ins.State)
	}
	res.Output = d.exitOutput(ctx, cli, h.state.ContainerID, ins.Config != nil && ins.Config.Tty)
	return res, nil
}

// waitExit blocks until the container is not running and returns its exit code.
func waitExit(ctx context.Context, cli *client.Client, containerID string) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	statusCh, errCh := cli.ContainerWait(ctx, containerID, container.WaitConditionNotRunning)
	select {
	case res := <-statusCh:
		if res.Error != nil && res.Error.Message != "" {
			return int(res.StatusCode), errors.New(res.Error.Message)
		}
		return int(res.StatusCode), nil
	case err := <-errCh:
		return 0, err
	}
}

// exitResult reads the engine's record of how a container ended. Docker
// reports a death by signal N as exit code 128+N, which is how the signal is
// known here.
func exitResult(st *container.State) drivers.ExitResult {
	res := drivers.ExitResult{ExitCode: st.ExitCode, OOM: st.OOMKilled, Err: st.Error}
	if st.ExitCode > 128 && st.ExitCode <= 128+64 {
		res.Signal = st.ExitCode - 128
	}
	return res
}

// Inspect implements drivers.Driver. The details name the container, so a
// user can read the worker's output with `docker logs NAME`.
func (d *Driver) Inspect(ctx context.Context, id string) (drivers.Status, error) {
	h, err := d.lookup(id)
	if err != nil {
		return drivers.Status{}, err
	}
	cli, err := d.engine()
	if err != nil {
		return drivers.Status{}, err
	}
	ins, err := cli.ContainerInspect(ctx, h.state.ContainerID)
	if cerrdefs.IsNotFound(err) {
		return drivers.Status{}, fmt.Errorf("%w: worker %s: container %s was removed outside golb", drivers.ErrNotFound, id, h.state.Name)
	}
	if err != nil {
		return drivers.Status{}, engineErr(cli, "inspecting worker "+id, err)
	}
	st := drivers.Status{
		ID:        id,
		State:     drivers.StateUnknown,
		StartedAt: h.state.StartedAt,
		Details: map[string]string{
			"container_id": h.state.ContainerID,
			"name":         h.state.Name,
			"image":        h.state.Image,
			"address":      h.state.Address,
			"logs":         "docker logs " + h.state.Name,
		},
	}
	if ins.ContainerJSONBase == nil || ins.State == nil {
		return st, nil
	}
	cs := ins.State
	st.Details["status"] = string(cs.Status)
	if t := parseTime(cs.StartedAt); !t.IsZero() {
		st.StartedAt = t
	}
	switch {
	case cs.Running || cs.Paused || cs.Restarting:
		st.State = drivers.StateRunning
	case cs.Status == container.StateExited || cs.Status == container.StateDead || cs.Status == container.StateRemoving:
		res := exitResult(cs)
		res.Output = d.exitOutput(ctx, cli, h.state.ContainerID, ins.Config != nil && ins.Config.Tty)
		st.State, st.ExitedAt, st.Exit = drivers.StateExited, parseTime(cs.FinishedAt), &res
	}
	return st, nil
}

// Stop implements drivers.Driver: the signal goes to the container's main
// process, then SIGKILL after timeout. (The Engine API's stop call takes its
// signal only from API 1.42 on, and Docker 20.10 speaks 1.41.)
func (d *Driver) Stop(ctx context.Context, id string, signal string, timeout time.Duration) error {
	h, err := d.lookup(id)
	if err != nil {
		return err
	}
	sig, err := parseSignal(signal)
	if err != nil {
		return err
	}
	cli, err := d.engine()
	if err != nil {
		return err
	}
	cid := h.state.ContainerID
	running, err := isRunning(ctx, cli, cid)
	if err != nil || !running {
		return err
	}
	if err := kill(ctx, cli, cid, sig); err != nil {
		return engineErr(cli, "stopping worker "+id, err)
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	_, werr := waitExit(wctx, cli, cid)
	cancel()
	if werr == nil || cerrdefs.IsNotFound(werr) {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if !errors.Is(werr, context.DeadlineExceeded) {
		return engineErr(cli, "stopping worker "+id, werr)
	}
	d.logger.Warn("worker ignored signal, killing it", "worker", id, "signal", sig, "timeout", timeout.String())
	if err := kill(ctx, cli, cid, "SIGKILL"); err != nil {
		return engineErr(cli, "killing worker "+id, err)
	}
	if _, err := waitExit(ctx, cli, cid); err != nil && !cerrdefs.IsNotFound(err) {
		return engineErr(cli, "killing worker "+id, err)
	}
	return nil
}

// kill signals a container; one that already stopped is not an error.
func kill(ctx context.Context, cli *client.Client, containerID, sig string) error {
	err := cli.ContainerKill(ctx, containerID, sig)
	if err == nil || cerrdefs.IsNotFound(err) {
		return nil
	}
	if cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "is not running") {
		return nil
	}
	return err
}

func isRunning(ctx context.Context, cli *client.Client, containerID string) (bool, error) {
	ins, err := cli.ContainerInspect(ctx, containerID)
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, engineErr(cli, "inspecting container "+shortID(containerID), err)
	}
	return ins.ContainerJSONBase != nil && ins.State != nil && ins.State.Running, nil
}

// Destroy implements drivers.Driver: the container is removed, killed first if
// it still runs. A worker this instance does not track (not recovered yet) is
// found by its container name, and removed only if golb's labels say it is
// that worker.
func (d *Driver) Destroy(ctx context.Context, id string) error {
	cli, err := d.engine()
	if err != nil {
		return err
	}
	var cid string
	if h, err := d.lookup(id); err == nil {
		cid = h.state.ContainerID
	} else {
		ins, err := cli.ContainerInspect(ctx, containerName(id))
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return engineErr(cli, "destroying worker "+id, err)
		}
		if ins.Config == nil || ins.Config.Labels[drivers.LabelManaged] != "true" || ins.Config.Labels[drivers.LabelWorker] != id {
			d.logger.Warn("not removing a container golb did not create", "worker", id, "container", containerName(id))
			return nil
		}
		cid = ins.ID
	}
	// RemoveVolumes: the anonymous volumes of an image's VOLUME go with
	// their container (named ones stay), not one left per worker.
	if err := cli.ContainerRemove(ctx, cid, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return engineErr(cli, "destroying worker "+id, err)
	}
	d.workers.Remove(id)
	d.logger.Debug("worker destroyed", "worker", id, "container", shortID(cid))
	return nil
}

// Recover implements drivers.Driver: it re-attaches to the container named in
// the handle, if it still runs and still is that worker. A container that
// exited meanwhile (or was created and never started) is refused with how it
// ended, so that golb reports it, removes it and starts another.
func (d *Driver) Recover(ctx context.Context, hd *drivers.Handle) error {
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
	cli, err := d.engine()
	if err != nil {
		return err
	}
	ins, err := cli.ContainerInspect(ctx, st.ContainerID)
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("%w: worker %s: container %s no longer exists", drivers.ErrStaleHandle, hd.ID, shortID(st.ContainerID))
	}
	if err != nil {
		return engineErr(cli, "recovering worker "+hd.ID, err)
	}
	if ins.Config == nil || ins.Config.Labels[drivers.LabelWorker] != hd.ID {
		return fmt.Errorf("%w: container %s is not worker %s", drivers.ErrStaleHandle, shortID(st.ContainerID), hd.ID)
	}
	if ins.ContainerJSONBase == nil || ins.State == nil {
		return fmt.Errorf("%w: worker %s (container %s) has no state", drivers.ErrStaleHandle, hd.ID, shortID(st.ContainerID))
	}
	if cs := ins.State; !cs.Running {
		if cs.Status == container.StateCreated {
			return fmt.Errorf("%w: worker %s (container %s) was created but never started", drivers.ErrStaleHandle, hd.ID, shortID(st.ContainerID))
		}
		res := exitResult(cs)
		res.Output = d.exitOutput(ctx, cli, st.ContainerID, ins.Config.Tty)
		return fmt.Errorf("%w: worker %s (container %s) exited meanwhile: %s", drivers.ErrStaleHandle, hd.ID, shortID(st.ContainerID), res)
	}
	fresh := stateFromInspect(ins)
	if d.workers.Adopt(hd.ID, func() *handle { return &handle{id: hd.ID, state: fresh} }) {
		d.logger.Debug("worker recovered", "worker", hd.ID, "container", shortID(fresh.ContainerID))
	}
	return nil
}

// List implements drivers.Driver. It asks the engine for the containers,
// running or not, carrying golb.managed=true and all of labels. One that
// exited while no plugin watched it (golb was down), or that was created and
// never started, is listed too, so that golb hears how it ended from Recover
// and removes it: the engine never removes it by itself.
func (d *Driver) List(ctx context.Context, labels map[string]string) ([]*drivers.Handle, error) {
	cli, err := d.engine()
	if err != nil {
		return nil, err
	}
	args := filters.NewArgs(filters.Arg("label", drivers.LabelManaged+"=true"))
	for k, v := range labels {
		args.Add("label", k+"="+v)
	}
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: args})
	if err != nil {
		return nil, engineErr(cli, "listing workers", err)
	}
	var out []*drivers.Handle
	for _, c := range cs {
		id := c.Labels[drivers.LabelWorker]
		if id == "" {
			continue
		}
		ins, err := cli.ContainerInspect(ctx, c.ID)
		if cerrdefs.IsNotFound(err) {
			continue // removed since the list
		}
		if err != nil {
			return nil, engineErr(cli, "listing workers", err)
		}
		if ins.ContainerJSONBase == nil || ins.State == nil || ins.State.Status == container.StateRemoving {
			continue
		}
		st := stateFromInspect(ins)
		if st.Address == "" {
			// golb publishes one port on every container: not one of its own.
			d.logger.Warn("golb-labelled container without a published port, skipped", "container", shortID(c.ID), "worker", id)
			continue
		}
		out = append(out, st.handle(id))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// parseSignal reads a stop signal (drivers.ParseSignal) and gives it as the
// Engine API takes it: by name, "SIGTERM".
func parseSignal(s string) (string, error) {
	sig, err := drivers.ParseSignal(s)
	if err != nil {
		return "", err
	}
	return drivers.SignalName(sig), nil
}

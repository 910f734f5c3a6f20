package containerd

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/proc"
)

// runtimeName is the shim golb's tasks run under.
const runtimeName = "io.containerd.runc.v2"

// Start implements drivers.Driver: a container on the host network with
// golb's labels, its output in DataDir/logs/ID.log (written by the shim, so
// it outlives this plugin), and its task started. A failed start deletes
// what it made.
func (d *Driver) Start(ctx context.Context, spec drivers.WorkerSpec) (*drivers.Handle, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	var c groupConfig
	if err := spec.DecodeConfig(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", drivers.ErrBadConfig, err)
	}
	if c.Command != nil && (len(c.Command) == 0 || c.Command[0] == "") {
		return nil, fmt.Errorf("%w: starting worker %s: command is empty", drivers.ErrBadConfig, spec.ID)
	}
	if err := checkStrings(spec, c); err != nil {
		return nil, err
	}
	bind := spec.BindAddr
	if bind == "" {
		bind = "127.0.0.1"
	}
	if ip := net.ParseIP(bind); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%w: starting worker %s: bind address %q is not a loopback address: containerd workers share the host's network and bind 127.0.0.1 only", drivers.ErrBadConfig, spec.ID, bind)
	}
	var ref string
	if c.Image != "" {
		var err error
		if ref, err = normalizeRef(c.Image); err != nil {
			return nil, err
		}
	}
	cli, s, err := d.engine()
	if err != nil {
		return nil, err
	}
	if _, err := daemonVersion(ctx, cli, s); err != nil {
		return nil, fmt.Errorf("starting worker %s: %w", spec.ID, err)
	}
	if err := proc.PortFree(bind, spec.Port); err != nil {
		return nil, fmt.Errorf("%w: starting worker %s: %s:%d: %v", drivers.ErrPortInUse, spec.ID, bind, spec.Port, err)
	}
	if err := d.workers.Reserve(spec.ID); err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			d.workers.Release(spec.ID)
		}
	}()

	var img client.Image
	if c.Image == "" {
		img, _, err = d.workerImage(ctx, cli, s)
	} else {
		img, err = findImage(ctx, cli, s, c.Image, ref)
	}
	if err != nil {
		return nil, fmt.Errorf("starting worker %s: %w", spec.ID, err)
	}
	logDir := d.logDir()
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("starting worker %s: creating log directory: %w", spec.ID, err)
	}
	st := workerState{
		Version:     stateVersion,
		ContainerID: containerID(spec.ID),
		Namespace:   s.Namespace,
		Image:       img.Name(),
		Log:         filepath.Join(logDir, spec.ID+".log"),
		Record: drivers.Record{
			Group:     spec.Group,
			Address:   net.JoinHostPort(drivers.DialHost(bind), strconv.Itoa(spec.Port)),
			StartedAt: time.Now().UTC(),
		},
	}
	st.Labels = spec.AllLabels()
	st.Labels[labelAddress] = st.Address

	ctr, err := cli.NewContainer(ctx, st.ContainerID,
		client.WithImage(img),
		client.WithSnapshotter(snapshotter),
		client.WithNewSnapshot(st.ContainerID, img),
		client.WithRuntime(runtimeName, runcOptions(s)),
		client.WithNewSpec(specOpts(img, spec, c, bind, s, st.ContainerID)...),
		client.WithContainerLabels(st.Labels),
	)
	if err != nil {
		if errdefs.IsAlreadyExists(err) {
			return nil, fmt.Errorf("%w: starting worker %s: a container %s already exists in namespace %s: remove it with `ctr -n %s tasks kill -s SIGKILL %s; ctr -n %s containers rm %s`",
				drivers.ErrBadConfig, spec.ID, st.ContainerID, s.Namespace, s.Namespace, st.ContainerID, s.Namespace, st.ContainerID)
		}
		if ctx.Err() != nil {
			// The daemon may have created it before the cancel reached it.
			d.removeContainer(s, st.ContainerID)
		}
		return nil, engineErr(s, "starting worker "+spec.ID+": creating container", err)
	}
	h, err := d.startTask(ctx, cli, s, ctr, spec.ID, &st)
	if err != nil {
		d.removeContainer(s, st.ContainerID)
		return nil, err
	}
	d.workers.Commit(spec.ID, h)
	committed = true
	d.logger.Debug("worker started", "worker", spec.ID, "container", st.ContainerID, "pid", st.Pid, "image", st.Image, "address", st.Address)
	return st.handle(spec.ID), nil
}

// startTask creates and starts the container's task, waiting on its exit
// from before the start so that no exit can be missed.
func (d *Driver) startTask(ctx context.Context, cli *client.Client, s settings, ctr client.Container, id string, st *workerState) (*handle, error) {
	task, err := ctr.NewTask(ctx, cio.LogFile(st.Log))
	if err != nil {
		return nil, engineErr(s, "starting worker "+id+": creating task", err)
	}
	h := newHandle(id, *st, task)
	exits, err := task.Wait(h.watchCtx)
	if err != nil {
		h.cancel()
		return nil, engineErr(s, "starting worker "+id+": waiting on task", err)
	}
	if err := task.Start(ctx); err != nil {
		h.cancel()
		return nil, engineErr(s, "starting worker "+id+": starting task", err)
	}
	st.Pid = task.Pid()
	h.state.Pid = st.Pid
	go d.watch(h, exits)
	return h, nil
}

// checkStrings refuses environment variables and arguments no process can
// be given: a name with '=' or NUL, a NUL anywhere.
func checkStrings(spec drivers.WorkerSpec, c groupConfig) error {
	for _, env := range []map[string]string{c.Env, spec.Env} {
		for k, v := range env {
			if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
				return fmt.Errorf("%w: starting worker %s: invalid environment variable %q", drivers.ErrBadConfig, spec.ID, k)
			}
		}
	}
	for _, arg := range c.Command {
		if strings.ContainsRune(arg, 0) {
			return fmt.Errorf("%w: starting worker %s: command argument %q holds a NUL byte", drivers.ErrBadConfig, spec.ID, arg)
		}
	}
	return nil
}

// runcOptions are the shim's runc options: runc_root when set.
func runcOptions(s settings) any {
	if s.RuncRoot == "" {
		return nil
	}
	return &options.Options{Root: s.RuncRoot}
}

// specOpts make the task's OCI spec: the image's config, the host's network
// (and its hosts and resolv.conf), golb's environment, the config's command,
// and the cgroup under cgroup_parent.
func specOpts(img client.Image, spec drivers.WorkerSpec, c groupConfig, bind string, s settings, cid string) []oci.SpecOpts {
	opts := []oci.SpecOpts{
		oci.WithImageConfig(img),
		oci.WithHostNamespace(specs.NetworkNamespace),
		oci.WithHostHostsFile,
		oci.WithHostResolvconf,
		oci.WithEnv(containerEnv(spec, c.Env, bind)),
	}
	if len(c.Command) > 0 {
		opts = append(opts, oci.WithProcessArgs(c.Command...))
	}
	if s.CgroupParent != "" {
		opts = append(opts, oci.WithCgroup(s.CgroupParent+"/"+cid))
	}
	return opts
}

// containerEnv is the worker's environment: the config's env, the spec's,
// then golb's own settings, one value per name, sorted. Nothing of golb's own
// environment goes in.
func containerEnv(spec drivers.WorkerSpec, extra map[string]string, bind string) []string {
	env := map[string]string{}
	for k, v := range extra {
		env[k] = v
	}
	for k, v := range spec.Env {
		env[k] = v
	}
	env["PORT"] = strconv.Itoa(spec.Port)
	env["BIND_ADDR"] = bind // host networking: the worker binds the host's address
	env["GOLB_WORKER_ID"] = spec.ID
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// removeContainer deletes a container (its task killed first) and its
// snapshot, with a fresh context so that a cancelled Start still leaves
// nothing behind.
func (d *Driver) removeContainer(s settings, cid string) {
	cli, _, err := d.engine()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := deleteContainer(ctx, cli, cid); err != nil {
		d.logger.Warn("removing container", "container", cid, "namespace", s.Namespace, "err", err)
	}
}

// deleteContainer kills and deletes the container's task, then deletes the
// container with its snapshot. A container already gone is not an error.
func deleteContainer(ctx context.Context, cli *client.Client, cid string) error {
	ctr, err := cli.LoadContainer(ctx, cid)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := deleteTask(ctx, ctr); err != nil {
		return err
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("deleting container %s: %w", cid, err)
	}
	return nil
}

// deleteTask kills the container's task if it runs and deletes it.
func deleteTask(ctx context.Context, ctr client.Container) error {
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading the task of %s: %w", ctr.ID(), err)
	}
	if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("deleting the task of %s: %w", ctr.ID(), err)
	}
	return nil
}

// Package docker is golb's built-in driver that runs workers as Docker
// containers through the Engine API, with no registry: the worker image is
// built in-process around golb's own binary and loaded into the engine, and a
// group may instead run any local image. Containers carry golb's labels, so a
// new plugin instance finds and re-attaches them after any crash.
package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/golb/golb/drivers"
)

// Name is the driver's name in config files.
const Name = "docker"

// Version of this driver.
const Version = "0.1.0"

var info = drivers.Info{
	Name:            Name,
	Version:         Version,
	ProtocolVersion: drivers.ProtocolVersion,
	Capabilities:    drivers.Capabilities{Signals: true, Recover: true, Isolation: "container"},
	ConfigSchema: []drivers.Attribute{
		{Name: "image", Type: drivers.TypeString, Doc: "a local image (name:tag) of an HTTP service that listens on $PORT; never pulled: docker load or docker build it first; default: golb's worker image, built from worker_binary"},
		{Name: "command", Type: drivers.TypeStringList, Doc: "program and arguments, replacing the image's entrypoint and command; default: the image's"},
		{Name: "env", Type: drivers.TypeStringMap, Doc: "extra environment variables; PORT, BIND_ADDR and GOLB_WORKER_ID always win"},
	},
	SettingsSchema: []drivers.Attribute{
		{Name: "host", Type: drivers.TypeString, Doc: "Docker Engine API address, e.g. unix:///var/run/docker.sock or tcp://127.0.0.1:2375; default: $DOCKER_HOST, else the local socket"},
		{Name: "worker_binary", Type: drivers.TypeString, Doc: "Linux executable that runs the built-in worker as `BINARY worker`, put in the worker image; default: this golb binary"},
	},
}

// groupConfig is a group's `config { }` block.
type groupConfig struct {
	Image   string            `json:"image"`
	Command []string          `json:"command"`
	Env     map[string]string `json:"env"`
}

// settings is the `driver "docker" { }` block.
type settings struct {
	Host         string `json:"host"`
	WorkerBinary string `json:"worker_binary"`
}

// Driver runs workers as Docker containers.
type Driver struct {
	logger *slog.Logger

	mu       sync.Mutex
	settings settings
	cli      *client.Client // created on first use from settings
	workers  drivers.Tracked[*handle]

	imgMu sync.Mutex // one image build/load at a time
	img   builtImage // the last worker image ensured

	// portCheck tells whether host:port can be bound; tests replace it to
	// reach the daemon's own port conflict.
	portCheck func(host string, port int) error
}

// New returns a Docker driver. It talks to $DOCKER_HOST (or the local socket)
// until SetConfig names another host.
func New(logger *slog.Logger) *Driver {
	if logger == nil {
		logger = slog.Default()
	}
	return &Driver{
		logger:    logger,
		portCheck: portFree,
	}
}

// Info implements drivers.Driver.
func (d *Driver) Info(context.Context) (drivers.Info, error) { return info, nil }

// SetConfig implements drivers.Configurer. A worker_binary that does not exist
// is refused here, not at the first Start. The driver keeps no files: the
// engine holds images, containers, labels and logs, so DataDir is unused.
func (d *Driver) SetConfig(_ context.Context, cfg drivers.PluginConfig) error {
	var s settings
	if len(cfg.Settings) > 0 && string(cfg.Settings) != "null" {
		if err := json.Unmarshal(cfg.Settings, &s); err != nil {
			return fmt.Errorf("%w: decoding docker driver settings: %v", drivers.ErrBadConfig, err)
		}
	}
	if s.WorkerBinary != "" {
		if st, err := os.Stat(s.WorkerBinary); err != nil || st.IsDir() {
			return fmt.Errorf("%w: docker driver worker_binary %q is not a file: build golb for Linux and name its path", drivers.ErrBadConfig, s.WorkerBinary)
		}
	}
	cli, err := newClient(s.Host)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cli != nil {
		d.cli.Close()
	}
	d.cli = cli
	d.settings = s
	return nil
}

// engine returns the Engine API client, creating it from $DOCKER_HOST on
// first use when SetConfig was never called.
func (d *Driver) engine() (*client.Client, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cli == nil {
		cli, err := newClient(d.settings.Host)
		if err != nil {
			return nil, err
		}
		d.cli = cli
	}
	return d.cli, nil
}

// workerBinary is the binary that goes into the worker image.
func (d *Driver) workerBinary() (string, error) {
	d.mu.Lock()
	bin := d.settings.WorkerBinary
	d.mu.Unlock()
	if bin != "" {
		return bin, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding the golb binary for the worker image: %w", err)
	}
	return exe, nil
}

// Fingerprint implements drivers.Driver: the engine's version, or one line on
// why it cannot be reached and how to fix that.
func (d *Driver) Fingerprint(ctx context.Context) (drivers.Fingerprint, error) {
	cli, err := d.engine()
	if err != nil {
		return drivers.Fingerprint{Healthy: false, Detail: oneLine(err.Error())}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := cli.ServerVersion(ctx)
	if err != nil {
		return drivers.Fingerprint{
			Healthy: false,
			Detail:  oneLine(engineErr(cli, "fingerprinting docker", err).Error()),
			Attrs:   map[string]string{"host": cli.DaemonHost()},
		}, nil
	}
	attrs := map[string]string{
		"host":        cli.DaemonHost(),
		"version":     v.Version,
		"api_version": v.APIVersion,
		"client_api":  cli.ClientVersion(),
		"os_arch":     v.Os + "/" + v.Arch,
	}
	if bin, err := d.workerBinary(); err == nil {
		attrs["worker_binary"] = bin
	}
	return drivers.Fingerprint{
		Healthy: true,
		Detail:  fmt.Sprintf("Docker %s (API %s) at %s", v.Version, v.APIVersion, cli.DaemonHost()),
		Attrs:   attrs,
	}, nil
}

// ValidateConfig implements drivers.Driver. When the engine is reachable it
// also checks that a named image is present locally.
func (d *Driver) ValidateConfig(ctx context.Context, raw json.RawMessage) ([]drivers.Diagnostic, error) {
	var c groupConfig
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &c); err != nil {
			return []drivers.Diagnostic{{Summary: "invalid config block", Detail: err.Error()}}, nil
		}
	}
	var diags []drivers.Diagnostic
	if c.Command != nil && (len(c.Command) == 0 || c.Command[0] == "") {
		diags = append(diags, drivers.Diagnostic{Attribute: "command", Summary: "command is empty", Detail: "give the program and its arguments, e.g. [\"/app\", \"-v\"], or remove command to use the image's entrypoint"})
	}
	for k := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			diags = append(diags, drivers.Diagnostic{Attribute: "env", Summary: fmt.Sprintf("invalid environment variable name %q", k)})
		}
	}
	if c.Image != "" {
		if _, err := name.ParseReference(c.Image); err != nil {
			diags = append(diags, drivers.Diagnostic{Attribute: "image", Summary: fmt.Sprintf("invalid image reference %q", c.Image), Detail: "use name:tag, e.g. myapp:1.2"})
		} else if cli, err := d.engine(); err == nil {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := cli.ImageInspect(cctx, c.Image)
			cancel()
			if cerrdefs.IsNotFound(err) {
				diags = append(diags, drivers.Diagnostic{Attribute: "image", Summary: fmt.Sprintf("image %q is not in the local Docker engine", c.Image), Detail: missingImageFix(c.Image)})
			}
			// Any other error (engine down) is for Fingerprint to report.
		}
	}
	return diags, nil
}

// containerName is the name of a worker's container.
func containerName(id string) string { return "golb-" + id }

// Start implements drivers.Driver.
func (d *Driver) Start(ctx context.Context, spec drivers.WorkerSpec) (*drivers.Handle, error) {
	if err := spec.Validate(); err != nil { // ids are valid container names too
		return nil, err
	}
	var c groupConfig
	if err := spec.DecodeConfig(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", drivers.ErrBadConfig, err)
	}
	if c.Command != nil && (len(c.Command) == 0 || c.Command[0] == "") {
		return nil, fmt.Errorf("%w: starting worker %s: command is empty", drivers.ErrBadConfig, spec.ID)
	}
	cli, err := d.engine()
	if err != nil {
		return nil, err
	}
	hostIP, err := loopback(spec)
	if err != nil {
		return nil, err
	}
	if err := d.portCheck(hostIP, spec.Port); err != nil {
		return nil, fmt.Errorf("%w: starting worker %s: %s:%d: %v", drivers.ErrPortInUse, spec.ID, hostIP, spec.Port, err)
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

	ref := c.Image
	if ref == "" {
		if ref, _, err = d.workerImage(ctx); err != nil {
			return nil, fmt.Errorf("starting worker %s: %w", spec.ID, err)
		}
	} else if _, err := cli.ImageInspect(ctx, ref); err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("%w: starting worker %s: image %q is not in the local Docker engine: %s", drivers.ErrBadConfig, spec.ID, ref, missingImageFix(ref))
		}
		return nil, engineErr(cli, "starting worker "+spec.ID, err)
	}

	port := nat.Port(strconv.Itoa(spec.Port) + "/tcp")
	cfg := &container.Config{
		Image:        ref,
		Env:          containerEnv(spec, c.Env),
		Labels:       spec.AllLabels(),
		ExposedPorts: nat.PortSet{port: struct{}{}},
	}
	if len(c.Command) > 0 {
		// Replacing the entrypoint also drops the image's command.
		cfg.Entrypoint = c.Command
	}
	hostCfg := &container.HostConfig{
		PortBindings:  nat.PortMap{port: {{HostIP: hostIP, HostPort: strconv.Itoa(spec.Port)}}},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
	}
	name := containerName(spec.ID)
	created, err := cli.ContainerCreate(ctx, cfg, hostCfg, nil, nil, name)
	if err != nil {
		if cerrdefs.IsConflict(err) {
			return nil, fmt.Errorf("%w: starting worker %s: a container named %s already exists: remove it with `docker rm -f %s`", drivers.ErrBadConfig, spec.ID, name, name)
		}
		if ctx.Err() != nil {
			// The engine may have created it before the cancel reached it.
			d.remove(name)
		}
		return nil, startErr(cli, spec, err)
	}
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		d.remove(created.ID)
		return nil, startErr(cli, spec, err)
	}
	ins, err := cli.ContainerInspect(ctx, created.ID)
	if err != nil {
		d.remove(created.ID)
		return nil, engineErr(cli, "starting worker "+spec.ID, err)
	}
	st := stateFromInspect(ins)
	d.workers.Commit(spec.ID, &handle{id: spec.ID, state: st})
	committed = true
	d.logger.Debug("worker started", "worker", spec.ID, "container", shortID(created.ID), "image", ref, "address", st.Address)
	return st.handle(spec.ID), nil
}

// loopback is the host address the worker's port is published on: the
// spec's BindAddr (default 127.0.0.1), which must be a loopback address, so
// that a worker is reached through golb's balancer only.
func loopback(spec drivers.WorkerSpec) (string, error) {
	host := spec.BindAddr
	if host == "" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return "", fmt.Errorf("%w: starting worker %s: bind address %q is not a loopback address: docker workers publish their port on 127.0.0.1 only", drivers.ErrBadConfig, spec.ID, host)
	}
	return host, nil
}

// startErr maps a failed create or start: a port the daemon could not bind,
// or anything else from the engine.
func startErr(cli *client.Client, spec drivers.WorkerSpec, err error) error {
	msg := err.Error()
	if strings.Contains(msg, "port is already allocated") || strings.Contains(msg, "address already in use") {
		return fmt.Errorf("%w: starting worker %s: port %d: %s", drivers.ErrPortInUse, spec.ID, spec.Port, oneLine(msg))
	}
	return engineErr(cli, "starting worker "+spec.ID, err)
}

// remove force-removes a container (by id or name), with a fresh context so
// that a cancelled Start still leaves nothing behind.
func (d *Driver) remove(ref string) {
	cli, err := d.engine()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cli.ContainerRemove(ctx, ref, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
		d.logger.Warn("removing container", "container", ref, "err", err)
	}
}

// containerEnv is the worker's environment: the config's env, the spec's, then
// golb's own settings, one value per name. Unlike a process worker, nothing
// of golb's own environment goes in.
func containerEnv(spec drivers.WorkerSpec, extra map[string]string) []string {
	env := map[string]string{}
	for k, v := range extra {
		env[k] = v
	}
	for k, v := range spec.Env {
		env[k] = v
	}
	env["PORT"] = strconv.Itoa(spec.Port)
	// Traffic arrives through the bridge, not on the container's loopback.
	env["BIND_ADDR"] = "0.0.0.0"
	env["GOLB_WORKER_ID"] = spec.ID
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func missingImageFix(ref string) string {
	return fmt.Sprintf("golb never pulls (there is no registry): load it with `docker load -i FILE` or build it with `docker build -t %s .`", ref)
}

// portFree reports whether host:port can be bound right now.
func portFree(host string, port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return l.Close()
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

var (
	_ drivers.Driver     = (*Driver)(nil)
	_ drivers.Configurer = (*Driver)(nil)
)

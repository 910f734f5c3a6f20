// Package bwrap is an out-of-tree golb driver that runs each worker inside a
// bubblewrap (bwrap) sandbox: a read-only view of the system directories, a
// private /tmp, its own PID, IPC and UTS namespaces, and the host network so it
// can serve on 127.0.0.1:$PORT. It is built against golb's driver SDK alone and
// is an example of how to write, test and ship a driver of your own.
package bwrap

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/proc"
)

// Name is the driver's name in config files (`driver = "bwrap"`).
const Name = "bwrap"

// Version of this driver.
const Version = "0.1.0"

var info = drivers.Info{
	Name:            Name,
	Version:         Version,
	ProtocolVersion: drivers.ProtocolVersion,
	Capabilities:    drivers.Capabilities{Signals: true, Recover: true, Isolation: "namespace"},
	ConfigSchema: []drivers.Attribute{
		{Name: "command", Type: drivers.TypeStringList, Doc: "program and arguments of an HTTP service that listens on $PORT, e.g. [\"/srv/app\", \"-v\"]; the program itself is bound read-only into the sandbox; default: golb's built-in worker, as golb sends it (WorkerSpec.WorkerCommand)"},
		{Name: "env", Type: drivers.TypeStringMap, Doc: "extra environment variables; default: none beyond PATH, HOME=/tmp, TMPDIR=/tmp and golb's PORT, BIND_ADDR and GOLB_*"},
		{Name: "binds", Type: drivers.TypeStringList, Doc: "extra absolute host paths bound read-only at the same place; default: none beyond /usr, /etc and the /bin, /sbin, /lib* links"},
	},
	SettingsSchema: []drivers.Attribute{
		{Name: "bwrap", Type: drivers.TypeString, Doc: "path of the bwrap program; default: bwrap on PATH"},
	},
}

// groupConfig is a group's `config { }` block.
type groupConfig struct {
	Command []string          `json:"command"`
	Env     map[string]string `json:"env"`
	Binds   []string          `json:"binds"`
}

// settings is the `driver "bwrap" { }` block.
type settings struct {
	Bwrap string `json:"bwrap"`
}

// Driver runs workers in bubblewrap sandboxes.
type Driver struct {
	logger *slog.Logger

	mu       sync.Mutex
	dataDir  string
	settings settings
	workers  drivers.Tracked[*handle]
}

// New returns a bwrap driver. Until SetConfig names a data directory it keeps
// its files under the system temp directory.
func New(logger *slog.Logger) *Driver {
	if logger == nil {
		logger = slog.Default()
	}
	return &Driver{
		logger:  logger,
		dataDir: filepath.Join(os.TempDir(), "golb-bwrap-driver"),
	}
}

// Info implements drivers.Driver.
func (d *Driver) Info(context.Context) (drivers.Info, error) { return info, nil }

// SetConfig implements drivers.Configurer.
func (d *Driver) SetConfig(_ context.Context, cfg drivers.PluginConfig) error {
	var s settings
	if len(cfg.Settings) > 0 && string(cfg.Settings) != "null" {
		if err := json.Unmarshal(cfg.Settings, &s); err != nil {
			return fmt.Errorf("%w: decoding bwrap driver settings: %v", drivers.ErrBadConfig, err)
		}
	}
	if s.Bwrap != "" {
		if _, err := exec.LookPath(s.Bwrap); err != nil {
			return fmt.Errorf("%w: bwrap setting: program %q not found", drivers.ErrBadConfig, s.Bwrap)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if cfg.DataDir != "" {
		d.dataDir = cfg.DataDir
	}
	d.settings = s
	return nil
}

// bwrapPath finds the bwrap program; its error is the one-line hint that
// Fingerprint shows.
func (d *Driver) bwrapPath() (string, error) {
	d.mu.Lock()
	p := d.settings.Bwrap
	d.mu.Unlock()
	if p == "" {
		p = "bwrap"
	}
	path, err := exec.LookPath(p)
	if err != nil {
		return "", fmt.Errorf("%s not found on PATH: install bubblewrap (apt-get install bubblewrap) or set bwrap in the driver \"bwrap\" block", p)
	}
	return path, nil
}

// Fingerprint implements drivers.Driver: it reports bwrap's version and runs a
// throw-away sandbox with the same namespaces a worker gets, since an
// installed bwrap may still be refused namespaces by the kernel.
func (d *Driver) Fingerprint(ctx context.Context) (drivers.Fingerprint, error) {
	path, err := d.bwrapPath()
	if err != nil {
		return drivers.Fingerprint{Healthy: false, Detail: err.Error()}, nil
	}
	version, err := bwrapVersion(ctx, path)
	if err != nil {
		return drivers.Fingerprint{Healthy: false, Detail: err.Error()}, nil
	}
	attrs := map[string]string{"bwrap": path, "version": version, "uid": strconv.Itoa(os.Getuid())}
	if err := probe(ctx, path); err != nil {
		return drivers.Fingerprint{Healthy: false, Detail: fmt.Sprintf("%s cannot create a sandbox here: %v", version, err), Attrs: attrs}, nil
	}
	return drivers.Fingerprint{Healthy: true, Detail: version, Attrs: attrs}, nil
}

// ValidateConfig implements drivers.Driver.
func (d *Driver) ValidateConfig(_ context.Context, raw json.RawMessage) ([]drivers.Diagnostic, error) {
	var c groupConfig
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &c); err != nil {
			return []drivers.Diagnostic{{Summary: "invalid config block", Detail: err.Error()}}, nil
		}
	}
	return c.diagnostics(), nil
}

// diagnostics lists every problem of a group's config block.
func (c groupConfig) diagnostics() []drivers.Diagnostic {
	var diags []drivers.Diagnostic
	switch {
	case c.Command == nil:
		// The built-in worker: golb sends its command with each spec.
	case len(c.Command) == 0 || c.Command[0] == "":
		diags = append(diags, drivers.Diagnostic{Attribute: "command", Summary: "command is empty", Detail: "give the program and its arguments, e.g. [\"/usr/local/bin/golb\", \"worker\"]"})
	default:
		if _, err := exec.LookPath(c.Command[0]); err != nil {
			diags = append(diags, drivers.Diagnostic{Attribute: "command", Summary: fmt.Sprintf("program %q not found", c.Command[0]), Detail: "use an absolute path or a program on PATH"})
		}
	}
	for _, b := range c.Binds {
		if !filepath.IsAbs(b) {
			diags = append(diags, drivers.Diagnostic{Attribute: "binds", Summary: fmt.Sprintf("bind %q is not an absolute path", b), Detail: "each bind is a host path mounted read-only at the same path, e.g. \"/srv/assets\""})
		} else if _, err := os.Stat(b); err != nil {
			diags = append(diags, drivers.Diagnostic{Attribute: "binds", Summary: fmt.Sprintf("bind %q does not exist", b), Detail: "bind only paths that exist on the host"})
		}
	}
	for k := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			diags = append(diags, drivers.Diagnostic{Attribute: "env", Summary: fmt.Sprintf("invalid environment variable name %q", k), Detail: "names must be non-empty and hold no \"=\""})
		}
	}
	return diags
}

// store holds the workers' state files, data_dir/workers/ID.json, and next
// to each bwrap's status file, ID.status.
func (d *Driver) store() proc.Store {
	d.mu.Lock()
	defer d.mu.Unlock()
	return proc.Store{Dir: filepath.Join(d.dataDir, "workers")}
}

// logDir holds the workers' output, data_dir/logs/ID.std{out,err}.log.
func (d *Driver) logDir() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return filepath.Join(d.dataDir, "logs")
}

// Start implements drivers.Driver.
func (d *Driver) Start(ctx context.Context, spec drivers.WorkerSpec) (*drivers.Handle, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	var c groupConfig
	if err := spec.DecodeConfig(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", drivers.ErrBadConfig, err)
	}
	if diags := c.diagnostics(); len(diags) > 0 {
		return nil, fmt.Errorf("%w: starting worker %s: %v", drivers.ErrBadConfig, spec.ID, diags[0])
	}
	command := c.Command
	if len(command) == 0 {
		command = spec.WorkerCommand // golb's built-in worker, when the group runs it
	}
	if len(command) == 0 {
		return nil, fmt.Errorf("%w: starting worker %s: no command, and golb sent no built-in worker command (an older golb): give config { command = [...] }", drivers.ErrBadConfig, spec.ID)
	}
	program, err := exec.LookPath(command[0])
	if err == nil {
		program, err = filepath.Abs(program)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: starting worker %s: program %q: %v", drivers.ErrBadConfig, spec.ID, command[0], err)
	}
	bwrap, err := d.bwrapPath()
	if err != nil {
		return nil, fmt.Errorf("%w: starting worker %s: %v", drivers.ErrRuntimeUnavailable, spec.ID, err)
	}
	bind := spec.BindAddr
	if bind == "" {
		bind = "127.0.0.1"
	}
	if err := proc.PortFree(bind, spec.Port); err != nil {
		return nil, fmt.Errorf("%w: starting worker %s: %s:%d: %v", drivers.ErrPortInUse, spec.ID, bind, spec.Port, err)
	}

	// Reserve the id, so that two concurrent Starts of one id cannot both run.
	if err := d.workers.Reserve(spec.ID); err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			d.workers.Release(spec.ID)
		}
	}()

	store := d.store()
	stdout, stderr, err := proc.OpenLogs(d.logDir(), spec.ID)
	if err != nil {
		return nil, fmt.Errorf("starting worker %s: %w", spec.ID, err)
	}
	defer stdout.Close()
	defer stderr.Close()
	status, err := createStatusFile(statusFile(store, spec.ID))
	if err != nil {
		return nil, fmt.Errorf("starting worker %s: %w", spec.ID, err)
	}
	defer status.Close()

	argv := append([]string{program}, command[1:]...)
	sb, err := startSandbox(ctx, sandbox{
		bwrap:  bwrap,
		argv:   argv,
		binds:  c.Binds,
		env:    workerEnv(spec, bind, c.Env),
		stdout: stdout,
		stderr: stderr,
		status: status,
	})
	if err != nil {
		_ = os.Remove(status.Name())
		return nil, fmt.Errorf("starting worker %s: %w%s", spec.ID, err, logTail(stderr.Name()))
	}
	st := workerState{
		Identity:         sb.outer,
		SandboxPID:       sb.inner.PID,
		SandboxStartTime: sb.inner.StartTime,
		PIDNamespace:     sb.info.PIDNamespace,
		Record: drivers.Record{
			Group:     spec.Group,
			Address:   net.JoinHostPort(drivers.DialHost(bind), strconv.Itoa(spec.Port)),
			Labels:    spec.AllLabels(),
			StartedAt: time.Now().UTC(),
		},
		Command: argv,
		Binds:   c.Binds,
		Stdout:  stdout.Name(),
		Stderr:  stderr.Name(),
	}
	if err := writeState(store, spec.ID, st); err != nil {
		st.kill()
		_ = sb.cmd.Wait()
		_ = os.Remove(status.Name())
		return nil, fmt.Errorf("starting worker %s: %w", spec.ID, err)
	}
	d.workers.Commit(spec.ID, newChildHandle(spec.ID, st, sb.cmd))
	committed = true
	d.logger.Info("worker started", "worker", spec.ID, "pid", st.PID, "sandbox_pid", st.SandboxPID, "address", st.Address)
	return st.handle(spec.ID), nil
}

// workerEnv is the sandbox's whole environment: a small base (nothing of the
// plugin's own environment leaks in but PATH), the group's env, then golb's.
func workerEnv(spec drivers.WorkerSpec, bind string, extra map[string]string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	env := []string{"PATH=" + path, "HOME=/tmp", "TMPDIR=/tmp"}
	for _, k := range []string{"LANG", "LC_ALL", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	return append(env,
		"PORT="+strconv.Itoa(spec.Port),
		"BIND_ADDR="+bind,
		"GOLB_WORKER_ID="+spec.ID,
	)
}

// createStatusFile creates (or empties) the file bwrap writes its status to.
func createStatusFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating status file: %w", err)
	}
	return f, nil
}

// logTail returns the last line of a worker's stderr log, to explain a
// failed start; it reads only the end of the file.
func logTail(path string) string {
	out := proc.ExitOutput(path)
	if out == "" {
		return ""
	}
	return " (" + out[strings.LastIndexByte(out, '\n')+1:] + ")"
}

var (
	_ drivers.Driver     = (*Driver)(nil)
	_ drivers.Configurer = (*Driver)(nil)
)

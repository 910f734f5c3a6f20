// Package process is golb's built-in driver that runs workers as plain child
// processes, each in its own process group, with no daemon at all. Workers
// outlive the plugin and golb; a new plugin instance finds them again from their
// state files and checks PID and start time so that a reused PID is never adopted.
package process

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
	"syscall"
	"time"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/proc"
)

// Name is the driver's name in config files.
const Name = "process"

// Version of this driver.
const Version = "0.1.0"

var info = drivers.Info{
	Name:            Name,
	Version:         Version,
	ProtocolVersion: drivers.ProtocolVersion,
	Capabilities:    drivers.Capabilities{Signals: true, Recover: true, Isolation: "none"},
	ConfigSchema: []drivers.Attribute{
		{Name: "command", Type: drivers.TypeStringList, Doc: "program and arguments of an HTTP service that listens on $PORT; default: the built-in worker (golb worker)"},
		{Name: "env", Type: drivers.TypeStringMap, Doc: "extra environment variables"},
		{Name: "dir", Type: drivers.TypeString, Doc: "working directory; default: golb's"},
	},
	SettingsSchema: []drivers.Attribute{
		{Name: "worker_command", Type: drivers.TypeStringList, Doc: "how to run the built-in worker; default: the command golb sends with each worker, else this binary with the argument \"worker\""},
	},
}

// groupConfig is a group's `config { }` block.
type groupConfig struct {
	Command []string          `json:"command"`
	Env     map[string]string `json:"env"`
	Dir     string            `json:"dir"`
}

// settings is the `driver "process" { }` block.
type settings struct {
	WorkerCommand []string `json:"worker_command"`
}

// Driver runs workers as child processes.
type Driver struct {
	logger *slog.Logger

	mu       sync.Mutex
	dataDir  string
	settings settings
	workers  drivers.Tracked[*handle]
}

// New returns a process driver. Until SetConfig names a data directory it keeps
// its files under the system temp directory.
func New(logger *slog.Logger) *Driver {
	if logger == nil {
		logger = slog.Default()
	}
	return &Driver{
		logger:  logger,
		dataDir: filepath.Join(os.TempDir(), "golb-process-driver"),
	}
}

// Info implements drivers.Driver.
func (d *Driver) Info(context.Context) (drivers.Info, error) { return info, nil }

// SetConfig implements drivers.Configurer.
func (d *Driver) SetConfig(_ context.Context, cfg drivers.PluginConfig) error {
	var s settings
	if len(cfg.Settings) > 0 && string(cfg.Settings) != "null" {
		if err := json.Unmarshal(cfg.Settings, &s); err != nil {
			return fmt.Errorf("%w: decoding process driver settings: %v", drivers.ErrBadConfig, err)
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

// Fingerprint implements drivers.Driver: processes need nothing but the kernel.
func (d *Driver) Fingerprint(context.Context) (drivers.Fingerprint, error) {
	exe, err := d.workerCommand(nil)
	if err != nil {
		return drivers.Fingerprint{Healthy: false, Detail: err.Error()}, nil
	}
	return drivers.Fingerprint{
		Healthy: true,
		Detail:  "plain processes, no daemon needed",
		Attrs:   map[string]string{"worker_command": strings.Join(exe, " "), "pidfd": strconv.FormatBool(proc.PidfdSupported())},
	}, nil
}

// ValidateConfig implements drivers.Driver.
func (d *Driver) ValidateConfig(_ context.Context, raw json.RawMessage) ([]drivers.Diagnostic, error) {
	var c groupConfig
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &c); err != nil {
			return []drivers.Diagnostic{{Summary: "invalid config block", Detail: err.Error()}}, nil
		}
	}
	var diags []drivers.Diagnostic
	if c.Command != nil {
		if len(c.Command) == 0 || c.Command[0] == "" {
			diags = append(diags, drivers.Diagnostic{Attribute: "command", Summary: "command is empty", Detail: "give the program and its arguments, e.g. [\"./server\", \"-v\"], or remove command to run the built-in worker"})
		} else if _, err := exec.LookPath(c.Command[0]); err != nil {
			diags = append(diags, drivers.Diagnostic{Attribute: "command", Summary: fmt.Sprintf("program %q not found", c.Command[0]), Detail: "use an absolute path or a program on PATH"})
		}
		for i, arg := range c.Command {
			if strings.IndexByte(arg, 0) >= 0 {
				// exec refuses it at every start: the group would crash-loop.
				diags = append(diags, drivers.Diagnostic{Attribute: "command", Summary: fmt.Sprintf("argument %d of command contains a NUL byte", i), Detail: "no program can receive one; remove it"})
			}
		}
	}
	if strings.IndexByte(c.Dir, 0) >= 0 {
		diags = append(diags, drivers.Diagnostic{Attribute: "dir", Summary: "dir contains a NUL byte"})
		c.Dir = ""
	}
	if c.Dir != "" {
		if st, err := os.Stat(c.Dir); err != nil || !st.IsDir() {
			diags = append(diags, drivers.Diagnostic{Attribute: "dir", Summary: fmt.Sprintf("directory %q does not exist", c.Dir)})
		}
	}
	return diags, nil
}

// workerCommand is the argv of the built-in worker: the driver's
// worker_command setting (the user's explicit choice), else the one core
// sent in the spec (fromSpec, may be nil), else this binary with "worker".
func (d *Driver) workerCommand(fromSpec []string) ([]string, error) {
	d.mu.Lock()
	wc := d.settings.WorkerCommand
	d.mu.Unlock()
	if len(wc) > 0 {
		return wc, nil
	}
	if len(fromSpec) > 0 {
		return fromSpec, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the golb binary for the built-in worker: %w", err)
	}
	return []string{exe, "worker"}, nil
}

// store holds the workers' state files, data_dir/workers/ID.json.
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
	argv := c.Command
	if len(argv) == 0 {
		var err error
		if argv, err = d.workerCommand(spec.WorkerCommand); err != nil {
			return nil, err
		}
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("%w: starting worker %s: program %q not found", drivers.ErrBadConfig, spec.ID, argv[0])
	}
	bind := spec.BindAddr
	if bind == "" {
		bind = "127.0.0.1"
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

	stdout, stderr, err := proc.OpenLogs(d.logDir(), spec.ID)
	if err != nil {
		return nil, fmt.Errorf("starting worker %s: %w", spec.ID, err)
	}
	defer stdout.Close()
	defer stderr.Close()

	cmd := exec.Command(path, argv[1:]...)
	cmd.Dir = c.Dir
	cmd.Env = workerEnv(spec, bind, c.Env)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Own process group: Stop signals the whole group, and a Ctrl-C at golb's
	// terminal does not reach the workers (golb stops them in order).
	// No Pdeathsig: workers outlive the plugin and golb by design.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting worker %s (%s): %w", spec.ID, path, err)
	}
	pid := cmd.Process.Pid
	id, err := proc.Identify(pid)
	if err != nil {
		// The process exited before we could read its start time: say how
		// and why, as a crash after the start would. It is not reaped yet,
		// so its group's ID is still its own: what it started dies too.
		endChildGroup(pid)
		res := exitResult(cmd, cmd.Wait())
		res.Output = proc.ExitOutput(stderr.Name())
		return nil, fmt.Errorf("starting worker %s: process exited at once (%v); see %s", spec.ID, res, stderr.Name())
	}
	st := workerState{
		Identity: id,
		Record: drivers.Record{
			Group:     spec.Group,
			Address:   net.JoinHostPort(drivers.DialHost(bind), strconv.Itoa(spec.Port)),
			Labels:    spec.AllLabels(),
			StartedAt: time.Now().UTC(),
		},
		Command: append([]string{path}, argv[1:]...),
		Stdout:  stdout.Name(),
		Stderr:  stderr.Name(),
	}
	if err := writeState(d.store(), spec.ID, st); err != nil {
		endChildGroup(pid)
		_ = cmd.Wait()
		return nil, fmt.Errorf("starting worker %s: %w", spec.ID, err)
	}
	d.workers.Commit(spec.ID, newChildHandle(d, spec.ID, st, cmd))
	committed = true
	d.logger.Debug("worker started", "worker", spec.ID, "pid", pid, "address", st.Address)
	return st.handle(spec.ID), nil
}

// endChildGroup SIGKILLs the process group of a child not yet reaped (its
// zombie keeps the group's ID from reuse) and returns once none of it runs.
func endChildGroup(pid int) {
	g := &proc.Group{PGID: pid}
	_ = g.Kill()
	_ = proc.WaitExited(pid)
	g.Drain()
}

// workerEnv is golb's environment, less go-plugin's handshake variables, plus
// the worker's settings.
func workerEnv(spec drivers.WorkerSpec, bind string, extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PLUGIN_") || strings.HasPrefix(kv, drivers.Handshake.MagicCookieKey+"=") {
			continue
		}
		env = append(env, kv)
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

var (
	_ drivers.Driver     = (*Driver)(nil)
	_ drivers.Configurer = (*Driver)(nil)
)

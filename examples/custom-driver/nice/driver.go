// Package nice is the smallest complete golb driver, written to be read top
// to bottom: each worker is a plain process run under `nice -n N`, so that
// golb's workers yield the CPU to everything else on the host. It uses only
// the SDK (drivers) and its helpers for process-style drivers (drivers/proc),
// and passes golb's conformance suite (nice_test.go).
package nice

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/proc"
)

// Name is the driver's name in config files: driver = "nice".
const Name = "nice"

// info is what golb asks first: the schema lets golb check a group's
// config { } block (file:line:column diagnostics) and hand it over as JSON.
var info = drivers.Info{
	Name:            Name,
	Version:         "0.1.0",
	ProtocolVersion: drivers.ProtocolVersion,
	Capabilities:    drivers.Capabilities{Signals: true, Recover: true, Isolation: "none"},
	ConfigSchema: []drivers.Attribute{
		{Name: "command", Type: drivers.TypeStringList, Doc: "program and arguments of an HTTP service on $PORT; default: golb's built-in worker"},
		{Name: "niceness", Type: drivers.TypeNumber, Doc: "added to golb's own nice value, as nice(1) does: -20 (first) to 19 (last); default 10"},
	},
}

// config is a group's config { } block, as JSON.
type config struct {
	Command  []string `json:"command"`
	Niceness *int     `json:"niceness"`
}

// Driver runs workers under nice. golb calls it concurrently.
type Driver struct {
	mu      sync.Mutex
	dataDir string                   // golb gives each driver one (SetConfig)
	workers drivers.Tracked[*worker] // the workers this instance knows, by id
}

// New returns a nice driver; SetConfig names its data directory.
func New() *Driver { return &Driver{dataDir: filepath.Join(os.TempDir(), "golb-driver-nice")} }

func (d *Driver) Info(context.Context) (drivers.Info, error) { return info, nil }

// SetConfig is called once, before anything but Info. This driver takes no
// settings of its own (no SettingsSchema), only its data directory.
func (d *Driver) SetConfig(_ context.Context, cfg drivers.PluginConfig) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if cfg.DataDir != "" {
		d.dataDir = cfg.DataDir
	}
	return nil
}

// Fingerprint says whether the runtime is usable: `golb drivers` shows it.
func (d *Driver) Fingerprint(context.Context) (drivers.Fingerprint, error) {
	if _, err := exec.LookPath("nice"); err != nil {
		return drivers.Fingerprint{Detail: "nice not found on PATH: install coreutils"}, nil
	}
	return drivers.Fingerprint{Healthy: true, Detail: "processes under nice(1)"}, nil
}

// ValidateConfig returns one diagnostic per problem; golb points each at
// its attribute in the HCL file.
func (d *Driver) ValidateConfig(_ context.Context, raw json.RawMessage) ([]drivers.Diagnostic, error) {
	var c config
	if err := (drivers.WorkerSpec{Config: raw}).DecodeConfig(&c); err != nil {
		return []drivers.Diagnostic{{Summary: "invalid config block", Detail: err.Error()}}, nil
	}
	var diags []drivers.Diagnostic
	if c.Command != nil && (len(c.Command) == 0 || c.Command[0] == "") {
		diags = append(diags, drivers.Diagnostic{Attribute: "command", Summary: "command is empty"})
	}
	if c.Niceness != nil && (*c.Niceness < -20 || *c.Niceness > 19) {
		diags = append(diags, drivers.Diagnostic{Attribute: "niceness", Summary: fmt.Sprintf("niceness %d is not in -20..19", *c.Niceness)})
	}
	return diags, nil
}

// dir is sub in the data directory: workers/ID.json (the state files List
// reads) and logs/ID.std{out,err}.log.
func (d *Driver) dir(sub string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return filepath.Join(d.dataDir, sub)
}

func (d *Driver) store() proc.Store { return proc.Store{Dir: d.dir("workers")} }

// Start starts one worker. The plugin server has checked the spec's id and
// port (WorkerSpec.Validate). A failed Start leaves nothing behind.
func (d *Driver) Start(_ context.Context, spec drivers.WorkerSpec) (*drivers.Handle, error) {
	c := config{Niceness: new(int)}
	*c.Niceness = 10
	if err := spec.DecodeConfig(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", drivers.ErrBadConfig, err)
	}
	argv := c.Command
	if len(argv) == 0 {
		argv = spec.WorkerCommand // golb's built-in worker, when the group runs it
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("%w: worker %s: no command, and golb sent no built-in worker command", drivers.ErrBadConfig, spec.ID)
	}
	prog, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("%w: worker %s: program %q not found", drivers.ErrBadConfig, spec.ID, argv[0])
	}
	bind := spec.BindAddr
	if bind == "" {
		bind = "127.0.0.1"
	}
	if err := proc.PortFree(bind, spec.Port); err != nil {
		return nil, fmt.Errorf("%w: worker %s: %v", drivers.ErrPortInUse, spec.ID, err)
	}
	if err := d.workers.Reserve(spec.ID); err != nil { // one Start per id
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			d.workers.Release(spec.ID)
		}
	}()
	stdout, stderr, err := proc.OpenLogs(d.dir("logs"), spec.ID)
	if err != nil {
		return nil, fmt.Errorf("starting worker %s: %w", spec.ID, err)
	}
	defer stdout.Close()
	defer stderr.Close()

	cmd := exec.Command("nice", append([]string{"-n", strconv.Itoa(*c.Niceness), prog}, argv[1:]...)...)
	// spec.Environ adds PORT, BIND_ADDR and GOLB_WORKER_ID where an older
	// golb left them out of spec.Env.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, spec.Environ()...)
	cmd.Stdout, cmd.Stderr = stdout, stderr // files: workers outlive the plugin
	// Its own process group, for Stop, and no Pdeathsig: a worker survives
	// a crash of the plugin and of golb, to be recovered.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting worker %s: %w", spec.ID, err)
	}
	// nice execs the program: the pid is the worker's. Its start time tells
	// it from a later process that reuses the pid.
	id, err := proc.Identify(cmd.Process.Pid)
	if err != nil {
		endGroup(cmd.Process.Pid) // what it started dies with it
		_ = cmd.Wait()
		return nil, fmt.Errorf("starting worker %s: it exited at once (%v)", spec.ID, exitOf(cmd, stderr.Name()))
	}
	st := state{Identity: id, Stderr: stderr.Name(), Record: drivers.Record{
		Group:     spec.Group,
		Address:   net.JoinHostPort(drivers.DialHost(bind), strconv.Itoa(spec.Port)),
		Labels:    spec.AllLabels(), // golb.managed, golb.group, golb.worker: List filters on them
		StartedAt: time.Now().UTC(),
	}}
	if err := d.store().Write(spec.ID, st); err != nil {
		endGroup(id.PID)
		_ = cmd.Wait()
		return nil, fmt.Errorf("starting worker %s: %w", spec.ID, err)
	}
	w := newWorker(st)
	go func() {
		// Seen before it is reaped, the worker's zombie keeps its process
		// group's ID ours while Drain ends what it left (a wrapper's child
		// that would keep the port).
		if proc.WaitExited(id.PID) == nil {
			w.group.Drain()
		}
		_ = cmd.Wait()
		w.exit.Finish(exitOf(cmd, st.Stderr))
	}()
	d.workers.Commit(spec.ID, w)
	ok = true
	return st.handle(spec.ID), nil
}

// endGroup SIGKILLs the process group of a child not yet reaped and returns
// once none of it runs.
func endGroup(pid int) {
	g := &proc.Group{PGID: pid}
	_ = g.Kill()
	_ = proc.WaitExited(pid)
	g.Drain()
}

var (
	_ drivers.Driver     = (*Driver)(nil)
	_ drivers.Configurer = (*Driver)(nil)
)

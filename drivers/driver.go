// Package drivers is golb's driver SDK: the Driver interface every worker runtime
// implements, the gRPC protocol it is spoken over (go-plugin), Serve for plugin authors
// and the client that core uses. It imports nothing else of golb, so an external driver
// depends on this package alone.
package drivers

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// ProtocolVersion is the driver protocol version; go-plugin refuses a plugin that
// speaks another one.
const ProtocolVersion = 1

// Labels every driver puts on the workers it starts, so that List can find them
// again after a crash of golb or of the plugin.
const (
	LabelManaged = "golb.managed" // always "true"
	LabelGroup   = "golb.group"   // the group name
	LabelWorker  = "golb.worker"  // the worker id
)

// Driver runs workers on one runtime. Every method takes a ctx; a driver honours its
// cancellation. Implementations must be safe for concurrent use.
type Driver interface {
	// Info returns the static facts of the driver: name, version, capabilities and
	// the schema of its settings and of a group's config block.
	Info(ctx context.Context) (Info, error)
	// Fingerprint tells whether the runtime is reachable right now, with details.
	Fingerprint(ctx context.Context) (Fingerprint, error)
	// ValidateConfig checks a group's driver-specific config block (decoded by
	// core against Info.ConfigSchema) and returns one diagnostic per problem.
	ValidateConfig(ctx context.Context, config json.RawMessage) ([]Diagnostic, error)
	// Start starts one worker and returns once it is started (not necessarily
	// serving). A failed start leaves nothing behind. The handle must carry
	// spec.ID, an Address of host:port with a numeric port, and a State of
	// at most MaxStateSize bytes: golb's client refuses any other reply
	// (ErrBadReply) and counts the start as failed.
	Start(ctx context.Context, spec WorkerSpec) (*Handle, error)
	// Wait blocks until the worker exits or ctx ends.
	Wait(ctx context.Context, id string) (ExitResult, error)
	// Inspect reports the worker's current status.
	Inspect(ctx context.Context, id string) (Status, error)
	// Stop sends signal (default SIGTERM) and, if the worker is still running after
	// timeout, SIGKILL. It returns once the worker has exited.
	Stop(ctx context.Context, id string, signal string, timeout time.Duration) error
	// Destroy removes everything the worker left (container, state, files),
	// killing it first if it still runs. Destroying an unknown id is not an error.
	Destroy(ctx context.Context, id string) error
	// Recover re-attaches to a worker started by an earlier instance of the
	// plugin, from its handle. Nothing is restarted.
	Recover(ctx context.Context, h *Handle) error
	// List returns the handles of the workers this driver runs whose labels
	// include all of labels, found from the runtime itself (not from memory).
	// Each handle is checked as Start's is; one bad handle fails the call.
	List(ctx context.Context, labels map[string]string) ([]*Handle, error)
}

// Configurer is implemented by drivers that take settings from a
// `driver "NAME" { ... }` block or need golb's data directory. Core calls
// SetConfig once on every new plugin instance, before any other call but Info.
type Configurer interface {
	SetConfig(ctx context.Context, cfg PluginConfig) error
}

// PluginConfig is what core hands a driver plugin about itself.
type PluginConfig struct {
	// DataDir is a directory the plugin owns (data_dir/drivers/NAME): logs, state.
	DataDir string `json:"data_dir"`
	// Settings is the driver block decoded against Info.SettingsSchema, as JSON.
	Settings json.RawMessage `json:"settings,omitempty"`
}

// Info is the static description of a driver.
type Info struct {
	Name            string       `json:"name"`
	Version         string       `json:"version"`
	ProtocolVersion int          `json:"protocol_version"`
	Capabilities    Capabilities `json:"capabilities"`
	// ConfigSchema describes a group's `config { }` block for this driver.
	ConfigSchema []Attribute `json:"config_schema,omitempty"`
	// SettingsSchema describes the `driver "NAME" { }` block.
	SettingsSchema []Attribute `json:"settings_schema,omitempty"`
}

// Capabilities are what a driver can do beyond the required calls.
type Capabilities struct {
	// Signals: Stop honours the requested signal (else it always terminates).
	Signals bool `json:"signals"`
	// Recover: workers survive a plugin restart and are re-attached.
	Recover bool `json:"recover"`
	// Isolation is "none", "namespace" or "container".
	Isolation string `json:"isolation"`
}

// AttrType is the type of a config attribute.
type AttrType string

// Attribute types a schema may use.
const (
	TypeString     AttrType = "string"
	TypeNumber     AttrType = "number"
	TypeBool       AttrType = "bool"
	TypeStringList AttrType = "list(string)"
	TypeStringMap  AttrType = "map(string)"
)

// Attribute is one attribute of a driver's config or settings block.
type Attribute struct {
	Name     string   `json:"name"`
	Type     AttrType `json:"type"`
	Required bool     `json:"required,omitempty"`
	Doc      string   `json:"doc,omitempty"`
}

// Fingerprint says whether the runtime behind a driver can be used.
type Fingerprint struct {
	Healthy bool              `json:"healthy"`
	Detail  string            `json:"detail"` // one line: the version, or why it is unreachable and how to fix it
	Attrs   map[string]string `json:"attrs,omitempty"`
}

// Diagnostic is one problem in a config block. Core attaches the source range of
// Attribute (or of the block, when Attribute is empty).
type Diagnostic struct {
	Attribute string `json:"attribute,omitempty"`
	Summary   string `json:"summary"`
	Detail    string `json:"detail,omitempty"`
}

func (d Diagnostic) Error() string {
	if d.Attribute == "" {
		return d.Summary
	}
	return d.Attribute + ": " + d.Summary
}

// WorkerSpec is everything a driver needs to start one worker.
type WorkerSpec struct {
	ID       string `json:"id"`        // unique, chosen by core, e.g. "hello-3f9c2a"
	Group    string `json:"group"`     // the group it belongs to
	Port     int    `json:"port"`      // the host port it must serve on
	BindAddr string `json:"bind_addr"` // default "127.0.0.1"
	// Env is passed to the worker as is. Core fills PORT, BIND_ADDR and
	// GOLB_* (GOLB_WORKER_ID and, for the built-in worker, its app
	// settings). Drivers should still set PORT and BIND_ADDR if missing
	// (from Port and BindAddr), so that older cores work: Environ does.
	// A runtime whose worker must bind elsewhere inside it (a container
	// binds 0.0.0.0) overrides BIND_ADDR.
	Env map[string]string `json:"env,omitempty"`
	// WorkerCommand is the argv that runs golb's built-in worker on this
	// host, e.g. ["/usr/bin/golb", "worker"]. Core fills it when the group
	// runs the built-in worker, so that an external driver can run it too;
	// it is empty when the group gives its own command or image (in
	// Config). The worker reads its settings from Env.
	WorkerCommand []string `json:"worker_command,omitempty"`
	// Labels go on the worker; drivers add LabelManaged, LabelGroup and LabelWorker.
	Labels map[string]string `json:"labels,omitempty"`
	// Config is the group's config block, decoded against Info.ConfigSchema.
	Config json.RawMessage `json:"config,omitempty"`
}

// validID is a worker id every runtime can use as a file or container name.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// Validate checks what every driver relies on: an id usable as a file or
// container name, and a port. The plugin server calls it before Start, so a
// driver's Start sees only valid specs; drivers used in-process may call it
// too.
func (s WorkerSpec) Validate() error {
	if !validID.MatchString(s.ID) {
		return fmt.Errorf("%w: invalid worker id %q: letters, digits, '_', '.' and '-' only", ErrBadConfig, s.ID)
	}
	if s.Port < 1 || s.Port > 65535 {
		return fmt.Errorf("%w: invalid port %d for worker %s", ErrBadConfig, s.Port, s.ID)
	}
	return nil
}

// DecodeConfig decodes the spec's config block into v (a pointer to a struct with
// json tags). An empty block leaves v as it is.
func (s WorkerSpec) DecodeConfig(v any) error {
	if len(s.Config) == 0 || string(s.Config) == "null" {
		return nil
	}
	if err := json.Unmarshal(s.Config, v); err != nil {
		return fmt.Errorf("decoding config of worker %s: %w", s.ID, err)
	}
	return nil
}

// Environ returns Env as sorted KEY=VALUE pairs for exec.Cmd.Env, with
// PORT, BIND_ADDR (default 127.0.0.1) and GOLB_WORKER_ID added from the spec
// where Env lacks them, as older cores left them out.
func (s WorkerSpec) Environ() []string {
	env := make(map[string]string, len(s.Env)+3)
	for k, v := range s.Env {
		env[k] = v
	}
	fill := func(k, v string) {
		if _, ok := env[k]; !ok {
			env[k] = v
		}
	}
	bind := s.BindAddr
	if bind == "" {
		bind = "127.0.0.1"
	}
	fill("PORT", strconv.Itoa(s.Port))
	fill("BIND_ADDR", bind)
	fill("GOLB_WORKER_ID", s.ID)
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// AllLabels returns spec.Labels plus the labels every golb worker carries.
func (s WorkerSpec) AllLabels() map[string]string {
	l := make(map[string]string, len(s.Labels)+3)
	for k, v := range s.Labels {
		l[k] = v
	}
	l[LabelManaged] = "true"
	l[LabelGroup] = s.Group
	l[LabelWorker] = s.ID
	return l
}

// Handle identifies a running worker across plugin and golb restarts.
type Handle struct {
	ID      string            `json:"id"`
	Group   string            `json:"group"`
	Driver  string            `json:"driver"`
	Address string            `json:"address"` // host:port where it serves HTTP
	Labels  map[string]string `json:"labels,omitempty"`
	// StartedAt is when the worker was started.
	StartedAt time.Time `json:"started_at"`
	// StateVersion and State are the driver's own opaque record (a PID and its
	// start time, a container id); the driver decodes them in Recover.
	StateVersion int    `json:"state_version"`
	State        []byte `json:"state,omitempty"`
}

// WorkerState is the coarse state of a worker as its runtime sees it.
type WorkerState string

// Worker states reported by Inspect.
const (
	StateRunning WorkerState = "running"
	StateExited  WorkerState = "exited"
	StateUnknown WorkerState = "unknown"
)

// Status is what Inspect reports.
type Status struct {
	ID        string            `json:"id"`
	State     WorkerState       `json:"state"`
	StartedAt time.Time         `json:"started_at"`
	ExitedAt  time.Time         `json:"exited_at,omitempty"`
	Exit      *ExitResult       `json:"exit,omitempty"`
	Details   map[string]string `json:"details,omitempty"` // pid, container id, log path…
}

// ExitResult is how a worker ended. ExitCode is -1 when the runtime cannot know it
// (a re-attached process that was not our child); with no Signal and no Err
// either, String says "exit status unknown (not our child)".
type ExitResult struct {
	ExitCode int    `json:"exit_code"`
	Signal   int    `json:"signal,omitempty"`
	OOM      bool   `json:"oom,omitempty"`
	Err      string `json:"err,omitempty"`
	// Output is the worker's last words: the last lines it wrote to stderr
	// (or to its one log stream, where the runtime keeps one) before it
	// ended, as TrimOutput makes them. Empty when the driver cannot read them.
	Output string `json:"output,omitempty"`
}

// Successful reports whether the worker exited 0 without a signal.
func (r ExitResult) Successful() bool { return r.ExitCode == 0 && r.Signal == 0 && r.Err == "" }

// String is one line: how the worker ended, then the line of its Output
// that says why, when one does, e.g. `exit code 2: golb worker:
// GOLB_FAILURE_RATE "bogus": not a number`. That line is a panic's first
// line, else the last line unless it is a routine log line (level INFO or
// below), else the last line that reads like an error. When the exit status
// is unknown (Err, or ExitCode -1 with no Signal) the last line may be old
// news, so it is shown only when it reads like an error. A worker killed
// from outside (SIGKILL, SIGTERM, SIGINT) gets no line: it said nothing
// about why.
func (r ExitResult) String() string {
	var s string
	unknown := false
	switch {
	case r.Err != "":
		s, unknown = "error: "+r.Err, true
	case r.Signal != 0:
		s = fmt.Sprintf("killed by signal %d", r.Signal)
	case r.ExitCode == -1:
		s, unknown = "exit status unknown (not our child)", true
	default:
		s = fmt.Sprintf("exit code %d", r.ExitCode)
	}
	if killedFromOutside(r.Signal) {
		return s
	}
	if line := reasonLine(r.Output, unknown); line != "" {
		s += ": " + line
	}
	return s
}

// killedFromOutside reports the signals someone else sends to stop a
// worker: its last log line says nothing about why it ended.
func killedFromOutside(sig int) bool {
	switch syscall.Signal(sig) {
	case syscall.SIGKILL, syscall.SIGTERM, syscall.SIGINT:
		return true
	}
	return false
}

// DialHost is the host to reach a worker bound (or a port published) on
// host: a wildcard or empty bind address is reached on 127.0.0.1.
func DialHost(host string) string {
	if host == "" || host == "0.0.0.0" || host == "::" {
		return "127.0.0.1"
	}
	return host
}

// MatchLabels reports whether have holds every key and value of want; List
// implementations filter with it.
func MatchLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

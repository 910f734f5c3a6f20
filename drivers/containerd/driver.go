// Package containerd is golb's built-in driver that runs workers as
// containerd tasks (runc, host networking) for hosts with containerd and no
// Docker daemon. The worker image is built in-process around golb's own
// binary and imported into the driver's namespace, with no registry; a group
// may instead run any image already in that namespace. Containers carry
// golb's labels, so a new plugin instance finds and re-attaches their tasks
// after any crash.
package containerd

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/client"
	"github.com/distribution/reference"

	"github.com/golb/golb/drivers"
)

// Name is the driver's name in config files.
const Name = "containerd"

// Version of this driver.
const Version = "0.1.0"

// Defaults of the settings block.
const (
	DefaultAddress   = "/run/containerd/containerd.sock"
	DefaultNamespace = "golb"
)

// snapshotter unpacks images and holds the workers' root filesystems.
const snapshotter = "overlayfs"

var info = drivers.Info{
	Name:            Name,
	Version:         Version,
	ProtocolVersion: drivers.ProtocolVersion,
	Capabilities:    drivers.Capabilities{Signals: true, Recover: true, Isolation: "container"},
	ConfigSchema: []drivers.Attribute{
		{Name: "image", Type: drivers.TypeString, Doc: "an image (name:tag) already in the driver's namespace, of an HTTP service that binds $BIND_ADDR:$PORT on the host network; never pulled: `ctr -n NAMESPACE images import FILE` it first; default: golb's worker image, built from worker_binary"},
		{Name: "command", Type: drivers.TypeStringList, Doc: "program and arguments, replacing the image's entrypoint and command; default: the image's"},
		{Name: "env", Type: drivers.TypeStringMap, Doc: "extra environment variables; PORT, BIND_ADDR and GOLB_WORKER_ID always win"},
	},
	SettingsSchema: []drivers.Attribute{
		{Name: "address", Type: drivers.TypeString, Doc: "containerd's gRPC socket; default: " + DefaultAddress},
		{Name: "namespace", Type: drivers.TypeString, Doc: "the containerd namespace of golb's images, containers and tasks; default: " + DefaultNamespace},
		{Name: "worker_binary", Type: drivers.TypeString, Doc: "Linux executable that runs the built-in worker as `BINARY worker`, put in the worker image; default: this golb binary"},
		{Name: "runc_root", Type: drivers.TypeString, Doc: "runc's state directory for golb's tasks (runc options Root); default: the runtime's own (/run/containerd/runc)"},
		{Name: "cgroup_parent", Type: drivers.TypeString, Doc: "cgroup under which each task gets PARENT/CONTAINER; default: containerd's, /NAMESPACE"},
	},
}

// groupConfig is a group's `config { }` block.
type groupConfig struct {
	Image   string            `json:"image"`
	Command []string          `json:"command"`
	Env     map[string]string `json:"env"`
}

// settings is the `driver "containerd" { }` block.
type settings struct {
	Address      string `json:"address"`
	Namespace    string `json:"namespace"`
	WorkerBinary string `json:"worker_binary"`
	RuncRoot     string `json:"runc_root"`
	CgroupParent string `json:"cgroup_parent"`
}

// Driver runs workers as containerd tasks.
type Driver struct {
	logger *slog.Logger

	mu       sync.Mutex
	settings settings
	dataDir  string
	cli      *client.Client // created on first use from settings
	workers  drivers.Tracked[*handle]

	imgMu sync.Mutex // one image build/import at a time
	img   builtImage // the last worker image ensured

	// badLabel holds the containers skipped for a golb.worker label that
	// is no worker id, so that each is logged once (under mu).
	badLabel map[string]bool
}

// New returns a containerd driver that talks to the default socket and
// namespace until SetConfig names others.
func New(logger *slog.Logger) *Driver {
	if logger == nil {
		logger = slog.Default()
	}
	return &Driver{
		logger:   logger,
		settings: settings{Address: DefaultAddress, Namespace: DefaultNamespace},
		dataDir:  filepath.Join(os.TempDir(), "golb-containerd"),
	}
}

// Info implements drivers.Driver.
func (d *Driver) Info(context.Context) (drivers.Info, error) { return info, nil }

// SetConfig implements drivers.Configurer: settings are checked here, not
// at the first Start. Worker logs go to DataDir/logs.
func (d *Driver) SetConfig(_ context.Context, cfg drivers.PluginConfig) error {
	var s settings
	if len(cfg.Settings) > 0 && string(cfg.Settings) != "null" {
		if err := json.Unmarshal(cfg.Settings, &s); err != nil {
			return fmt.Errorf("%w: decoding containerd driver settings: %v", drivers.ErrBadConfig, err)
		}
	}
	if err := s.fill(); err != nil {
		return err
	}
	cli, err := newClient(s)
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
	if cfg.DataDir != "" {
		d.dataDir = cfg.DataDir
	}
	return nil
}

// namespaceRE is containerd's rule for namespace names (and container ids).
var namespaceRE = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

// ownedNamespaces are namespaces other managers keep for themselves.
var ownedNamespaces = map[string]string{"moby": "Docker", "k8s.io": "Kubernetes (CRI)"}

// maxSocketPath is what a unix socket address may hold (sun_path).
const maxSocketPath = 107

// fill applies the defaults and refuses settings no daemon could use.
func (s *settings) fill() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: containerd driver "+format, append([]any{drivers.ErrBadConfig}, a...)...)
	}
	s.Address = strings.TrimPrefix(s.Address, "unix://")
	if s.Address == "" {
		s.Address = DefaultAddress
	}
	if s.Namespace == "" {
		s.Namespace = DefaultNamespace
	}
	switch {
	case strings.ContainsAny(s.Address, "\x00\n") || !filepath.IsAbs(s.Address):
		return bad("address %q: give the absolute path of containerd's socket, e.g. %s", s.Address, DefaultAddress)
	case len(s.Address) > maxSocketPath:
		return bad("address %q is longer than a unix socket path may be (%d bytes)", s.Address, maxSocketPath)
	case len(s.Namespace) > 76 || !namespaceRE.MatchString(s.Namespace):
		return bad("namespace %q: letters and digits, separated by single '.', '_' or '-', at most 76", s.Namespace)
	case ownedNamespaces[s.Namespace] != "":
		return bad("namespace %q is %s's: golb would mix its containers with those; use a namespace of golb's own (default %s)", s.Namespace, ownedNamespaces[s.Namespace], DefaultNamespace)
	case s.RuncRoot != "" && (!filepath.IsAbs(s.RuncRoot) || strings.ContainsAny(s.RuncRoot, "\x00\n")):
		return bad("runc_root %q is not an absolute path", s.RuncRoot)
	case s.CgroupParent != "" && !validCgroup(s.CgroupParent):
		return bad("cgroup_parent %q: give an absolute cgroup path without '..', e.g. /golb", s.CgroupParent)
	}
	if s.WorkerBinary != "" {
		if st, err := os.Stat(s.WorkerBinary); err != nil || st.IsDir() {
			return bad("worker_binary %q is not a file: build golb for Linux and name its path", s.WorkerBinary)
		}
	}
	s.CgroupParent = strings.TrimRight(s.CgroupParent, "/")
	return nil
}

func validCgroup(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\x00\n:") || len(p) > 1024 {
		return false
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." || part == "." {
			return false
		}
	}
	return true
}

// engine returns the client and the settings it was made from, creating
// it from the defaults on first use when SetConfig was never called.
func (d *Driver) engine() (*client.Client, settings, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cli == nil {
		cli, err := newClient(d.settings)
		if err != nil {
			return nil, d.settings, err
		}
		d.cli = cli
	}
	return d.cli, d.settings, nil
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

// logDir holds the workers' output, DataDir/logs/ID.log.
func (d *Driver) logDir() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return filepath.Join(d.dataDir, "logs")
}

// Fingerprint implements drivers.Driver: the daemon's version, or one line
// on why it cannot be used and how to fix that.
func (d *Driver) Fingerprint(ctx context.Context) (drivers.Fingerprint, error) {
	cli, s, err := d.engine()
	attrs := map[string]string{"address": s.Address, "namespace": s.Namespace}
	if err != nil {
		return drivers.Fingerprint{Detail: detail(err), Attrs: attrs}, nil
	}
	v, err := daemonVersion(ctx, cli, s)
	if err != nil {
		return drivers.Fingerprint{Detail: detail(err), Attrs: attrs}, nil
	}
	attrs["version"] = v.Version
	attrs["revision"] = v.Revision
	if bin, err := d.workerBinary(); err == nil {
		attrs["worker_binary"] = bin
	}
	return drivers.Fingerprint{
		Healthy: true,
		Detail:  fmt.Sprintf("containerd %s at %s, namespace %s", v.Version, s.Address, s.Namespace),
		Attrs:   attrs,
	}, nil
}

// detail is err as a fingerprint's one line, without the sentinel's words
// (the fingerprint says unhealthy already).
func detail(err error) string {
	msg := oneLine(err.Error())
	for _, sentinel := range []error{drivers.ErrRuntimeUnavailable, drivers.ErrBadConfig} {
		msg = strings.TrimPrefix(msg, sentinel.Error()+": ")
	}
	return msg
}

// ValidateConfig implements drivers.Driver. When the daemon is reachable it
// also checks that a named image is in the namespace.
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
	for k, v := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			diags = append(diags, drivers.Diagnostic{Attribute: "env", Summary: fmt.Sprintf("invalid environment variable %q", k), Detail: "a name has no '=' and neither name nor value a NUL byte"})
		}
	}
	for _, arg := range c.Command {
		if strings.ContainsRune(arg, 0) {
			diags = append(diags, drivers.Diagnostic{Attribute: "command", Summary: fmt.Sprintf("command argument %q holds a NUL byte", arg)})
			break
		}
	}
	if c.Image == "" {
		return diags, nil
	}
	ref, err := normalizeRef(c.Image)
	if err != nil {
		return append(diags, drivers.Diagnostic{Attribute: "image", Summary: fmt.Sprintf("invalid image reference %q", c.Image), Detail: "use name:tag, e.g. myapp:1.2"}), nil
	}
	if cli, s, err := d.engine(); err == nil && probeSocket(s.Address) == nil {
		if _, err := findImage(ctx, cli, s, c.Image, ref); isBadConfig(err) {
			diags = append(diags, drivers.Diagnostic{Attribute: "image", Summary: fmt.Sprintf("image %q is not in containerd namespace %s", c.Image, s.Namespace), Detail: missingImageFix(s.Namespace)})
		}
		// Any other error (daemon down) is for Fingerprint to report.
	}
	return diags, nil
}

// normalizeRef is the name containerd knows an image by: `ctr images
// import` of myapp:1.2 names it docker.io/library/myapp:1.2.
func normalizeRef(s string) (string, error) {
	if len(s) > 512 || strings.ContainsAny(s, "\x00\n") {
		return "", fmt.Errorf("%w: invalid image reference %q", drivers.ErrBadConfig, s)
	}
	named, err := reference.ParseDockerRef(s)
	if err != nil {
		return "", fmt.Errorf("%w: invalid image reference %q: %v: use name:tag, e.g. myapp:1.2", drivers.ErrBadConfig, s, err)
	}
	return named.String(), nil
}

func missingImageFix(ns string) string {
	return fmt.Sprintf("golb never pulls (there is no registry): import it with `ctr -n %s images import FILE.tar`", ns)
}

var (
	_ drivers.Driver     = (*Driver)(nil)
	_ drivers.Configurer = (*Driver)(nil)
)

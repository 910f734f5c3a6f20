// Package ctrdtest starts a private containerd daemon for tests: its own
// root, state, gRPC and ttrpc sockets and opt path under one temp
// directory, the CRI plugin off, so that tests never touch a system
// containerd (nor Docker's own). Each test then takes an Env of its own:
// a namespace, a runc root and a cgroup parent, all removed afterwards.
package ctrdtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
)

// Daemon is a private containerd process.
type Daemon struct {
	// Address is the daemon's gRPC socket.
	Address string
	// Dir holds everything the daemon writes.
	Dir     string
	Version string

	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

var shared struct {
	once sync.Once
	d    *Daemon
	err  error
}

// Shared returns the daemon of this test binary, started on first use; the
// test is skipped with the reason when it cannot start (or failed, when
// $GOLB_REQUIRE names containerd). Call StopShared from TestMain.
func Shared(t testing.TB) *Daemon {
	t.Helper()
	shared.once.Do(func() { shared.d, shared.err = Start() })
	if shared.err != nil {
		SkipOrFail(t, shared.err)
	}
	return shared.d
}

// StopShared stops the shared daemon, if one was started, and removes its
// directory. It reports what was left behind (a mount, a process), which
// Stop had to remove by force.
func StopShared() error {
	if shared.d == nil {
		return nil
	}
	return shared.d.Stop()
}

// Required reports whether $GOLB_REQUIRE (a comma list) names containerd.
func Required() bool {
	for _, name := range strings.Split(os.Getenv("GOLB_REQUIRE"), ",") {
		if strings.TrimSpace(name) == "containerd" {
			return true
		}
	}
	return false
}

// SkipOrFail skips t because containerd cannot be used, or fails it when
// $GOLB_REQUIRE names containerd, as CI sets it.
func SkipOrFail(t testing.TB, why error) {
	t.Helper()
	if Required() {
		t.Fatalf("GOLB_REQUIRE names containerd, but a private containerd cannot be started: %v", why)
	}
	t.Skipf("no private containerd (set GOLB_REQUIRE=containerd to fail instead): %v", why)
}

// Start starts a private containerd 1.6+ under a new temp directory and
// waits until it answers. It needs root, the containerd binary and runc.
func Start() (*Daemon, error) {
	if os.Getuid() != 0 {
		return nil, errors.New("containerd needs root")
	}
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return nil, fmt.Errorf("no containerd binary: %w", err)
	}
	for _, need := range []string{"runc", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(need); err != nil {
			return nil, fmt.Errorf("no %s binary: %w", need, err)
		}
	}
	sweepStale()
	// A short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		Address: filepath.Join(dir, "containerd.sock"),
		Dir:     dir,
		log:     filepath.Join(dir, "containerd.log"),
	}
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(configFile(dir)), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := d.launch(bin); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	_ = os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600)
	if err := d.waitReady(20 * time.Second); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

// dirPrefix names the daemons' directories in $TMPDIR; ownerFile in one
// holds the pid of the test process that started it.
const (
	dirPrefix = "golb-ctrd-"
	ownerFile = "owner.pid"
)

// sweepStale removes the directories of private daemons whose test process
// is gone (one that panicked before its cleanup): their daemon died with it
// (Pdeathsig), but mounts and files may be left.
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // starting right now, or not ours
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) == nil {
			continue
		}
		killUnder(dir)
		unmountUnder(dir)
		_ = os.RemoveAll(dir)
	}
}

// launch starts the daemon process on d.Dir's config, its output appended
// to d.log.
func (d *Daemon) launch(bin string) error {
	logf, err := os.OpenFile(d.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	d.done = make(chan struct{})
	d.cmd = exec.Command(bin, "--config", filepath.Join(d.Dir, "config.toml"), "--log-level", "warn")
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return fmt.Errorf("starting containerd: %w", err)
	}
	cmd, done := d.cmd, d.done
	go func() { _ = cmd.Wait(); close(done) }()
	return nil
}

// configFile is the daemon's config: every path under dir, no CRI, no
// debug or metrics socket, and no snapshotter but overlayfs and native.
func configFile(dir string) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"),
		filepath.Join(dir, "containerd.sock"), filepath.Join(dir, "containerd.sock.ttrpc"),
		filepath.Join(dir, "opt"))
}

func (d *Daemon) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return fmt.Errorf("containerd exited at start: %s", d.LogTail())
		default:
		}
		if _, err := os.Stat(d.Address); err == nil {
			c, err := client.New(d.Address, client.WithTimeout(2*time.Second))
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				v, err := c.Version(ctx)
				cancel()
				c.Close()
				if err == nil {
					d.Version = v.Version
					return nil
				}
				last = err
			} else {
				last = err
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("containerd did not answer within %v (%v): %s", timeout, last, d.LogTail())
}

// LogTail is the end of the daemon's log, for failure messages.
func (d *Daemon) LogTail() string {
	b, _ := os.ReadFile(d.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// Client is a new client of the daemon in namespace ns, closed at the end
// of t.
func (d *Daemon) Client(t testing.TB, ns string) *client.Client {
	t.Helper()
	c, err := client.New(d.Address, client.WithDefaultNamespace(ns))
	if err != nil {
		t.Fatalf("connecting to the private containerd: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Stop stops the daemon (its shims are gone once every namespace was
// cleaned), unmounts whatever is left under its directory and removes it.
// It reports what it had to remove by force: processes and mounts that the
// tests' own cleanup left.
func (d *Daemon) Stop() error {
	d.stopDaemon()
	var left []string
	for _, pid := range ProcessesUnder(d.Dir) {
		left = append(left, fmt.Sprintf("process %d", pid))
	}
	killUnder(d.Dir)
	for _, m := range MountsUnder(d.Dir) {
		left = append(left, "mount "+m)
	}
	unmountUnder(d.Dir)
	_ = os.RemoveAll(d.Dir)
	if len(left) > 0 {
		return fmt.Errorf("private containerd %s left %s", d.Dir, strings.Join(left, ", "))
	}
	return nil
}

func (d *Daemon) stopDaemon() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
}

// Restart stops the daemon process and starts it again on the same
// directory, as a system containerd is restarted: the shims and their
// tasks live on.
func (d *Daemon) Restart() error {
	d.stopDaemon()
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return err
	}
	if err := d.launch(bin); err != nil {
		return err
	}
	return d.waitReady(20 * time.Second)
}

// MountsUnder lists the mount points in /proc/mounts under dir.
func MountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
			out = append(out, f[1])
		}
	}
	return out
}

// unmountUnder detaches every mount under dir, deepest first.
func unmountUnder(dir string) {
	ms := MountsUnder(dir)
	slices.SortFunc(ms, func(a, b string) int { return len(b) - len(a) })
	for _, m := range ms {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

// ProcessesUnder lists the pids of processes whose command line names dir
// (the shims of this daemon carry its address).
func ProcessesUnder(dir string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	self := os.Getpid()
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), dir+"/") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killUnder SIGKILLs every process left that names dir: shims of a test
// that failed before its cleanup.
func killUnder(dir string) {
	for _, pid := range ProcessesUnder(dir) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

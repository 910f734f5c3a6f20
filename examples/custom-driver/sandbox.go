package bwrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/golb/golb/drivers/proc"
)

// systemDirs are made visible in every sandbox, read-only: a directory is
// bound, a symlink (merged-/usr systems) is recreated as the same symlink.
var systemDirs = []string{"/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// Descriptors of exec.Cmd.ExtraFiles: bwrap writes its --info-fd JSON (the
// sandbox's PID) to a pipe we read at start, and its --json-status-fd JSON
// (the same, then the exit code) to a file that outlives the plugin.
const (
	infoFD   = 3
	statusFD = 4
)

// infoTimeout bounds the wait for bwrap's info JSON, which it writes as soon as
// it has cloned the sandbox.
const infoTimeout = 10 * time.Second

// sandboxArgs returns bwrap's arguments for running argv. Workers get:
//
//   - their own PID namespace, so that killing the sandbox's init (bwrap's
//     child, PID 1 inside) takes every process of the worker with it;
//   - a new session, so that the worker's process group is the sandbox's and
//     not the outer bwrap's: a SIGTERM reaches the worker while the outer bwrap
//     stays to report its exit status;
//   - private IPC and UTS namespaces, no capabilities, the host network (the
//     worker serves on 127.0.0.1:$PORT);
//   - /usr, /etc and the /bin, /sbin, /lib* links read-only, the program
//     itself and the extra binds read-only at the same paths, fresh /dev and
//     /proc, a private /tmp (also the working directory), and nothing else;
//     the root is read-only.
//
// No --die-with-parent: workers outlive the plugin and golb by design.
func sandboxArgs(argv, binds []string, withInfo bool) []string {
	args := []string{
		"--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
		"--new-session",
		"--cap-drop", "ALL",
	}
	for _, dir := range systemDirs {
		fi, err := os.Lstat(dir)
		switch {
		case err != nil:
			continue
		case fi.Mode()&os.ModeSymlink != 0:
			if target, err := os.Readlink(dir); err == nil {
				args = append(args, "--symlink", target, dir)
			}
		case fi.IsDir():
			args = append(args, "--ro-bind", dir, dir)
		}
	}
	// /tmp first, so that a program or bind under /tmp lands on top of it.
	args = append(args, "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp")
	if len(argv) > 0 && filepath.IsAbs(argv[0]) && !underSystemDir(argv[0]) {
		args = append(args, "--ro-bind", argv[0], argv[0])
	}
	for _, b := range binds {
		args = append(args, "--ro-bind", b, b)
	}
	args = append(args, "--remount-ro", "/", "--chdir", "/tmp")
	if withInfo {
		args = append(args, "--info-fd", fmt.Sprint(infoFD), "--json-status-fd", fmt.Sprint(statusFD))
	}
	args = append(args, "--")
	return append(args, argv...)
}

// underSystemDir reports whether path is already visible through systemDirs.
func underSystemDir(path string) bool {
	for _, dir := range systemDirs {
		if path == dir || strings.HasPrefix(path, dir+"/") {
			return true
		}
	}
	return false
}

// sandbox is what startSandbox needs to run one worker.
type sandbox struct {
	bwrap          string
	argv, binds    []string
	env            []string
	stdout, stderr *os.File
	status         *os.File // receives bwrap's JSON status, exit code included
}

// started is a sandbox that runs: the outer bwrap (our child) and the sandbox's
// init as bwrap's info JSON names it.
type started struct {
	cmd   *exec.Cmd
	info  bwrapInfo
	outer proc.Identity // the outer bwrap
	inner proc.Identity // the sandbox's init
}

// bwrapInfo is the JSON bwrap writes to --info-fd.
type bwrapInfo struct {
	ChildPID     int    `json:"child-pid"`
	PIDNamespace uint64 `json:"pid-namespace"`
}

// startSandbox starts bwrap and returns once the sandbox exists. On any error
// nothing is left running.
func startSandbox(ctx context.Context, sb sandbox) (*started, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("creating bwrap info pipe: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(sb.bwrap, sandboxArgs(sb.argv, sb.binds, true)...)
	cmd.Env = sb.env
	cmd.Stdout, cmd.Stderr = sb.stdout, sb.stderr
	cmd.ExtraFiles = []*os.File{w, sb.status}
	// The outer bwrap leads its own process group, away from golb's terminal.
	// No Pdeathsig: the sandbox outlives the plugin.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("running %s: %w", sb.bwrap, err)
	}
	fail := func(child int, err error) (*started, error) {
		_ = proc.KillGroup(cmd.Process.Pid, syscall.SIGKILL)
		if child > 0 {
			_ = syscall.Kill(child, syscall.SIGKILL)
		}
		_ = cmd.Wait()
		return nil, err
	}
	info, err := readInfo(ctx, r)
	if err != nil {
		return fail(0, err)
	}
	s := &started{cmd: cmd, info: info}
	if s.outer, err = proc.Identify(cmd.Process.Pid); err != nil {
		return fail(info.ChildPID, fmt.Errorf("bwrap exited at once: %w", err))
	}
	if s.inner, err = proc.Identify(info.ChildPID); err != nil {
		return fail(info.ChildPID, fmt.Errorf("sandbox exited at once: %w", err))
	}
	return s, nil
}

// readInfo reads bwrap's info JSON. bwrap closes the pipe without writing when
// it fails before creating the sandbox (its reason is in the stderr log).
func readInfo(ctx context.Context, r *os.File) (bwrapInfo, error) {
	type result struct {
		info bwrapInfo
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		var res result
		res.err = json.NewDecoder(r).Decode(&res.info)
		ch <- res
	}()
	t := time.NewTimer(infoTimeout)
	defer t.Stop()
	select {
	case res := <-ch:
		if res.err != nil {
			return bwrapInfo{}, fmt.Errorf("bwrap failed before creating the sandbox: %w", res.err)
		}
		if res.info.ChildPID <= 0 {
			return bwrapInfo{}, errors.New("bwrap reported no sandbox pid")
		}
		return res.info, nil
	case <-t.C:
		return bwrapInfo{}, fmt.Errorf("bwrap wrote no sandbox info within %v", infoTimeout)
	case <-ctx.Done():
		return bwrapInfo{}, ctx.Err()
	}
}

// bwrapVersion runs `bwrap --version`, e.g. "bubblewrap 0.8.0".
func bwrapVersion(ctx context.Context, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("running %s --version: %w", path, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// probe runs `true` in a sandbox set up like a worker's.
func probe(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	truePath, err := exec.LookPath("true")
	if err != nil {
		return fmt.Errorf("finding the true program: %w", err)
	}
	out, err := exec.CommandContext(ctx, path, sandboxArgs([]string{truePath}, nil, false)...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("%s (are user namespaces disabled? run golb as root or enable them)", msg)
	}
	return nil
}

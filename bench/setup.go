package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// tool is a program a path needs and the Debian package that ships it.
type tool struct {
	bin string // looked up in $PATH and /usr/sbin
	pkg string
}

// tools maps each path to the programs it needs; wrk and taskset serve every path.
var tools = map[string][]tool{
	"haproxy": {{"haproxy", "haproxy"}},
	"nginx":   {{"nginx", "nginx"}},
	"caddy":   {{"caddy", "caddy"}},
}

var loadTools = []tool{{"wrk", "wrk"}, {"taskset", "util-linux"}}

// lookTool finds bin in $PATH or the sbin directories that root's $PATH may lack.
func lookTool(bin string) (string, error) {
	if p, err := exec.LookPath(bin); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, bin)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in $PATH", bin)
}

// ensureTools installs the missing packages with apt-get, retrying, and returns
// the path of every program it found. A program still missing afterwards is
// simply absent from the map: the caller skips the paths that need it.
func ensureTools(ctx context.Context, want []tool) map[string]string {
	found := map[string]string{}
	var missing []string
	for _, t := range want {
		if p, err := lookTool(t.bin); err == nil {
			found[t.bin] = p
		} else if !slices.Contains(missing, t.pkg) {
			missing = append(missing, t.pkg)
		}
	}
	if len(missing) == 0 {
		return found
	}
	progress("installing %s with apt-get", strings.Join(missing, " "))
	if err := aptInstall(ctx, missing); err != nil {
		progress("apt-get: %v", err)
		// One package that cannot be installed must not keep the others out.
		for _, pkg := range missing {
			if len(missing) > 1 {
				if err := aptInstall(ctx, []string{pkg}); err != nil {
					progress("apt-get install %s: %v", pkg, err)
				}
			}
		}
	}
	for _, t := range want {
		if _, ok := found[t.bin]; ok {
			continue
		}
		if p, err := lookTool(t.bin); err == nil {
			found[t.bin] = p
		}
	}
	return found
}

// aptInstall runs apt-get install -y, with an apt-get update and a pause
// between attempts (a held dpkg lock or a stale package list both pass).
func aptInstall(ctx context.Context, pkgs []string) error {
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if attempt > 1 {
			if serr := sleepCtx(ctx, time.Duration(attempt)*3*time.Second); serr != nil {
				return serr
			}
			_ = aptGet(ctx, "update")
		}
		if err = aptGet(ctx, append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)...); err == nil {
			return nil
		}
		progress("apt-get install %s: attempt %d failed: %v", strings.Join(pkgs, " "), attempt, err)
	}
	return err
}

func aptGet(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "apt-get", append([]string{"-q"}, args...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w\n%s", err, tailLines(string(out), 8))
	}
	return nil
}

// buildGolb builds ./cmd/golb into dir, statically (CGO_ENABLED=0), from the
// module root's work tree, or, when rev is not empty, from that git revision
// exported into dir/src (the work tree is left alone).
func buildGolb(ctx context.Context, root, rev, dir string) (string, error) {
	out := filepath.Join(dir, "golb")
	src := root
	if rev != "" {
		src = filepath.Join(dir, "src")
		if err := os.MkdirAll(src, 0o755); err != nil {
			return "", err
		}
		export := exec.CommandContext(ctx, "sh", "-c", `git -C "$1" archive --format=tar "$2" | tar -x -C "$3"`, "sh", root, rev, src)
		if b, err := export.CombinedOutput(); err != nil {
			return "", fmt.Errorf("exporting golb at %s: %w\n%s", rev, err, tailLines(string(b), 10))
		}
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/golb")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building golb: %w\n%s", err, tailLines(string(b), 20))
	}
	return out, nil
}

// moduleRoot walks up from the working directory to the go.mod of golb.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/golb/golb\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the golb module: run from the repo (go run ./bench)")
		}
		dir = parent
	}
}

// raiseNofile sets the soft RLIMIT_NOFILE to the hard limit. Go raises its
// own soft limit at startup but hands children the original one; after an
// explicit Setrlimit the children inherit the raised limit.
func raiseNofile() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", lim.Max, err)
	}
	return lim.Max, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

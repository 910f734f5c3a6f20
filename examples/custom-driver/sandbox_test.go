package bwrap_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/drivertest"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startWorker starts a worker and registers its destruction.
func startWorker(t *testing.T, d drivers.Driver, id string, cfg map[string]any) drivers.WorkerSpec {
	t.Helper()
	spec := drivers.WorkerSpec{
		ID:       id,
		Group:    "sandbox",
		Port:     drivertest.FreePort(t),
		BindAddr: "127.0.0.1",
		Config:   config(t, cfg),
	}
	if _, err := d.Start(testCtx(t), spec); err != nil {
		t.Fatalf("Start(%s): %v", id, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = d.Destroy(ctx, id)
	})
	return spec
}

// TestSandboxIsolation runs a script in a sandbox and checks what it could
// see and do: read-only system directories, a private /tmp, only the binds
// it was given, its own PID namespace, none of the plugin's environment, and
// its exit code reported through bwrap.
func TestSandboxIsolation(t *testing.T) {
	requireBwrap(t)
	d := configured(t, t.TempDir(), "GOLB_TEST_LEAK=leaked")

	bound := t.TempDir()
	if err := os.WriteFile(filepath.Join(bound, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	hostTmp, err := os.CreateTemp("", "golb-bwrap-host-")
	if err != nil {
		t.Fatal(err)
	}
	hostTmp.Close()
	t.Cleanup(func() { os.Remove(hostTmp.Name()) })
	secret, err := filepath.Abs("go.mod") // outside every bind
	if err != nil {
		t.Fatal(err)
	}

	script := `sleep 0.3
echo "pid=$$"
echo "init=$(cat /proc/1/comm)"
if [ -e "$SECRET" ]; then echo secret=visible; else echo secret=hidden; fi
if [ -e "$HOSTTMP" ]; then echo hosttmp=visible; else echo hosttmp=hidden; fi
if cat "$BOUND/file" >/dev/null 2>&1; then echo bound=readable; else echo bound=missing; fi
if touch "$BOUND/new" 2>/dev/null; then echo boundwrite=ok; else echo boundwrite=denied; fi
if touch /usr/golb-bwrap-probe 2>/dev/null; then echo usrwrite=ok; else echo usrwrite=denied; fi
if echo x > /tmp/mine; then echo tmpwrite=ok; else echo tmpwrite=denied; fi
echo "leak=${GOLB_TEST_LEAK:-none}"
echo "cwd=$(pwd)"
exit 3`
	spec := startWorker(t, d, "isolation", map[string]any{
		"command": []string{"sh", "-c", script},
		"binds":   []string{bound},
		"env":     map[string]string{"SECRET": secret, "HOSTTMP": hostTmp.Name(), "BOUND": bound},
	})
	res, err := d.Wait(testCtx(t), spec.ID)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	st, err := d.Inspect(testCtx(t), spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(st.Details["stdout"])
	if err != nil {
		t.Fatalf("reading the worker's stdout log: %v", err)
	}
	errOut, _ := os.ReadFile(st.Details["stderr"])
	t.Logf("sandbox saw:\n%s(stderr: %q)", out, errOut)
	if res.ExitCode != 3 || res.Signal != 0 {
		t.Errorf("exit = %v, want exit code 3", res)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			got[k] = v
		}
	}
	for k, want := range map[string]string{
		"pid":        "2", // init is 1: the command is its first child
		"init":       "bwrap",
		"secret":     "hidden",
		"hosttmp":    "hidden",
		"bound":      "readable",
		"boundwrite": "denied",
		"usrwrite":   "denied",
		"tmpwrite":   "ok",
		"leak":       "none",
		"cwd":        "/tmp",
	} {
		if got[k] != want {
			t.Errorf("in the sandbox %s = %q, want %q", k, got[k], want)
		}
	}
	if _, err := os.Stat(filepath.Join(bound, "new")); err == nil {
		t.Error("the sandbox wrote into a read-only bind")
	}
}

// TestStopLeavesNoStrayProcesses pins why workers get their own PID
// namespace: a process that left the worker's process group (setsid) and so
// never receives the SIGTERM still dies with the sandbox.
func TestStopLeavesNoStrayProcesses(t *testing.T) {
	requireBwrap(t)
	d := configured(t, t.TempDir())
	spec := startWorker(t, d, "strays", map[string]any{
		"command": []string{"sh", "-c", "setsid sleep 300 & trap 'exit 0' TERM; while :; do sleep 0.1; done"},
	})
	st, err := d.Inspect(testCtx(t), spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	ns := st.Details["pid_namespace"]
	if ns == "" || ns == "0" {
		t.Fatalf("Inspect details %v lack the pid namespace", st.Details)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !hasStray(ns) {
		if time.Now().After(deadline) {
			t.Fatalf("the setsid'd sleep never showed up in pid namespace %s", ns)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := d.Stop(testCtx(t), spec.ID, "SIGTERM", 10*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	res, err := d.Wait(testCtx(t), spec.ID)
	if err != nil || !res.Successful() {
		t.Errorf("Wait after Stop: %v, %v; want a clean exit (the script traps TERM)", res, err)
	}
	begin := time.Now()
	for len(inNamespace(ns)) > 0 {
		if time.Since(begin) > 10*time.Second {
			t.Fatalf("processes %v of the stopped sandbox are still running", inNamespace(ns))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("sandbox empty %v after Stop returned", time.Since(begin))
}

// inNamespace returns the host PIDs of the live (not zombie) processes in
// PID namespace ns.
func inNamespace(ns string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		link, err := os.Readlink("/proc/" + e.Name() + "/ns/pid")
		if err != nil || link != "pid:["+ns+"]" {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if i := strings.LastIndexByte(string(stat), ')'); err == nil && i > 0 && strings.HasPrefix(string(stat[i:]), ") Z") {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// hasStray reports whether `sleep 300` runs in PID namespace ns.
func hasStray(ns string) bool {
	for _, pid := range inNamespace(ns) {
		cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if string(cmdline) == "sleep\x00300\x00" {
			return true
		}
	}
	return false
}

// TestRecoveredWorkerKeepsExitCode: a worker re-attached after a plugin crash
// is not the new plugin's child, yet its exit code is known, because bwrap
// writes it to the status file in the data directory; its last words come
// from its stderr log.
func TestRecoveredWorkerKeepsExitCode(t *testing.T) {
	requireBwrap(t)
	dataDir := t.TempDir()
	first := configured(t, dataDir)
	spec := startWorker(t, first, "survivor", map[string]any{
		"command": []string{"sh", "-c", "trap 'echo leaving with 7 >&2; exit 7' TERM; while :; do sleep 0.1; done"},
	})
	if err := syscall.Kill(first.Pid(), syscall.SIGKILL); err != nil {
		t.Fatalf("killing the plugin: %v", err)
	}

	second := configured(t, dataDir)
	t.Cleanup(func() { _ = second.Destroy(context.Background(), spec.ID) })
	hs, err := second.List(testCtx(t), map[string]string{drivers.LabelWorker: spec.ID})
	if err != nil || len(hs) != 1 {
		t.Fatalf("List after the plugin crash: %v, %v; want the worker", hs, err)
	}
	if err := second.Recover(testCtx(t), hs[0]); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if err := second.Stop(testCtx(t), spec.ID, "SIGTERM", 10*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	res, err := second.Wait(testCtx(t), spec.ID)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if res.ExitCode != 7 || res.Err != "" || !strings.HasSuffix(res.Output, "leaving with 7") {
		t.Fatalf("recovered worker's exit = %v (output %q), want exit code 7 with its stderr line", res, res.Output)
	}
}

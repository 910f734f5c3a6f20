package bwrap_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/drivertest"

	bwrap "github.com/golb/golb/examples/custom-driver"
)

// binDir holds the binaries the tests build: the plugin exactly as a user
// builds it, and a static test worker.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "golb-bwrap-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var built struct {
	once           sync.Once
	plugin, worker string
	err            error
}

// binaries builds ./cmd/golb-driver-bwrap and ./testdata/worker once.
func binaries(t testing.TB) (plugin, worker string) {
	t.Helper()
	built.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			built.err = fmt.Errorf("finding the go tool: %w", err)
			return
		}
		built.plugin = filepath.Join(binDir, "golb-driver-bwrap")
		built.worker = filepath.Join(binDir, "worker")
		for _, b := range []struct{ out, pkg string }{
			{built.plugin, "./cmd/golb-driver-bwrap"},
			{built.worker, "./testdata/worker"},
		} {
			cmd := exec.Command(goTool, "build", "-o", b.out, b.pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				built.err = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.plugin, built.worker
}

var usable struct {
	once   sync.Once
	detail string
	ok     bool
}

// requireBwrap skips the test when bwrap is missing or cannot create a
// sandbox here, and fails it instead when GOLB_REQUIRE (a comma list) names
// bwrap, as CI sets it. The reason is the driver's own Fingerprint.
func requireBwrap(t testing.TB) {
	t.Helper()
	usable.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		fp, err := bwrap.New(nil).Fingerprint(ctx)
		switch {
		case err != nil:
			usable.detail = err.Error()
		case !fp.Healthy:
			usable.detail = fp.Detail
		default:
			usable.ok = true
		}
	})
	if usable.ok {
		return
	}
	for _, name := range strings.Split(os.Getenv("GOLB_REQUIRE"), ",") {
		if strings.TrimSpace(name) == "bwrap" {
			t.Fatalf("GOLB_REQUIRE names bwrap, but bwrap cannot be used: %s", usable.detail)
		}
	}
	t.Skipf("bwrap cannot be used (set GOLB_REQUIRE=bwrap to fail instead): %s", usable.detail)
}

// launch starts the built plugin binary as golb does.
func launch(t testing.TB, env ...string) *drivers.Client {
	t.Helper()
	plugin, _ := binaries(t)
	cmd := exec.Command(plugin)
	cmd.Env = append(os.Environ(), env...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := drivers.Launch(ctx, drivers.ClientConfig{Cmd: cmd})
	if err != nil {
		t.Fatalf("launching %s: %v", plugin, err)
	}
	t.Cleanup(c.Kill)
	return c
}

// configured launches a plugin that keeps its files in dataDir.
func configured(t testing.TB, dataDir string, env ...string) *drivers.Client {
	t.Helper()
	c := launch(t, env...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.SetConfig(ctx, drivers.PluginConfig{DataDir: dataDir}); err != nil {
		t.Fatalf("SetConfig: %v", err)
	}
	return c
}

func config(t testing.TB, v map[string]any) json.RawMessage {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// crashScript is the conformance suite's crashing worker: a line on stdout,
// its last words on stderr, then exit 3 a moment later (a sandbox gone
// before Start identified it would fail Start instead).
const crashScript = "echo on stdout; echo 'worker: bad setting, giving up' >&2; sleep 1; exit 3"

// wrapperScript is the suite's wrapper worker, a run.sh that does not exec:
// it runs the worker ($0) as its child and waits, or exits 3 after
// $GOLB_TEST_WRAPPER_EXIT seconds, leaving the child behind.
const wrapperScript = `"$0" & if [ -n "$GOLB_TEST_WRAPPER_EXIT" ]; then sleep "$GOLB_TEST_WRAPPER_EXIT"; exit 3; fi; wait`

// TestConformance runs golb's driver conformance suite against the real
// golb-driver-bwrap binary, with the demo worker inside the sandboxes.
func TestConformance(t *testing.T) {
	requireBwrap(t)
	_, worker := binaries(t)
	drivertest.Run(t, drivertest.Harness{
		Launch: func(t *testing.T) *drivers.Client { return launch(t) },
		// No Serving config: the built-in worker, whose command golb
		// sends in WorkerSpec.WorkerCommand. (drivers/drivertest's own
		// test of this driver gives a command instead.)
		WorkerCommand: []string{worker},
		IgnoresTERM:   config(t, map[string]any{"command": []string{worker}, "env": map[string]string{"GOLB_TEST_IGNORE_TERM": "1"}}),
		BadConfig:     config(t, map[string]any{"command": []string{"/no/such/program"}}),
		Crashing:      config(t, map[string]any{"command": []string{"sh", "-c", crashScript}}),
		CrashOutput:   "worker: bad setting, giving up",
		// A run.sh that does not exec its server.
		Wrapper: config(t, map[string]any{"command": []string{"sh", "-c", wrapperScript, worker},
			"binds": []string{worker}, "env": map[string]string{"GOLB_TEST_IGNORE_TERM": "1"}}),
		Leftovers:   drivertest.MarkedProcesses,
		IdentityKey: "pid",
	})
}

func TestInfo(t *testing.T) {
	c := launch(t)
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "bwrap" || !info.Capabilities.Recover || info.Capabilities.Isolation != "namespace" {
		t.Fatalf("Info = %+v", info)
	}
	var required []string
	for _, a := range info.ConfigSchema {
		if a.Required {
			required = append(required, a.Name)
		}
	}
	// No command runs golb's built-in worker, from WorkerSpec.WorkerCommand.
	if len(required) != 0 {
		t.Fatalf("required config attributes = %v, want none", required)
	}
}

func TestValidateConfig(t *testing.T) {
	c := launch(t)
	ctx := context.Background()
	for _, tc := range []struct {
		config string
		attr   string
	}{
		{`{"command":[]}`, "command"},
		{`{"command":["/no/such/bin"]}`, "command"},
		{`{"command":["/bin/sh"],"binds":["relative/dir"]}`, "binds"},
		{`{"command":["/bin/sh"],"binds":["/no/such/dir"]}`, "binds"},
		{`{"command":["/bin/sh"],"env":{"A=B":"x"}}`, "env"},
	} {
		diags, err := c.ValidateConfig(ctx, json.RawMessage(tc.config))
		if err != nil {
			t.Fatal(err)
		}
		if len(diags) != 1 || diags[0].Attribute != tc.attr {
			t.Errorf("ValidateConfig(%s) = %v, want one diagnostic on %q", tc.config, diags, tc.attr)
		}
	}
	diags, err := c.ValidateConfig(ctx, json.RawMessage(`{"command":["/bin/sh","-c","exit 0"],"binds":["/usr/share"],"env":{"A":"b"}}`))
	if err != nil || len(diags) != 0 {
		t.Errorf("valid config: %v, %v", diags, err)
	}
}

// TestFingerprintWithoutBwrap checks the message a user without bubblewrap
// sees in `golb drivers`.
func TestFingerprintWithoutBwrap(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	fp, err := bwrap.New(nil).Fingerprint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if fp.Healthy || !strings.Contains(fp.Detail, "apt-get install bubblewrap") {
		t.Fatalf("Fingerprint without bwrap = %+v, want unhealthy with an install hint", fp)
	}
	t.Logf("detail: %s", fp.Detail)

	c := launch(t)
	err = c.SetConfig(context.Background(), drivers.PluginConfig{DataDir: t.TempDir(), Settings: json.RawMessage(`{"bwrap":"/no/such/bwrap"}`)})
	if !errors.Is(err, drivers.ErrBadConfig) {
		t.Fatalf("SetConfig with a missing bwrap: %v, want ErrBadConfig", err)
	}
}

// TestRecoverRejectsReusedPID pins that a handle whose PID now belongs to
// another process (a different start time) is never adopted.
func TestRecoverRejectsReusedPID(t *testing.T) {
	c := configured(t, t.TempDir())
	blob, _ := json.Marshal(map[string]any{"version": 1, "pid": os.Getpid(), "start_time": 1, "sandbox_pid": os.Getpid(), "sandbox_start_time": 1, "address": "127.0.0.1:1"})
	err := c.Recover(context.Background(), &drivers.Handle{ID: "reused", Driver: "bwrap", StateVersion: 1, State: blob})
	if !errors.Is(err, drivers.ErrStaleHandle) {
		t.Fatalf("Recover of a reused PID: %v, want ErrStaleHandle", err)
	}
	t.Logf("rejected: %v", err)
}

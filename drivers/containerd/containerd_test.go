package containerd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/containerd"
	"github.com/golb/golb/drivers/containerd/ctrdtest"
	"github.com/golb/golb/drivers/drivertest"
	"github.com/golb/golb/workerapp"
)

// TestMain lets the test binary play the plugin (GOLB_TEST_PLUGIN=containerd)
// and the built-in worker ("worker" argument), as the golb binary does for
// real, and stops the private containerd at the end.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		os.Exit(workerapp.Main(os.Args[2:], os.Getenv, os.Stderr))
	}
	if os.Getenv("GOLB_TEST_PLUGIN") == "containerd" {
		drivers.Serve(containerd.New(nil))
		os.Exit(0)
	}
	code := m.Run()
	if err := ctrdtest.StopShared(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		code = 1
	}
	if worker.dir != "" {
		os.RemoveAll(worker.dir)
	}
	os.Exit(code)
}

var worker struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// staticWorker builds the docker driver's test worker once per test run
// with cgo off: a static binary that runs the worker app as `worker` and,
// with GOLB_TEST_IGNORE_TERM=1, ignores SIGTERM.
func staticWorker(t testing.TB) string {
	t.Helper()
	worker.once.Do(func() {
		worker.dir, worker.err = os.MkdirTemp("", "golb-containerd-test-")
		if worker.err != nil {
			return
		}
		out := filepath.Join(worker.dir, "worker")
		cmd := exec.Command(goTool(), "build", "-o", out, "../docker/testdata/worker")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			worker.err = fmt.Errorf("%v\n%s", err, msg)
			return
		}
		worker.path = out
	})
	if worker.err != nil {
		t.Fatalf("building the static test worker: %v", worker.err)
	}
	return worker.path
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func launch(t testing.TB) *drivers.Client {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "GOLB_TEST_PLUGIN=containerd")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := drivers.Launch(ctx, drivers.ClientConfig{Cmd: cmd, Name: containerd.Name})
	if err != nil {
		t.Fatalf("launching containerd driver plugin: %v", err)
	}
	return c
}

// pluginConfig is a plugin config with the given settings block.
func pluginConfig(t testing.TB, block map[string]string) drivers.PluginConfig {
	raw, _ := json.Marshal(block)
	return drivers.PluginConfig{DataDir: t.TempDir(), Settings: raw}
}

// launchIn starts a configured plugin on env, killed at the end of t.
func launchIn(t testing.TB, env ctrdtest.Env, extra map[string]string) *drivers.Client {
	t.Helper()
	c := launch(t)
	t.Cleanup(c.Kill)
	if err := c.SetConfig(context.Background(), pluginConfig(t, env.Settings(extra))); err != nil {
		t.Fatalf("SetConfig: %v", err)
	}
	return c
}

func TestConformance(t *testing.T) {
	env := ctrdtest.NewEnv(t)
	cli := env.Daemon.Client(t, env.Namespace)
	drivertest.Run(t, drivertest.Harness{
		Launch:      func(t *testing.T) *drivers.Client { return launch(t) },
		Plugin:      drivers.PluginConfig{Settings: mustJSON(env.Settings(map[string]string{"worker_binary": staticWorker(t)}))},
		IgnoresTERM: json.RawMessage(`{"env":{"GOLB_TEST_IGNORE_TERM":"1"}}`),
		BadConfig:   json.RawMessage(`{"image":"golb-no-such-image:1"}`),
		// golb's worker refuses an argument with one line on stderr and
		// exits 2 at once.
		Crashing:     json.RawMessage(`{"command":["/golb","worker","--bogus"]}`),
		CrashOutput:  `golb worker: unexpected argument "--bogus"`,
		IdentityKey:  "pid",
		StartTimeout: 30 * time.Second,
		// The daemon's own containers, tasks, snapshots and mounts of the
		// worker, not what List says.
		Leftovers: engineLeftovers(env, cli),
	})
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

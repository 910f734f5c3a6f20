package nice_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/drivertest"
	"github.com/golb/golb/workerapp"

	"github.com/golb/golb/examples/custom-driver/nice"
)

// TestMain lets the test binary be the plugin ($GOLB_TEST_NICE_PLUGIN=1)
// and the worker it runs ("worker" argument), as go-plugin's own tests do.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		os.Exit(worker())
	}
	if os.Getenv("GOLB_TEST_NICE_PLUGIN") == "1" {
		drivers.Serve(nice.New())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// worker is golb's built-in worker; with GOLB_TEST_IGNORE_TERM=1 it is deaf
// to SIGTERM, so that only SIGKILL ends it.
func worker() int {
	if os.Getenv("GOLB_TEST_IGNORE_TERM") != "1" {
		return workerapp.Main(os.Args[2:], os.Getenv, os.Stderr)
	}
	signal.Ignore(syscall.SIGTERM)
	cfg, err := workerapp.ConfigFromEnv(os.Getenv)
	if err == nil {
		err = workerapp.New(cfg).Run(context.Background())
	}
	fmt.Fprintln(os.Stderr, "worker:", err)
	return 1
}

func TestConformance(t *testing.T) {
	if _, err := exec.LookPath("nice"); err != nil {
		t.Skipf("nice not found: %v", err)
	}
	drivertest.Run(t, drivertest.Harness{
		Launch: func(t *testing.T) *drivers.Client {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "GOLB_TEST_NICE_PLUGIN=1")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := drivers.Launch(ctx, drivers.ClientConfig{Cmd: cmd, Name: "nice"})
			if err != nil {
				t.Fatalf("launching the nice plugin: %v", err)
			}
			return c
		},
		// No Serving config: the driver runs the built-in worker, whose
		// command golb sends in WorkerSpec.WorkerCommand.
		WorkerCommand: []string{os.Args[0], "worker"},
		IgnoresTERM:   config(t, map[string]any{"command": []string{"env", "GOLB_TEST_IGNORE_TERM=1", os.Args[0], "worker"}}),
		BadConfig:     json.RawMessage(`{"command": ["/no/such/program"]}`),
		Crashing:      json.RawMessage(`{"command": ["sh", "-c", "echo 'worker: bad setting, giving up' >&2; sleep 1; exit 3"]}`),
		CrashOutput:   "worker: bad setting, giving up",
		Wrapper: config(t, map[string]any{"command": []string{"sh", "-c",
			`GOLB_TEST_IGNORE_TERM=1 "$0" worker & if [ -n "$GOLB_TEST_WRAPPER_EXIT" ]; then sleep "$GOLB_TEST_WRAPPER_EXIT"; exit 3; fi; wait`, os.Args[0]}}),
		Leftovers:   drivertest.MarkedProcesses,
		IdentityKey: "pid",
	})
}

func config(t *testing.T, v map[string]any) json.RawMessage {
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestWorkerRunsNiced: the worker runs at the configured nice value.
func TestWorkerRunsNiced(t *testing.T) {
	d := nice.New()
	ctx := context.Background()
	if err := d.SetConfig(ctx, drivers.PluginConfig{DataDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	spec := drivers.WorkerSpec{ID: "niced", Group: "g", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1",
		WorkerCommand: []string{os.Args[0], "worker"}, Config: json.RawMessage(`{"niceness": 7}`)}
	h, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Destroy(ctx, spec.ID) }()
	drivertest.WaitHTTP(t, "http://"+h.Address+"/healthz", 10*time.Second)
	st, err := d.Inspect(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	// nice(1) adds to the caller's nice value (CI may itself run niced).
	want := min(niceOf(t, "self")+7, 19)
	if got := niceOf(t, st.Details["pid"]); got != want {
		t.Fatalf("worker's nice value %d, want %d", got, want)
	}
}

// niceOf is the nice value of process pid ("self" for this one).
func niceOf(t *testing.T, pid string) int {
	t.Helper()
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Field 19 is the nice value; fields after the command name ")" start at 3.
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	n, err := strconv.Atoi(fields[19-3])
	if err != nil {
		t.Fatalf("nice value of %s: %v", pid, err)
	}
	return n
}

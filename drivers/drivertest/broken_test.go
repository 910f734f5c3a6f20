package drivertest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/drivertest"
	"github.com/golb/golb/drivers/process"
	"github.com/golb/golb/workerapp"
)

// The test binary plays three parts, as go-plugin's helperProcess does:
//   - the plugin, a process driver broken the way $GOLB_TEST_BROKEN_PLUGIN
//     says ("" for not at all);
//   - the worker that plugin runs ("worker" argument);
//   - the suite run against a broken plugin ($GOLB_TEST_BROKEN_SUITE), whose
//     failure TestSuiteCatchesBrokenDrivers reads from its output.
const (
	brokenPluginEnv = "GOLB_TEST_BROKEN_PLUGIN"
	brokenSuiteEnv  = "GOLB_TEST_BROKEN_SUITE"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if os.Getenv("GOLB_TEST_IGNORE_TERM") == "1" {
			os.Exit(deafWorker())
		}
		os.Exit(workerapp.Main(os.Args[2:], os.Getenv, os.Stderr))
	}
	if mode, ok := os.LookupEnv(brokenPluginEnv); ok {
		drivers.Serve(&broken{Driver: process.New(nil), mode: mode})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// deafWorker is the built-in worker deaf to SIGTERM: only SIGKILL ends it.
func deafWorker() int {
	signal.Ignore(syscall.SIGTERM)
	cfg, err := workerapp.ConfigFromEnv(os.Getenv)
	if err == nil {
		err = workerapp.New(cfg).Run(context.Background())
	}
	fmt.Fprintln(os.Stderr, "worker:", err)
	return 1
}

// broken is the process driver with one bug, chosen by mode: "panic-CALL"
// panics in CALL; "empty-address" and "bad-address" spoil Start's handle,
// "list-bad-address" List's; "stop-ignores-ctx" is a Stop deaf to its ctx.
type broken struct {
	*process.Driver
	mode string
}

// fault panics when the mode says CALL panics.
func (b *broken) fault(call string) {
	if b.mode == "panic-"+call {
		panic("broken driver: panic in " + call)
	}
}

func (b *broken) Info(ctx context.Context) (drivers.Info, error) {
	b.fault("Info")
	return b.Driver.Info(ctx)
}

func (b *broken) SetConfig(ctx context.Context, cfg drivers.PluginConfig) error {
	b.fault("SetConfig")
	return b.Driver.SetConfig(ctx, cfg)
}

func (b *broken) Fingerprint(ctx context.Context) (drivers.Fingerprint, error) {
	b.fault("Fingerprint")
	return b.Driver.Fingerprint(ctx)
}

func (b *broken) ValidateConfig(ctx context.Context, raw json.RawMessage) ([]drivers.Diagnostic, error) {
	b.fault("ValidateConfig")
	return b.Driver.ValidateConfig(ctx, raw)
}

func (b *broken) Start(ctx context.Context, spec drivers.WorkerSpec) (*drivers.Handle, error) {
	b.fault("Start")
	h, err := b.Driver.Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	switch b.mode {
	case "empty-address":
		h.Address = ""
	case "bad-address":
		h.Address = "localhost"
	}
	return h, nil
}

func (b *broken) Wait(ctx context.Context, id string) (drivers.ExitResult, error) {
	b.fault("Wait")
	return b.Driver.Wait(ctx, id)
}

func (b *broken) Inspect(ctx context.Context, id string) (drivers.Status, error) {
	b.fault("Inspect")
	return b.Driver.Inspect(ctx, id)
}

func (b *broken) Stop(ctx context.Context, id, sig string, timeout time.Duration) error {
	b.fault("Stop")
	if b.mode == "stop-ignores-ctx" {
		ctx = context.Background()
	}
	return b.Driver.Stop(ctx, id, sig, timeout)
}

// Destroy does its work before it panics, so that the suite's run leaves no
// worker behind: golb still sees a call that never answered.
func (b *broken) Destroy(ctx context.Context, id string) error {
	err := b.Driver.Destroy(ctx, id)
	b.fault("Destroy")
	return err
}

func (b *broken) Recover(ctx context.Context, h *drivers.Handle) error {
	b.fault("Recover")
	return b.Driver.Recover(ctx, h)
}

func (b *broken) List(ctx context.Context, labels map[string]string) ([]*drivers.Handle, error) {
	b.fault("List")
	hs, err := b.Driver.List(ctx, labels)
	if b.mode == "list-bad-address" {
		for _, h := range hs {
			h.Address = ""
		}
	}
	return hs, err
}

var (
	_ drivers.Driver     = (*broken)(nil)
	_ drivers.Configurer = (*broken)(nil)
)

// brokenHarness runs the suite against the test binary as the plugin,
// broken as mode says.
func brokenHarness(t *testing.T, mode string) drivertest.Harness {
	raw, _ := json.Marshal(map[string]any{"worker_command": []string{os.Args[0], "worker"}})
	return drivertest.Harness{
		Launch: func(t *testing.T) *drivers.Client {
			t.Helper()
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), brokenPluginEnv+"="+mode)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := drivers.Launch(ctx, drivers.ClientConfig{Cmd: cmd, Name: "broken"})
			if err != nil {
				t.Fatalf("launching the broken plugin: %v", err)
			}
			return c
		},
		Plugin:      drivers.PluginConfig{DataDir: t.TempDir(), Settings: raw},
		IgnoresTERM: json.RawMessage(`{"env":{"GOLB_TEST_IGNORE_TERM":"1"}}`),
		BadConfig:   json.RawMessage(`{"command":["/no/such/program"]}`),
		Crashing:    json.RawMessage(`{"command":["sh","-c","echo 'worker: bad setting, giving up' >&2; sleep 1; exit 3"]}`),
		CrashOutput: "worker: bad setting, giving up",
		IdentityKey: "pid",
	}
}

// TestSuitePassesAGoodDriver: the wrapper with no bug passes the whole
// suite, so each failure below is its bug's, not the wrapper's.
func TestSuitePassesAGoodDriver(t *testing.T) {
	if os.Getenv(brokenSuiteEnv) != "" {
		t.Skip("running the suite against a broken driver")
	}
	drivertest.Run(t, brokenHarness(t, ""))
}

// TestBrokenDriverSuite is the suite against the driver broken as
// $GOLB_TEST_BROKEN_SUITE says; it runs only in the child process that
// TestSuiteCatchesBrokenDrivers starts, and is meant to fail.
func TestBrokenDriverSuite(t *testing.T) {
	mode := os.Getenv(brokenSuiteEnv)
	if mode == "" {
		t.Skip("only run by TestSuiteCatchesBrokenDrivers")
	}
	drivertest.Run(t, brokenHarness(t, mode))
}

// TestSuiteCatchesBrokenDrivers: for each way a beginner's driver breaks,
// the suite fails, and its output says what golb would choke on: the panic's
// own line rather than only "error reading from server: EOF", the refused
// reply, the Stop that ignored its ctx.
func TestSuiteCatchesBrokenDrivers(t *testing.T) {
	if os.Getenv(brokenSuiteEnv) != "" {
		t.Skip("running the suite against a broken driver")
	}
	for _, tc := range []struct {
		mode, subtest string
		want          []string // each in the output
	}{
		{"panic-Info", "UnknownWorker", nil},
		{"panic-Fingerprint", "UnknownWorker", nil},
		{"panic-ValidateConfig", "UnknownWorker", nil},
		{"panic-SetConfig", "UnknownWorker", nil},
		{"panic-Start", "StartServeStopDestroy", nil},
		{"panic-Wait", "StartServeStopDestroy", nil},
		{"panic-Inspect", "StartServeStopDestroy", nil},
		{"panic-Stop", "StartServeStopDestroy", nil},
		{"panic-Destroy", "StartServeStopDestroy", nil},
		{"panic-List", "StartServeStopDestroy", nil},
		{"panic-Recover", "RecoverAfterPluginCrash", nil},
		{"empty-address", "StartServeStopDestroy", []string{"golb refuses the reply", "empty worker address"}},
		{"bad-address", "StartServeStopDestroy", []string{"golb refuses the reply", `worker address "localhost" is not host:port`}},
		{"list-bad-address", "StartServeStopDestroy", []string{"List: golb refuses the reply", "handle 1 of 1: empty worker address"}},
		{"stop-ignores-ctx", "StopHonoursDeadline", []string{"Stop ignored its ctx", drivers.MsgOutlivedContext, `"call":"Stop"`}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			want := tc.want
			if call, ok := strings.CutPrefix(tc.mode, "panic-"); ok {
				want = []string{"the driver plugin crashed: panic: broken driver: panic in " + call, "driver plugin stderr"}
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenDriverSuite$/^"+tc.subtest+"$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), brokenSuiteEnv+"="+tc.mode)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a driver broken by %s:\n%s", tc.mode, out)
			}
			if !strings.Contains(string(out), fmt.Sprintf("--- FAIL: TestBrokenDriverSuite/%s", tc.subtest)) {
				t.Fatalf("subtest %s did not fail (%v):\n%s", tc.subtest, err, out)
			}
			for _, w := range want {
				if !strings.Contains(string(out), w) {
					t.Errorf("the suite's output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

package core

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/golb/golb/core/config"
	"github.com/golb/golb/core/state"
	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/process"
	"github.com/golb/golb/internal/testutil"
	"github.com/golb/golb/workerapp"
)

// agentConfigEnv makes the test binary run an agent on the named config file
// until it is killed (the first agent of the adoption tests).
const agentConfigEnv = "GOLB_CORE_AGENT_CONFIG"

// testBuiltins are the drivers the test binary serves as `driver NAME`.
var testBuiltins = []string{"process"}

// TestMain lets the test binary play golb: `driver process` serves the
// built-in process driver (the agent runs Options.Self... driver process),
// `worker` is the built-in worker (the process driver runs its own
// executable with "worker"), and $GOLB_CORE_AGENT_CONFIG runs an agent.
//
// A test-only knob, not golb's: `listgate PATH driver process` (an agent
// whose Options.Self is [test binary, "listgate", PATH]) serves the process
// driver with a List that fails until PATH exists, a runtime that is down
// when golb starts and comes up later (see gatedList).
//
// The others, `KNOB driver process`, serve the process driver with one bug
// of a beginner's plugin each (see knobDrivers): a Start that replies with
// an empty address (noaddress), a Start that panics (panicstart), a Stop
// that panics (panicstop), a Stop that never returns (hangstop), and that
// with a Destroy that fails too (hangstopdestroyfails); and one that checks what core puts in each
// WorkerSpec (strictspec).
func TestMain(m *testing.M) {
	if len(os.Args) > 4 && os.Args[1] == "listgate" && os.Args[3] == "driver" && os.Args[4] == "process" {
		drivers.Serve(&gatedList{Driver: process.New(nil), gate: os.Args[2]})
		os.Exit(0)
	}
	if len(os.Args) > 3 && os.Args[2] == "driver" && os.Args[3] == "process" {
		if mk, ok := knobDrivers[os.Args[1]]; ok {
			drivers.Serve(mk(process.New(nil)))
			os.Exit(0)
		}
	}
	if len(os.Args) > 2 && os.Args[1] == "driver" && os.Args[2] == "process" {
		drivers.Serve(process.New(nil))
		os.Exit(0)
	}
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		os.Exit(workerapp.Main(os.Args[2:], os.Getenv, os.Stderr))
	}
	if path := os.Getenv(agentConfigEnv); path != "" {
		os.Exit(agentMain(path))
	}
	// The race runtime sleeps 1s at exit; the plugin and worker
	// subprocesses inherit this and stop as fast as the real binary.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Exit(m.Run())
}

// gatedList is the process driver with a runtime that is down until the file
// gate exists: List fails, as docker's does while its daemon is stopped.
type gatedList struct {
	*process.Driver
	gate string
}

func (d *gatedList) List(ctx context.Context, labels map[string]string) ([]*drivers.Handle, error) {
	if _, err := os.Stat(d.gate); err != nil {
		return nil, fmt.Errorf("runtime down (test): %s does not exist", d.gate)
	}
	return d.Driver.List(ctx, labels)
}

// knobDrivers are the test binary's broken plugins, by knob.
var knobDrivers = map[string]func(*process.Driver) drivers.Driver{
	"noaddress":            func(d *process.Driver) drivers.Driver { return &noAddress{d} },
	"panicstart":           func(d *process.Driver) drivers.Driver { return &panicStart{d} },
	"hangstop":             func(d *process.Driver) drivers.Driver { return &hangStop{Driver: d} },
	"hangstopdestroyfails": func(d *process.Driver) drivers.Driver { return &hangStop{Driver: d, destroyFails: true} },
	"strictspec":           func(d *process.Driver) drivers.Driver { return &strictSpec{d} },
	"panicstop":            func(d *process.Driver) drivers.Driver { return &panicStop{d} },
	"hangrecover":          func(d *process.Driver) drivers.Driver { return &hangRecover{Driver: d} },
	"slowrecover":          func(d *process.Driver) drivers.Driver { return &slowRecover{d} },
	"slowstart":            func(d *process.Driver) drivers.Driver { return &slowStart{Driver: d} },
	"starterr":             func(d *process.Driver) drivers.Driver { return &startErr{Driver: d} },
	"waiterr":              func(d *process.Driver) drivers.Driver { return &waitErr{Driver: d} },
	"forgetfulwait":        func(d *process.Driver) drivers.Driver { return &forgetfulWait{Driver: d} },
}

// panicStop is the process driver with a Stop that panics, killing the
// plugin, at every call (its Destroy works).
type panicStop struct{ *process.Driver }

func (d *panicStop) Stop(context.Context, string, string, time.Duration) error {
	panic("boom in Stop (test)")
}

// strictSpec is the process driver refusing a spec without what core must
// fill: PORT and BIND_ADDR in Env, matching Port and BindAddr, and the
// built-in worker's argv in WorkerCommand exactly when the group gives no
// command of its own.
type strictSpec struct{ *process.Driver }

func (d *strictSpec) Start(ctx context.Context, spec drivers.WorkerSpec) (*drivers.Handle, error) {
	var cfg struct {
		Command []string `json:"command"`
	}
	if err := spec.DecodeConfig(&cfg); err != nil {
		return nil, err
	}
	switch {
	case spec.Env["PORT"] != strconv.Itoa(spec.Port) || spec.Env["BIND_ADDR"] != spec.BindAddr || spec.BindAddr == "":
		return nil, fmt.Errorf("strictspec: env PORT=%q BIND_ADDR=%q for port %d, bind %q", spec.Env["PORT"], spec.Env["BIND_ADDR"], spec.Port, spec.BindAddr)
	case len(cfg.Command) == 0 && (len(spec.WorkerCommand) != 2 || spec.WorkerCommand[1] != "worker"):
		return nil, fmt.Errorf("strictspec: built-in worker with worker command %q", spec.WorkerCommand)
	case len(cfg.Command) > 0 && len(spec.WorkerCommand) > 0:
		return nil, fmt.Errorf("strictspec: a group with its own command got worker command %q", spec.WorkerCommand)
	}
	return d.Driver.Start(ctx, spec)
}

// noAddress is the process driver with a bug: Start starts the worker, then
// replies with a handle whose address is empty.
type noAddress struct{ *process.Driver }

func (d *noAddress) Start(ctx context.Context, spec drivers.WorkerSpec) (*drivers.Handle, error) {
	h, err := d.Driver.Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	bad := *h
	bad.Address = ""
	return &bad, nil
}

// panicMessage is what panicStart's Start panics with.
const panicMessage = "boom in Start (test)"

// panicStart is the process driver with a Start that panics, which kills
// the plugin process, at every call.
type panicStart struct{ *process.Driver }

func (d *panicStart) Start(context.Context, drivers.WorkerSpec) (*drivers.Handle, error) {
	panic(panicMessage)
}

// destroyRefused is the error of hangStop's failing Destroy.
const destroyRefused = "destroy refused (test)"

// hangStop is the process driver with a Stop that never returns (it
// ignores its ctx: the client's deadline is all that ends the call), and,
// with destroyFails, a Destroy that always fails.
type hangStop struct {
	*process.Driver
	destroyFails bool
}

func (d *hangStop) Stop(context.Context, string, string, time.Duration) error {
	select {}
}

func (d *hangStop) Destroy(ctx context.Context, id string) error {
	if d.destroyFails {
		return errors.New(destroyRefused)
	}
	return d.Driver.Destroy(ctx, id)
}

// agentMain runs an agent on the config at path until SIGTERM or SIGINT.
func agentMain(path string) int {
	src, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg, _, diags := config.Parse(path, src)
	if diags.HasErrors() {
		fmt.Fprintln(os.Stderr, diags.Error())
		return 1
	}
	a, err := New(cfg, Options{Self: []string{os.Args[0]}, Builtins: testBuiltins})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	diags = a.Prepare(pctx)
	cancel()
	if diags.HasErrors() {
		a.Close()
		fmt.Fprintln(os.Stderr, diags.Error())
		return 1
	}
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// syncBuffer collects log output from many goroutines.
type syncBuffer = testutil.SyncBuffer

// uniq returns base with a random suffix: group names (and so worker ids)
// that no other test, or other run on this machine, uses.
func uniq(base string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return base + hex.EncodeToString(b[:])
}

// freePorts finds n consecutive free ports in 21000-31999: core's range,
// apart from cmd/golb's tests (10000-20999).
func freePorts(t testing.TB, n int) int { return testutil.PortRange(t, 21000, 32000, n) }

// parseConfig parses src, failing the test on any diagnostic error.
func parseConfig(t testing.TB, src string) *config.Config {
	t.Helper()
	cfg, _, diags := config.Parse("test.hcl", []byte(src))
	if diags.HasErrors() {
		t.Fatalf("config does not parse: %s\n%s", diags.Error(), src)
	}
	return cfg
}

// groupHCL is a process group block running the built-in worker.
func groupHCL(name string, count, port int, avgDelay string) string {
	return fmt.Sprintf(`
group %q {
  driver = "process"
  count  = %d
  port   = %d
  stop_timeout = "5s"
  app {
    avg_delay    = %q
    failure_rate = 0
  }
  health_check {
    interval = "200ms"
    timeout  = "100ms"
  }
}
`, name, count, port, avgDelay)
}

// header is the top of a test config: data dir, admin address ("" is off)
// and a fast stats flush.
func header(dataDir, admin string) string {
	return fmt.Sprintf(`
data_dir = %q
admin { address = %q }
stats {
  path = %q
  flush_interval = "100ms"
}
`, dataDir, admin, dataDir+"/stats.db")
}

// testAgent is an agent running in this process.
type testAgent struct {
	*Agent
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned runErr
	runErr error
}

// newTestAgent returns an agent for cfg, neither prepared nor running. self
// replaces the test binary as Options.Self (say, to add the listgate knob).
func newTestAgent(t *testing.T, cfg *config.Config, self ...string) *testAgent {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if len(self) == 0 {
		self = []string{os.Args[0]}
	}
	// The built-in worker is the test binary's `worker`, whatever knob the
	// plugin runs with.
	a, err := New(cfg, Options{Self: self, WorkerCommand: []string{os.Args[0], "worker"}, Builtins: testBuiltins, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ta := &testAgent{Agent: a, logs: logs}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	return ta
}

// startAgent prepares cfg and runs it in a goroutine; the test's cleanup
// stops it if the test did not. self is as for newTestAgent.
func startAgent(t *testing.T, cfg *config.Config, self ...string) *testAgent {
	t.Helper()
	return startTunedAgent(t, cfg, nil, self...)
}

// startTunedAgent is startAgent with tune applied to the agent before it
// starts (say, shorter stop deadlines).
func startTunedAgent(t *testing.T, cfg *config.Config, tune func(a *Agent), self ...string) *testAgent {
	t.Helper()
	ta := newTestAgent(t, cfg, self...)
	if tune != nil {
		tune(ta.Agent)
	}
	pctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	diags := ta.Prepare(pctx)
	cancel()
	if diags.HasErrors() {
		ta.Close()
		t.Fatalf("Prepare: %s", diags.Error())
	}
	ctx, stop := context.WithCancel(context.Background())
	ta.cancel, ta.done = stop, make(chan struct{})
	go func() { ta.runErr = ta.Run(ctx); close(ta.done) }()
	t.Cleanup(func() { ta.stop(t) })
	// Run records the groups first: from then on Scale works.
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	for {
		ws := memdb.NewWatchSet()
		gs, err := ta.Store().Groups(ws)
		if err != nil {
			t.Fatal(err)
		}
		if len(gs) == len(cfg.Groups) {
			return ta
		}
		if err := ws.WatchCtx(wctx); err != nil {
			t.Fatalf("Run did not record the groups within 30s (has %d)", len(gs))
		}
	}
}

// showLogs logs the agent's log even when the test passes, with
// GOLB_TEST_LOGS=1: to read what a user would see.
func (ta *testAgent) showLogs(t *testing.T) {
	if os.Getenv("GOLB_TEST_LOGS") != "" {
		t.Logf("agent log:\n%s", ta.logs.String())
	}
}

// stop cancels Run and waits for it; Run must return nil.
func (ta *testAgent) stop(t *testing.T) {
	t.Helper()
	ta.cancel()
	select {
	case <-ta.done:
		if ta.runErr != nil {
			t.Errorf("Run returned %v, want nil", ta.runErr)
		}
	case <-time.After(90 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("Run did not return within 90s of cancel; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
	}
}

// waitWorkers waits, woken by the store's WatchSet, until cond holds for
// the workers of the store, and returns them.
func (ta *testAgent) waitWorkers(t *testing.T, timeout time.Duration, what string, cond func([]*state.Worker) bool) []*state.Worker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	for {
		ws := memdb.NewWatchSet()
		all, err := ta.Store().Workers(ws)
		if err != nil {
			t.Fatal(err)
		}
		if cond(all) {
			t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
			return all
		}
		if err := ws.WatchCtx(ctx); err != nil {
			t.Fatalf("timed out after %v waiting for %s; workers: %s", timeout, what, describe(all))
		}
	}
}

// waitGroup waits, woken by the store's WatchSet, until cond holds for group
// name, and returns it.
func (ta *testAgent) waitGroup(t *testing.T, name string, timeout time.Duration, what string, cond func(*state.Group) bool) *state.Group {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	for {
		ws := memdb.NewWatchSet()
		g, err := ta.Store().Group(ws, name)
		if err != nil {
			t.Fatal(err)
		}
		if g != nil && cond(g) {
			t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
			return g
		}
		if ws.WatchCtx(ctx) != nil {
			t.Fatalf("timed out after %v waiting for %s: %+v", timeout, what, g)
		}
	}
}

// note is group's NOTE as `golb status` shows it (GroupViews).
func (ta *testAgent) note(group string) string {
	for _, v := range ta.GroupViews() {
		if v.Name == group {
			return v.Reason
		}
	}
	return ""
}

func describe(ws []*state.Worker) string {
	var parts []string
	for _, w := range ws {
		parts = append(parts, fmt.Sprintf("%s(%s %s adopted=%v)", w.ID, w.Status, w.Address, w.Adopted))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// inGroup returns the workers of group, with status st ("" for any).
func inGroup(ws []*state.Worker, group string, st state.WorkerStatus) []*state.Worker {
	var out []*state.Worker
	for _, w := range ws {
		if w.Group == group && (st == "" || w.Status == st) {
			out = append(out, w)
		}
	}
	return out
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool { return testutil.Alive(pid) }

// workerProcs finds the live processes of workers of groups (worker ids are
// GROUP-xxxxxxxx).
func workerProcs(groups ...string) map[int]string {
	return testutil.WorkerProcs(func(_ int, id string) bool {
		for _, g := range groups {
			if strings.HasPrefix(id, g+"-") {
				return true
			}
		}
		return false
	})
}

// waitProcs polls /proc until cond holds for the processes of groups.
func waitProcs(t *testing.T, timeout time.Duration, what string, cond func(map[int]string) bool, groups ...string) map[int]string {
	t.Helper()
	start := time.Now()
	for {
		ps := workerProcs(groups...)
		if cond(ps) {
			t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
			return ps
		}
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s; processes: %v", timeout, what, ps)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// killProcs SIGKILLs what a failed test left, so it does not leak into the
// next tests or the machine.
func killProcs(t *testing.T, groups ...string) {
	t.Cleanup(func() {
		for pid := range workerProcs(groups...) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

func ids(ws []*state.Worker) map[string]bool {
	out := map[string]bool{}
	for _, w := range ws {
		out[w.ID] = true
	}
	return out
}

func values(m map[int]string) map[string]bool {
	out := map[string]bool{}
	for _, v := range m {
		out[v] = true
	}
	return out
}

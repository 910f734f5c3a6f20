package process_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/drivertest"
	"github.com/golb/golb/drivers/proc"
	"github.com/golb/golb/drivers/process"
	"github.com/golb/golb/internal/testutil"
	"github.com/golb/golb/workerapp"
)

// TestMain lets the test binary play the plugin (GOLB_TEST_PLUGIN=process) and
// the built-in worker ("worker" argument), as the golb binary does for real.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if os.Getenv("GOLB_TEST_IGNORE_TERM") == "1" {
			os.Exit(stubbornWorker())
		}
		os.Exit(workerapp.Main(os.Args[2:], os.Getenv, os.Stderr))
	}
	if os.Getenv("GOLB_TEST_PLUGIN") == "process" {
		drivers.Serve(process.New(nil))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// stubbornWorker is the built-in worker deaf to SIGTERM: only SIGKILL ends it.
func stubbornWorker() int {
	signal.Ignore(syscall.SIGTERM)
	cfg, err := workerapp.ConfigFromEnv(os.Getenv)
	if err == nil {
		err = workerapp.New(cfg).Run(context.Background())
	}
	fmt.Fprintln(os.Stderr, "worker:", err)
	return 1
}

func launch(t testing.TB) *drivers.Client {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "GOLB_TEST_PLUGIN=process")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := drivers.Launch(ctx, drivers.ClientConfig{Cmd: cmd})
	if err != nil {
		t.Fatalf("launching process driver plugin: %v", err)
	}
	return c
}

func settings(t testing.TB) drivers.PluginConfig {
	raw, _ := json.Marshal(map[string]any{"worker_command": []string{os.Args[0], "worker"}})
	return drivers.PluginConfig{DataDir: t.TempDir(), Settings: raw}
}

func TestConformance(t *testing.T) {
	drivertest.Run(t, drivertest.Harness{
		Launch:      func(t *testing.T) *drivers.Client { return launch(t) },
		Plugin:      settings(t),
		IgnoresTERM: json.RawMessage(`{"env":{"GOLB_TEST_IGNORE_TERM":"1"}}`),
		BadConfig:   json.RawMessage(`{"command":["/no/such/program"]}`),
		Crashing:    json.RawMessage(`{"command":["sh","-c","echo on stdout; echo 'worker: bad setting, giving up' >&2; sleep 1; exit 3"]}`),
		CrashOutput: "worker: bad setting, giving up",
		Wrapper:     wrapper(),
		Leftovers:   drivertest.MarkedProcesses,
		IdentityKey: "pid",
	})
}

// wrapper is Harness.Wrapper: a shell that runs the stubborn built-in
// worker as its child and waits for it (or exits by itself after
// $GOLB_TEST_WRAPPER_EXIT seconds), as a run.sh that does not exec.
func wrapper() json.RawMessage {
	raw, _ := json.Marshal(map[string]any{
		"command": []string{"sh", "-c", `"$0" worker & if [ -n "$GOLB_TEST_WRAPPER_EXIT" ]; then sleep "$GOLB_TEST_WRAPPER_EXIT"; exit 3; fi; wait`, os.Args[0]},
		"env":     map[string]string{"GOLB_TEST_IGNORE_TERM": "1"},
	})
	return raw
}

// TestRecoverRejectsReusedPID pins that a handle whose PID now belongs to
// another process (a different start time) is never adopted.
func TestRecoverRejectsReusedPID(t *testing.T) {
	c := launch(t)
	defer c.Kill()
	ctx := context.Background()
	if err := c.SetConfig(ctx, settings(t)); err != nil {
		t.Fatal(err)
	}
	// A handle that names this test process's PID with a made-up start time.
	blob, _ := json.Marshal(map[string]any{"version": 1, "pid": os.Getpid(), "start_time": 1, "address": "127.0.0.1:1"})
	err := c.Recover(ctx, &drivers.Handle{ID: "reused", Driver: "process", StateVersion: 1, State: blob})
	if err == nil {
		t.Fatal("Recover adopted a PID whose start time does not match")
	}
	t.Logf("rejected: %v", err)
}

func TestValidateConfig(t *testing.T) {
	c := launch(t)
	defer c.Kill()
	ctx := context.Background()
	for _, tc := range []struct {
		config string
		attr   string
	}{
		{`{"command":[]}`, "command"},
		{`{"command":["/no/such/bin"]}`, "command"},
		{`{"dir":"/no/such/dir"}`, "dir"},
		// A NUL passed validate, then exec refused it at every start and
		// the group crash-looped.
		{`{"command":["sh","-c","exit 0\u0000"]}`, "command"},
		{`{"dir":"/tmp\u0000x"}`, "dir"},
	} {
		diags, err := c.ValidateConfig(ctx, json.RawMessage(tc.config))
		if err != nil {
			t.Fatal(err)
		}
		if len(diags) != 1 || diags[0].Attribute != tc.attr {
			t.Errorf("ValidateConfig(%s) = %v, want one diagnostic on %q", tc.config, diags, tc.attr)
		}
	}
	diags, err := c.ValidateConfig(ctx, json.RawMessage(`{"command":["sh","-c","exit 0"]}`))
	if err != nil || len(diags) != 0 {
		t.Errorf("valid config: %v, %v", diags, err)
	}
}

// BenchmarkRPC measures one driver call (Info) through go-plugin's gRPC.
func BenchmarkRPC(b *testing.B) {
	c := launch(b)
	defer c.Kill()
	ctx := context.Background()
	if err := c.SetConfig(ctx, settings(b)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Info(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStartToFirst200 measures Start through the plugin until the new
// process worker answers GET /healthz with 200.
func BenchmarkStartToFirst200(b *testing.B) {
	c := launch(b)
	defer c.Kill()
	ctx := context.Background()
	if err := c.SetConfig(ctx, settings(b)); err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	i := 0
	for b.Loop() {
		i++
		spec := drivers.WorkerSpec{ID: "bench-" + time.Now().Format("150405.000000"), Group: "bench", Port: drivertest.FreePort(b), BindAddr: "127.0.0.1"}
		h, err := c.Start(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		for {
			resp, err := client.Get("http://" + h.Address + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		_ = c.Destroy(ctx, spec.ID)
		b.StartTimer()
	}
}

// TestListRemovesLeftoverRecords pins that a worker which exited while no
// plugin watched it (golb was down) does not leave its state file forever.
func TestListRemovesLeftoverRecords(t *testing.T) {
	c := launch(t)
	defer c.Kill()
	ctx := context.Background()
	cfg := settings(t)
	if err := c.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cfg.DataDir, "workers")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(dir, "gone-1.json")
	blob := `{"version":1,"pid":999999,"start_time":1,"group":"g","address":"127.0.0.1:1","labels":{"golb.managed":"true"}}`
	if err := os.WriteFile(rec, []byte(blob), 0o644); err != nil {
		t.Fatal(err)
	}
	hs, err := c.List(ctx, map[string]string{"golb.managed": "true"})
	if err != nil || len(hs) != 0 {
		t.Fatalf("List = %v, %v; want nothing", hs, err)
	}
	if _, err := os.Stat(rec); !os.IsNotExist(err) {
		t.Fatalf("leftover record still there: %v", err)
	}
}

// TestInstantExitReportsItsCode pins that a worker dying before the driver
// saw it running still reports how it died and what it said on stderr, not
// just "exited at once".
func TestInstantExitReportsItsCode(t *testing.T) {
	c := launch(t)
	defer c.Kill()
	ctx := context.Background()
	if err := c.SetConfig(ctx, settings(t)); err != nil {
		t.Fatal(err)
	}
	for i := range 5 { // the race goes either way; both must say "exit code 3: bad setting"
		spec := drivers.WorkerSpec{ID: fmt.Sprintf("instant-%d", i), Group: "g", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1",
			Config: json.RawMessage(`{"command":["sh","-c","echo noise; echo bad setting >&2; exit 3"]}`)}
		h, err := c.Start(ctx, spec)
		if err != nil {
			if !strings.Contains(err.Error(), "exit code 3: bad setting") {
				t.Fatalf("Start error %q does not give the exit code and the worker's stderr", err)
			}
			continue
		}
		res, err := c.Wait(ctx, h.ID)
		if err != nil || res.ExitCode != 3 || res.Output != "bad setting" {
			t.Fatalf("Wait = %+v, %v; want exit code 3 with output \"bad setting\" (stderr only)", res, err)
		}
		_ = c.Destroy(ctx, h.ID)
	}
}

// TestRecoveredWorkerExitReportsStderr: a worker re-attached by a new plugin
// instance (not its child, so its exit code is unknown) still reports the
// last lines of its stderr when it dies.
func TestRecoveredWorkerExitReportsStderr(t *testing.T) {
	cfg := settings(t)
	ctx := context.Background()
	first := launch(t)
	defer first.Kill()
	if err := first.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	release := filepath.Join(t.TempDir(), "release")
	script := `while [ ! -e "$RELEASE" ]; do sleep 0.05; done; echo "fatal: lost my database" >&2; exit 4`
	raw, _ := json.Marshal(map[string]any{"command": []string{"sh", "-c", script}, "env": map[string]string{"RELEASE": release}})
	spec := drivers.WorkerSpec{ID: "recovered-dies", Group: "g", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1", Config: raw}
	h, err := first.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.WriteFile(release, nil, 0o644) }()
	first.Kill()

	second := launch(t)
	defer second.Kill()
	if err := second.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := second.Recover(ctx, h); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	defer func() { _ = second.Destroy(ctx, h.ID) }()
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := second.Wait(wctx, h.ID)
	if err != nil || res.Output != "fatal: lost my database" {
		t.Fatalf("Wait on a recovered worker = %+v, %v; want its stderr in Output", res, err)
	}
	if got, want := res.String(), "exit status unknown (not our child): fatal: lost my database"; got != want {
		t.Fatalf("exit reason %q, want %q", got, want)
	}
}

// TestRecoveredWorkerKilledIsNotItsInfoLine pins a bug: a re-attached
// worker killed from outside was reported as `exit code -1: time=…
// msg="worker listening"`, its routine start-up log line taken for a reason.
func TestRecoveredWorkerKilledIsNotItsInfoLine(t *testing.T) {
	cfg := settings(t)
	ctx := context.Background()
	first := launch(t)
	defer first.Kill()
	if err := first.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	spec := drivers.WorkerSpec{ID: "recovered-killed", Group: "g", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1",
		Env: map[string]string{"GOLB_AVG_DELAY": "1ms"}}
	h, err := first.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	drivertest.WaitHTTP(t, "http://"+h.Address+"/healthz", 10*time.Second) // it has logged "worker listening"
	st, err := first.Inspect(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	first.Kill()

	second := launch(t)
	defer second.Kill()
	if err := second.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := second.Recover(ctx, h); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	defer func() { _ = second.Destroy(ctx, h.ID) }()
	pid, _ := strconv.Atoi(st.Details["pid"])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil { // someone else's kill
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := second.Wait(wctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.String(), "exit status unknown (not our child)"; got != want {
		t.Fatalf("exit reason %q (output %q), want %q", got, res.Output, want)
	}
}

// TestStopLogsReadableDuration pins a bug: the plugin logs as JSON, which golb
// parses back, so a time.Duration logged as is reached golb's log as float
// nanoseconds (timeout=3e+09). Durations and signals are logged by name.
func TestStopLogsReadableDuration(t *testing.T) {
	var logs testutil.SyncBuffer
	d := process.New(slog.New(slog.NewJSONHandler(&logs, nil)))
	ctx := context.Background()
	if err := d.SetConfig(ctx, settings(t)); err != nil {
		t.Fatal(err)
	}
	spec := drivers.WorkerSpec{ID: "stubborn", Group: "g", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1",
		Env: map[string]string{"GOLB_TEST_IGNORE_TERM": "1", "GOLB_AVG_DELAY": "1ms"}}
	h, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Destroy(ctx, spec.ID) }()
	drivertest.WaitHTTP(t, "http://"+h.Address+"/healthz", 10*time.Second) // SIGTERM is ignored by now
	if err := d.Stop(ctx, spec.ID, "SIGTERM", 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(line, "worker ignored signal") {
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatal(err)
			}
		}
	}
	if rec == nil {
		t.Fatalf("no \"worker ignored signal\" record in %s", logs.String())
	}
	if rec["timeout"] != "50ms" || rec["signal"] != "SIGTERM" {
		t.Fatalf("logged timeout=%v signal=%v, want \"50ms\" and \"SIGTERM\"", rec["timeout"], rec["signal"])
	}
}

// TestWorkerCommandFromSpec: with no worker_command setting, the built-in
// worker is run with the argv core sends in WorkerSpec.WorkerCommand, not a
// guess from the plugin's own binary.
func TestWorkerCommandFromSpec(t *testing.T) {
	c := launch(t)
	defer c.Kill()
	ctx := context.Background()
	if err := c.SetConfig(ctx, drivers.PluginConfig{DataDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	// A wrapper that says it ran, then runs the worker.
	argv := []string{"sh", "-c", `echo "run by spec.WorkerCommand" >&2; exec "$0" worker`, os.Args[0]}
	spec := drivers.WorkerSpec{ID: "from-spec", Group: "g", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1",
		Env: map[string]string{"GOLB_AVG_DELAY": "1ms"}, WorkerCommand: argv}
	h, err := c.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Destroy(ctx, spec.ID) }()
	drivertest.WaitHTTP(t, "http://"+h.Address+"/healthz", 10*time.Second)
	st, err := c.Inspect(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	logged, err := os.ReadFile(st.Details["stderr"])
	if err != nil || !strings.Contains(string(logged), "run by spec.WorkerCommand") {
		t.Fatalf("worker stderr %q (%v): the worker was not run by spec.WorkerCommand", logged, err)
	}
}

// TestStopAndDestroyLeftTheWrappedChildRunning pins a bug: Stop returned as
// soon as a wrapper (the group leader) died on SIGTERM and Destroy killed
// only a leader not yet seen exiting, so a child ignoring SIGTERM kept
// running, holding the worker's port, invisible to every later call.
func TestStopAndDestroyLeftTheWrappedChildRunning(t *testing.T) {
	d := process.New(nil)
	ctx := context.Background()
	if err := d.SetConfig(ctx, drivers.PluginConfig{DataDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"command": []string{"sh", "-c", `sh -c 'trap "" TERM; exec sleep 300' & wait`}})
	spec := drivers.WorkerSpec{ID: "leaky", Group: "g", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1", Config: cfg}
	if _, err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	st, err := d.Inspect(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	pgid, _ := strconv.Atoi(st.Details["pid"])
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	time.Sleep(300 * time.Millisecond) // the inner sh has set its trap
	begin := time.Now()
	if err := d.Stop(ctx, spec.ID, "SIGTERM", 3*time.Second); err != nil {
		t.Fatal(err)
	}
	took := time.Since(begin)
	t.Logf("Stop returned after %v", took)
	if proc.GroupRunning(pgid) {
		t.Fatalf("Stop returned after %v with a live member in process group %d", took, pgid)
	}
	if took < 2900*time.Millisecond {
		t.Fatalf("Stop returned after %v: the child ignores SIGTERM, so it must have waited the 3s timeout", took)
	}
	if err := d.Destroy(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if proc.GroupRunning(pgid) {
		t.Fatalf("after Stop and Destroy, process group %d still has a live member", pgid)
	}
}

// TestListKillsWhatAnUnwatchedWrapperLeft pins a bug: a wrapper that died
// while no plugin watched it had its record removed by List, and its child,
// holding the worker's port, was forgotten for good.
func TestListKillsWhatAnUnwatchedWrapperLeft(t *testing.T) {
	cfg := settings(t)
	ctx := context.Background()
	first := launch(t)
	defer first.Kill()
	if err := first.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	spec := drivers.WorkerSpec{ID: "orphaned", Group: "g", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1",
		Env: map[string]string{"GOLB_AVG_DELAY": "1ms"}, Config: wrapper()}
	h, err := first.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	drivertest.WaitHTTP(t, "http://"+h.Address+"/healthz", 10*time.Second)
	st, err := first.Inspect(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	pgid, _ := strconv.Atoi(st.Details["pid"])
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	first.Kill()
	if err := syscall.Kill(pgid, syscall.SIGKILL); err != nil { // the wrapper dies unwatched
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if !proc.GroupRunning(pgid) {
		t.Fatal("the wrapper's child died with it: the test needs it alive")
	}

	second := launch(t)
	defer second.Kill()
	if err := second.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	hs, err := second.List(ctx, map[string]string{drivers.LabelManaged: "true"})
	if err != nil || len(hs) != 0 {
		t.Fatalf("List = %v, %v; want nothing", hs, err)
	}
	if left := drivertest.MarkedProcesses(t, spec.ID); len(left) != 0 {
		t.Fatalf("List removed the record and left %v running", left)
	}
	if err := proc.PortFree("127.0.0.1", spec.Port); err != nil {
		t.Fatalf("port %d still taken after List: %v", spec.Port, err)
	}
}

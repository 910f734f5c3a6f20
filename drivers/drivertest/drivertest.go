// Package drivertest is the conformance suite every golb driver must pass,
// built-in or external. It drives the real plugin subprocess through the SDK's
// client: start, serve, inspect, wait, stop (also past its deadline),
// destroy, list, recover after a plugin crash, and clean start failures. A
// reply golb would refuse fails it with what was wrong, and a failed case
// shows the end of the plugin's stderr (a panic and its stack trace).
package drivertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golb/golb/drivers"
)

// Harness tells the suite how to run one driver.
type Harness struct {
	// Launch starts a fresh plugin instance as a real subprocess. The suite
	// kills it (SIGKILL for the crash test, Kill otherwise).
	Launch func(t *testing.T) *drivers.Client
	// Plugin is handed to every instance with SetConfig; DataDir defaults to a
	// temp dir shared by all instances of one test.
	Plugin drivers.PluginConfig
	// Serving is the config block of a worker that serves GET /healthz with 200
	// on $PORT. Nil means the driver's default worker.
	Serving json.RawMessage
	// IgnoresTERM is the config block of a worker that ignores SIGTERM and,
	// once it does, serves GET /healthz with 200 on $PORT; nil skips the
	// SIGKILL-after-timeout test with a reason.
	IgnoresTERM json.RawMessage
	// BadConfig is a config block Start must reject with drivers.ErrBadConfig
	// (a missing command or image).
	BadConfig json.RawMessage
	// Crashing is the config block of a worker that writes a line holding
	// CrashOutput to stderr and exits with a non-zero code. It may exit at
	// once where Start cannot see that (a container); a process-style driver,
	// whose Start fails for a process gone before it was identified, needs
	// it to live a moment (e.g. sh -c 'echo … >&2; sleep 1; exit 3'). Nil
	// skips the exit-output test with a reason.
	Crashing json.RawMessage
	// Wrapper is the config block of a worker run through a wrapper, as a
	// run.sh that does not exec its server: a main process (a shell) that
	// starts, as its child, a worker that ignores SIGTERM and serves GET
	// /healthz with 200 on $PORT, and then waits for it; it dies on SIGTERM
	// itself, without passing it on. With GOLB_TEST_WRAPPER_EXIT=N in its
	// environment it exits with code 3 after N seconds instead of waiting,
	// leaving its child behind. E.g. for a process-style driver:
	// sh -c '"$0" worker & if [ -n "$GOLB_TEST_WRAPPER_EXIT" ]; then sleep
	// "$GOLB_TEST_WRAPPER_EXIT"; exit 3; fi; wait' /path/to/worker, with the
	// worker's own setting to ignore SIGTERM. The suite checks that neither
	// Stop nor the wrapper's own exit leaves the child serving. Nil skips
	// the test with a reason.
	Wrapper json.RawMessage
	// Leftovers, when set, returns what of worker id still runs outside
	// the driver's own records, one line each (a process, a container),
	// to be checked after failed starts and after Destroy: List shows only
	// what the driver remembers, not a child it lost track of. For workers
	// that run as processes of this machine, MarkedProcesses does. Nil
	// checks List alone.
	Leftovers func(t *testing.T, id string) []string
	// CrashOutput is what the Crashing worker writes, or part of its line;
	// Wait must report it in ExitResult.Output.
	CrashOutput string
	// IdentityKey is the Inspect detail that names the running thing (e.g.
	// "pid", "container_id"): it must not change across a Recover.
	IdentityKey string
	// StartTimeout bounds Start plus the time until the worker serves.
	// Default 10s.
	StartTimeout time.Duration
	// WorkerCommand, when set, is the built-in worker's argv that the
	// suite puts in WorkerSpec.WorkerCommand of the Serving and IgnoresTERM
	// workers' specs, as core does for a group that runs golb's built-in
	// worker: a driver that runs it by default needs no Serving config.
	// The worker serves GET /healthz with 200 on $PORT and, with
	// GOLB_TEST_IGNORE_TERM=1 in its env, may be the IgnoresTERM one.
	// Default: nil.
	WorkerCommand []string
	// Ports, when set, is the range the workers' ports are picked from
	// (ports free at the time). Default: the zero PortRange, a port the
	// kernel picks as free (FreePort). Set it when the kernel's ephemeral
	// range is busy with other tests' connections, or when a runtime can
	// only publish some ports.
	Ports PortRange
}

// PortRange is an inclusive range of TCP ports, First <= Last.
type PortRange struct {
	First, Last int
}

// suite carries one test's state.
type suite struct {
	t     *testing.T
	h     Harness
	group string

	mu      sync.Mutex
	started []string // the ids of the workers Start was asked for
}

// Run runs the conformance suite as subtests of t.
func Run(t *testing.T, h Harness) {
	if h.StartTimeout == 0 {
		h.StartTimeout = 10 * time.Second
	}
	if h.IdentityKey == "" {
		t.Fatal("drivertest: Harness.IdentityKey is required")
	}
	tests := []struct {
		name string
		fn   func(*suite)
	}{
		{"StartServeStopDestroy", testLifecycle},
		{"StopKillsAfterTimeout", testStopTimeout},
		{"StopHonoursDeadline", testStopDeadline},
		{"RecoverAfterPluginCrash", testRecover},
		{"StartFailuresLeakNothing", testStartFailures},
		{"ExitReportsOutput", testExitOutput},
		{"WrapperLeavesNoChild", testWrapper},
		{"UnknownWorker", testUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := h
			if h.Plugin.DataDir == "" {
				h.Plugin.DataDir = t.TempDir()
			}
			s := &suite{t: t, h: h, group: fmt.Sprintf("conf%d", time.Now().UnixNano()%1e9)}
			t.Cleanup(s.sweep) // the last cleanup: after each worker's Destroy
			tc.fn(s)
		})
	}
}

func (s *suite) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.h.StartTimeout+30*time.Second)
	s.t.Cleanup(cancel)
	return ctx
}

// launch starts a plugin instance and configures it. When the test fails,
// it shows the end of the plugin's stderr: a panicking driver's stack trace,
// rather than only "error reading from server: EOF".
func (s *suite) launch() *drivers.Client {
	s.t.Helper()
	c := s.h.Launch(s.t)
	pid := c.Pid()
	s.t.Cleanup(func() { s.showStderr(c, pid) }) // runs after Kill: all of it is read
	s.t.Cleanup(c.Kill)
	if err := c.SetConfig(s.ctx(), s.h.Plugin); err != nil {
		s.t.Fatalf("SetConfig: %v", err)
	}
	return c
}

// showStderr logs the end of c's stderr if the test failed, and a panic
// there as its own error.
func (s *suite) showStderr(c *drivers.Client, pid int) {
	if line := outlived(c); line != "" && !s.t.Failed() {
		s.t.Errorf("a driver call ignored the end of its ctx: %s", line)
	}
	if !s.t.Failed() {
		return
	}
	if p := c.Panic(); p != "" {
		s.t.Errorf("the driver plugin crashed: %s", p)
	}
	if out := c.Stderr(); out != "" {
		s.t.Logf("driver plugin stderr (pid %d), last lines:\n%s", pid, out)
	}
}

func (s *suite) spec(id string, config json.RawMessage) drivers.WorkerSpec {
	spec := drivers.WorkerSpec{
		ID:       fmt.Sprintf("%s-%s", s.group, id),
		Group:    s.group,
		Port:     s.port(),
		BindAddr: "127.0.0.1",
		Env:      map[string]string{"GOLB_AVG_DELAY": "1ms", "GOLB_FAILURE_RATE": "0"},
		Config:   config,
	}
	if bytes.Equal(config, s.h.Serving) || bytes.Equal(config, s.h.IgnoresTERM) {
		spec.WorkerCommand = s.h.WorkerCommand
	}
	return spec
}

// start starts a worker and registers its destruction (also when Start
// fails: a refused reply may come from a driver that did start one).
func (s *suite) start(d drivers.Driver, spec drivers.WorkerSpec) *drivers.Handle {
	s.t.Helper()
	s.mu.Lock()
	s.started = append(s.started, spec.ID)
	s.mu.Unlock()
	s.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = d.Destroy(ctx, spec.ID)
	})
	h, err := d.Start(s.ctx(), spec)
	if errors.Is(err, drivers.ErrBadReply) {
		s.t.Fatalf("Start(%s): golb refuses the reply: %v\n"+
			"A Start reply carries the spec's id, an Address host:port with a numeric port (1-65535) and a State of at most %d bytes.",
			spec.ID, err, drivers.MaxStateSize)
	}
	if err != nil {
		s.t.Fatalf("Start(%s): %v", spec.ID, err)
	}
	if h.ID != spec.ID || h.Address == "" {
		s.t.Fatalf("Start returned handle %+v for spec %s: want its id and an address", h, spec.ID)
	}
	if _, port, err := net.SplitHostPort(h.Address); err != nil || port != strconv.Itoa(spec.Port) {
		s.t.Fatalf("Start returned address %q for spec %s: the worker serves on the spec's port %d", h.Address, spec.ID, spec.Port)
	}
	return h
}

// stop calls Stop with a ctx that outlasts timeout by stopMargin, and fails
// when Stop does not return by then.
func (s *suite) stop(d drivers.Driver, id string, timeout time.Duration) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout+stopMargin)
	defer cancel()
	err := d.Stop(ctx, id, "SIGTERM", timeout)
	if errors.Is(err, context.DeadlineExceeded) {
		s.t.Fatalf("Stop(%s) with a %v timeout did not return within %v: Stop returns once the worker has exited, and SIGKILL comes after the timeout", id, timeout, timeout+stopMargin)
	}
	if err != nil {
		s.t.Fatalf("Stop(%s): %v", id, err)
	}
}

// stopMargin is how long Stop may take past its timeout (SIGKILL, the exit
// noticed, a loaded machine) before the suite calls it stuck.
const stopMargin = 20 * time.Second

// waitServing waits for the worker's first 200, and on failure reports what
// the driver knows of it (exit status, log paths).
func (s *suite) waitServing(d drivers.Driver, h *drivers.Handle) {
	s.t.Helper()
	url := "http://" + h.Address + "/healthz"
	deadline := time.Now().Add(s.h.StartTimeout)
	for time.Now().Before(deadline) {
		if httpOK(url) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, err := d.Inspect(s.ctx(), h.ID)
	s.t.Fatalf("%s did not answer 200 within %v; Inspect: %+v, %v", url, s.h.StartTimeout, st, err)
}

func (s *suite) listGroup(d drivers.Driver) []*drivers.Handle {
	s.t.Helper()
	hs, err := d.List(s.ctx(), map[string]string{drivers.LabelManaged: "true", drivers.LabelGroup: s.group})
	if errors.Is(err, drivers.ErrBadReply) {
		s.t.Fatalf("List: golb refuses the reply: %v\nEach handle carries a worker id, an Address host:port with a numeric port and a State of at most %d bytes.", err, drivers.MaxStateSize)
	}
	if err != nil {
		s.t.Fatalf("List: %v", err)
	}
	return hs
}

func testLifecycle(s *suite) {
	d := s.launch()
	spec := s.spec("a", s.h.Serving)
	begin := time.Now()
	h := s.start(d, spec)
	s.waitServing(d, h)
	s.t.Logf("start to first 200: %v", time.Since(begin))

	st, err := d.Inspect(s.ctx(), spec.ID)
	if err != nil || st.State != drivers.StateRunning {
		s.t.Fatalf("Inspect running worker: %+v, %v", st, err)
	}
	if st.Details[s.h.IdentityKey] == "" {
		s.t.Fatalf("Inspect details %v lack identity key %q", st.Details, s.h.IdentityKey)
	}
	hs := s.listGroup(d)
	if len(hs) != 1 || hs[0].ID != spec.ID || hs[0].Address != h.Address {
		s.t.Fatalf("List = %v, want exactly %s at %s", ids(hs), spec.ID, h.Address)
	}
	if hs[0].Labels[drivers.LabelGroup] != s.group || hs[0].Labels[drivers.LabelManaged] != "true" {
		s.t.Fatalf("listed labels %v lack golb's labels", hs[0].Labels)
	}

	waited := make(chan drivers.ExitResult, 1)
	go func() {
		res, err := d.Wait(s.ctx(), spec.ID)
		if err != nil {
			s.t.Errorf("Wait: %v", err)
		}
		waited <- res
	}()
	select {
	case res := <-waited:
		s.t.Fatalf("Wait returned %v while the worker runs", res)
	case <-time.After(200 * time.Millisecond):
	}
	s.stop(d, spec.ID, 10*time.Second)
	select {
	case res := <-waited:
		s.t.Logf("exit after SIGTERM: %v", res)
	case <-time.After(10 * time.Second):
		s.t.Fatal("Wait did not return after Stop")
	}
	st, err = d.Inspect(s.ctx(), spec.ID)
	if err != nil || st.State != drivers.StateExited || st.Exit == nil {
		s.t.Fatalf("Inspect after Stop: %+v, %v; want exited with a result", st, err)
	}
	if ok := httpOK("http://" + h.Address + "/healthz"); ok {
		s.t.Fatal("worker still answers after Stop")
	}

	if err := d.Destroy(s.ctx(), spec.ID); err != nil {
		s.t.Fatalf("Destroy: %v", err)
	}
	if hs := s.listGroup(d); len(hs) != 0 {
		s.t.Fatalf("List after Destroy = %v, want none", ids(hs))
	}
	if _, err := d.Inspect(s.ctx(), spec.ID); !errors.Is(err, drivers.ErrNotFound) {
		s.t.Fatalf("Inspect after Destroy: %v, want ErrNotFound", err)
	}
	if err := portFree(spec.Port); err != nil {
		s.t.Fatalf("port %d still taken after Destroy: %v", spec.Port, err)
	}
	s.noLeftovers(spec.ID, "after Destroy")
}

func testStopTimeout(s *suite) {
	if s.h.IgnoresTERM == nil {
		s.t.Skip("harness has no worker that ignores SIGTERM")
	}
	d := s.launch()
	spec := s.spec("stubborn", s.h.IgnoresTERM)
	s.waitServing(d, s.start(d, spec)) // serving: SIGTERM is ignored by now
	begin := time.Now()
	s.stop(d, spec.ID, time.Second)
	took := time.Since(begin)
	s.t.Logf("stop with 1s timeout took %v", took)
	if took < 900*time.Millisecond {
		s.t.Fatalf("Stop returned after %v: the worker ignores SIGTERM, so it must have waited the 1s timeout", took)
	}
	st, err := d.Inspect(s.ctx(), spec.ID)
	if err != nil || st.State != drivers.StateExited {
		s.t.Fatalf("Inspect after Stop: %+v, %v; want exited", st, err)
	}
	if st.Exit == nil || st.Exit.Signal != int(syscall.SIGKILL) {
		s.t.Fatalf("worker ended with %+v, want killed by SIGKILL", st.Exit)
	}
	if err := d.Destroy(s.ctx(), spec.ID); err != nil {
		s.t.Fatalf("Destroy: %v", err)
	}
	s.noLeftovers(spec.ID, "after Destroy")
}

func testRecover(s *suite) {
	first := s.launch()
	a := s.start(first, s.spec("a", s.h.Serving))
	b := s.start(first, s.spec("b", s.h.Serving))
	idents := map[string]string{}
	for _, h := range []*drivers.Handle{a, b} {
		s.waitServing(first, h)
		st, err := first.Inspect(s.ctx(), h.ID)
		if err != nil {
			s.t.Fatalf("Inspect: %v", err)
		}
		idents[h.ID] = st.Details[s.h.IdentityKey]
	}

	pid := first.Pid()
	if pid == 0 {
		s.t.Fatal("plugin pid unknown")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		s.t.Fatalf("killing plugin: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !first.Exited() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := first.Inspect(s.ctx(), a.ID); !errors.Is(err, drivers.ErrPluginExited) {
		s.t.Fatalf("call on a killed plugin: %v, want ErrPluginExited", err)
	}
	for _, h := range []*drivers.Handle{a, b} {
		if !httpOK("http://" + h.Address + "/healthz") {
			s.t.Fatalf("worker %s stopped serving when its plugin was killed", h.ID)
		}
	}

	second := s.launch()
	listed := s.listGroup(second)
	if len(listed) != 2 {
		s.t.Fatalf("List after plugin crash = %v, want the 2 workers", ids(listed))
	}
	for _, h := range listed {
		if err := second.Recover(s.ctx(), h); err != nil {
			s.t.Fatalf("Recover(%s): %v", h.ID, err)
		}
		// Recovering twice is harmless.
		if err := second.Recover(s.ctx(), h); err != nil {
			s.t.Fatalf("second Recover(%s): %v", h.ID, err)
		}
		st, err := second.Inspect(s.ctx(), h.ID)
		if err != nil || st.State != drivers.StateRunning {
			s.t.Fatalf("Inspect recovered %s: %+v, %v", h.ID, st, err)
		}
		if got := st.Details[s.h.IdentityKey]; got != idents[h.ID] {
			s.t.Fatalf("recovered %s has %s %q, was %q: it was restarted, not re-attached", h.ID, s.h.IdentityKey, got, idents[h.ID])
		}
	}
	if again := s.listGroup(second); len(again) != 2 {
		s.t.Fatalf("List after Recover = %v: duplicates or losses", ids(again))
	}
	// The new instance controls the recovered workers fully.
	done := make(chan error, 1)
	go func() { _, err := second.Wait(s.ctx(), a.ID); done <- err }()
	s.stop(second, a.ID, 10*time.Second)
	select {
	case err := <-done:
		if err != nil {
			s.t.Fatalf("Wait on recovered worker: %v", err)
		}
	case <-time.After(10 * time.Second):
		s.t.Fatal("Wait on a recovered worker did not return after Stop")
	}
	if !httpOK("http://" + b.Address + "/healthz") {
		s.t.Fatal("stopping one recovered worker affected the other")
	}
	for _, h := range []*drivers.Handle{a, b} {
		if err := second.Destroy(s.ctx(), h.ID); err != nil {
			s.t.Fatalf("Destroy: %v", err)
		}
	}
	if left := s.listGroup(second); len(left) != 0 {
		s.t.Fatalf("List after Destroy = %v", ids(left))
	}
	s.noLeftovers(a.ID, "after Destroy")
	s.noLeftovers(b.ID, "after Destroy")
}

func testStartFailures(s *suite) {
	d := s.launch()

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatal(err)
	}
	defer taken.Close()
	spec := s.spec("porttaken", s.h.Serving)
	spec.Port = taken.Addr().(*net.TCPAddr).Port
	_, err = d.Start(s.ctx(), spec)
	if !errors.Is(err, drivers.ErrPortInUse) {
		s.t.Fatalf("Start on a taken port: %v, want ErrPortInUse", err)
	}
	s.t.Logf("port taken: %v", err)
	s.noLeftovers(spec.ID, "after a Start on a taken port")

	if s.h.BadConfig != nil {
		spec := s.spec("badconfig", s.h.BadConfig)
		_, err := d.Start(s.ctx(), spec)
		if !errors.Is(err, drivers.ErrBadConfig) {
			s.t.Fatalf("Start with a bad config: %v, want ErrBadConfig", err)
		}
		s.t.Logf("bad config: %v", err)
		s.noLeftovers(spec.ID, "after a Start with a bad config")
	}
	spec = s.spec("badid", s.h.Serving)
	spec.Port = 0
	if _, err := d.Start(s.ctx(), spec); !errors.Is(err, drivers.ErrBadConfig) {
		s.t.Fatalf("Start with port 0: %v, want ErrBadConfig", err)
	}
	s.noLeftovers(spec.ID, "after a Start with port 0")
	if left := s.listGroup(d); len(left) != 0 {
		s.t.Fatalf("failed starts left workers behind: %v", ids(left))
	}
}

// testExitOutput: a worker that dies saying why on stderr has its last words
// in ExitResult.Output (from Wait and from Inspect) and in its one-line
// String, which is what golb shows as a crash-looping group's reason.
func testExitOutput(s *suite) {
	if s.h.Crashing == nil {
		s.t.Skip("harness has no worker that crashes with a message")
	}
	if s.h.CrashOutput == "" {
		s.t.Fatal("drivertest: Harness.CrashOutput is required with Crashing")
	}
	d := s.launch()
	spec := s.spec("crashing", s.h.Crashing)
	s.start(d, spec)
	ctx, cancel := context.WithTimeout(s.ctx(), s.h.StartTimeout+10*time.Second)
	defer cancel()
	res, err := d.Wait(ctx, spec.ID)
	if err != nil {
		s.t.Fatalf("Wait on a crashing worker: %v", err)
	}
	s.t.Logf("exit: %v", res)
	if res.ExitCode == 0 && res.Signal == 0 {
		s.t.Fatalf("Wait = %+v, want a non-zero exit", res)
	}
	if !strings.Contains(res.Output, s.h.CrashOutput) {
		s.t.Fatalf("Wait = %+v: Output lacks the worker's last words %q", res, s.h.CrashOutput)
	}
	if len(res.Output) > drivers.MaxOutputBytes || strings.Count(res.Output, "\n") >= drivers.MaxOutputLines {
		s.t.Fatalf("Output of %d bytes, %d lines: want at most %d bytes, %d lines", len(res.Output), strings.Count(res.Output, "\n")+1, drivers.MaxOutputBytes, drivers.MaxOutputLines)
	}
	if str := res.String(); !strings.Contains(str, s.h.CrashOutput) || strings.Contains(str, "\n") {
		s.t.Fatalf("String() = %q: want one line holding %q", str, s.h.CrashOutput)
	}
	st, err := d.Inspect(s.ctx(), spec.ID)
	if err != nil || st.State != drivers.StateExited || st.Exit == nil || !strings.Contains(st.Exit.Output, s.h.CrashOutput) {
		s.t.Fatalf("Inspect after the crash: %+v (exit %+v), %v; want exited with the same output", st, st.Exit, err)
	}
	if err := d.Destroy(s.ctx(), spec.ID); err != nil {
		s.t.Fatalf("Destroy: %v", err)
	}
	s.noLeftovers(spec.ID, "after Destroy")
}

func testUnknown(s *suite) {
	d := s.launch()
	if _, err := d.Inspect(s.ctx(), "no-such-worker"); !errors.Is(err, drivers.ErrNotFound) {
		s.t.Fatalf("Inspect unknown: %v, want ErrNotFound", err)
	}
	if _, err := d.Wait(s.ctx(), "no-such-worker"); !errors.Is(err, drivers.ErrNotFound) {
		s.t.Fatalf("Wait unknown: %v, want ErrNotFound", err)
	}
	if err := d.Destroy(s.ctx(), "no-such-worker"); err != nil {
		s.t.Fatalf("Destroy unknown: %v, want nil", err)
	}
	if diags, err := d.ValidateConfig(s.ctx(), s.h.Serving); err != nil || len(diags) != 0 {
		s.t.Fatalf("ValidateConfig of the Serving config: %v, %v; want no diagnostics", diags, err)
	}
	info, err := d.Info(s.ctx())
	if err != nil || info.Name == "" || info.ProtocolVersion != drivers.ProtocolVersion {
		s.t.Fatalf("Info = %+v, %v", info, err)
	}
	fp, err := d.Fingerprint(s.ctx())
	if err != nil || !fp.Healthy {
		s.t.Fatalf("Fingerprint = %+v, %v: the runtime must be reachable to run this suite", fp, err)
	}
}

// port is a free port for a worker: from the Harness's range, or the kernel's.
func (s *suite) port() int {
	s.t.Helper()
	if s.h.Ports == (PortRange{}) {
		return FreePort(s.t)
	}
	return FreePortIn(s.t, s.h.Ports)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago: the
// kernel picks it (a listen on 127.0.0.1:0), so it clashes with no other
// test that does the same. It comes from the kernel's ephemeral range; where
// many outgoing connections could take it before the worker binds, use
// FreePortIn with a range below that.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreePortIn returns a TCP port of r, on 127.0.0.1, that was free a moment
// ago, trying the ports of r from a random one on.
func FreePortIn(t testing.TB, r PortRange) int {
	t.Helper()
	if r.First < 1 || r.Last > 65535 || r.First > r.Last {
		t.Fatalf("drivertest: invalid port range %d-%d", r.First, r.Last)
	}
	n := r.Last - r.First + 1
	start := rand.IntN(n)
	for i := range min(n, 1000) {
		// From a random start, port after port: a small range is tried
		// whole, a large one 1000 ports at most.
		p := r.First + (start+i)%n
		if portFree(p) == nil {
			return p
		}
	}
	t.Fatalf("finding a free port: none in %d-%d", r.First, r.Last)
	return 0
}

func portFree(port int) error {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return err
	}
	return l.Close()
}

// WaitHTTP polls url until it answers 200 or timeout passes.
func WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if httpOK(url) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not answer 200 within %v", url, timeout)
}

var probe = &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func httpOK(url string) bool {
	resp, err := probe.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func ids(hs []*drivers.Handle) []string {
	out := make([]string, 0, len(hs))
	for _, h := range hs {
		out = append(out, h.ID)
	}
	return out
}

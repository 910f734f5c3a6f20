package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/golb/golb/core"
	"github.com/golb/golb/core/config"
	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/process"
	"github.com/golb/golb/internal/testutil"
)

// TestMain lets the test binary be golb itself (GOLB_E2E_SELF=1): the agent,
// its driver plugins and its workers all run this binary, as they run the
// real one, and with the race detector on.
//
// With GOLB_E2E_UNSTOPPABLE=1 too, `driver process` serves a broken process
// driver whose Stop never returns and whose Destroy fails (unstoppable).
func TestMain(m *testing.M) {
	if os.Getenv("GOLB_E2E_SELF") == "1" {
		if os.Getenv("GOLB_E2E_UNSTOPPABLE") == "1" && len(os.Args) == 3 && os.Args[1] == "driver" && os.Args[2] == "process" {
			drivers.Serve(unstoppable{process.New(nil)})
			os.Exit(0)
		}
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// unstoppable is the process driver with a Stop that never returns and a
// Destroy that always fails: workers golb cannot stop.
type unstoppable struct{ *process.Driver }

func (unstoppable) Stop(context.Context, string, string, time.Duration) error { select {} }

func (unstoppable) Destroy(context.Context, string) error {
	return errors.New("destroy refused (test)")
}

// syncBuffer collects a process's output safely.
type syncBuffer = testutil.SyncBuffer

// golbProc is a `golb` command run as a subprocess.
type golbProc struct {
	t     testing.TB
	cmd   *exec.Cmd
	out   *syncBuffer
	admin string
	done  chan struct{}
	err   error
}

// golb runs the test binary as `golb args...` in dir.
func golb(t testing.TB, dir string, admin string, args ...string) *golbProc {
	t.Helper()
	p := &golbProc{t: t, out: &syncBuffer{}, admin: admin, done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), "GOLB_E2E_SELF=1", "GOLB_ADMIN="+admin)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting golb %v: %v", args, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(30 * time.Second):
				_ = p.cmd.Process.Kill()
			}
		}
		if t.Failed() {
			t.Logf("golb %v output:\n%s", args, p.out.String())
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *golbProc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("golb did not exit within %v; output:\n%s", timeout, p.out.String())
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	p.t.Fatalf("golb: %v", p.err)
	return -1
}

// runGolb runs a short golb command to completion.
func runGolb(t *testing.T, dir, admin string, args ...string) (string, int) {
	t.Helper()
	p := golb(t, dir, admin, args...)
	code := p.wait(2 * time.Minute)
	return p.out.String(), code
}

func getJSON(url string, v any) error {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (p *golbProc) workers() []core.WorkerView {
	var ws []core.WorkerView
	if err := getJSON("http://"+p.admin+"/v1/workers", &ws); err != nil {
		return nil
	}
	return ws
}

func (p *golbProc) drivers() []core.DriverView {
	var ds []core.DriverView
	_ = getJSON("http://"+p.admin+"/v1/drivers", &ds)
	return ds
}

// healthyWorkers returns the running, healthy workers, or nil.
func (p *golbProc) healthyWorkers() []core.WorkerView {
	var out []core.WorkerView
	for _, w := range p.workers() {
		if w.Status == "running" && w.Healthy {
			out = append(out, w)
		}
	}
	return out
}

// eventually polls cond until it holds or timeout passes, and returns how
// long it took.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", timeout, what)
	return 0
}

// freePorts finds n consecutive free ports in 10000-20999: cmd/golb's
// range, apart from core's tests (21000-31999).
func freePorts(t testing.TB, n int) int { return testutil.PortRange(t, 10000, 21000, n) }

// ports is a set of free ports for one test's config.
type ports struct{ worker, lb, admin int }

func newPorts(t testing.TB) ports {
	base := freePorts(t, 20)
	return ports{worker: base, lb: base + 12, admin: base + 16}
}

func (p ports) adminAddr() string { return "127.0.0.1:" + strconv.Itoa(p.admin) }

// writeConfig writes a process-driver config with count workers.
func writeConfig(t testing.TB, dir string, p ports, count int, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf(`
data_dir = ".golb"
admin { address = "127.0.0.1:%d" }
group "hello" {
  driver = "process"
  count  = %d
  port   = %d
  app {
    avg_delay    = "1ms"
    failure_rate = 0
  }
  health_check {
    interval = "1s"
    timeout  = "500ms"
  }
}
balancer "web" {
  group     = "hello"
  port      = %d
  listeners = 2
}
stats { path = "stats.db" }
%s
`, p.admin, count, p.worker, p.lb, extra)
	path := filepath.Join(dir, "golb.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// onTestPorts returns src, a config golb ships (the embedded default, an
// example), with its admin address, its group's port and its balancer's port
// moved onto pt and nothing else changed: the test runs the shipped file
// beside a golb that holds the file's own ports (the README's quick start).
// It fails when src no longer sets each of them exactly once.
func onTestPorts(t testing.TB, name, src string, pt ports) string {
	t.Helper()
	cfg, _, diags := config.Parse(name, []byte(src))
	if diags.HasErrors() {
		t.Fatalf("%s does not parse: %v", name, diags)
	}
	if len(cfg.Groups) != 1 || len(cfg.Balancers) != 1 || cfg.Groups[0].MaxCount() > pt.lb-pt.worker {
		t.Fatalf("%s: %d groups, %d balancers; onTestPorts moves one of each, of at most %d workers", name, len(cfg.Groups), len(cfg.Balancers), pt.lb-pt.worker)
	}
	_, admin, err := net.SplitHostPort(cfg.AdminAddress())
	if err != nil {
		t.Fatalf("%s: admin address %q: %v", name, cfg.AdminAddress(), err)
	}
	for _, m := range []struct {
		key      string
		from, to string
	}{
		{"address", admin, itoa(pt.admin)},
		{"port", itoa(cfg.Groups[0].Port), itoa(pt.worker)},
		{"port", itoa(cfg.Balancers[0].Port), itoa(pt.lb)},
	} {
		re := regexp.MustCompile(`(?m)^([ \t]*` + m.key + `[ \t]*=[ \t]*"?(?:127\.0\.0\.1:)?)` + m.from + `\b`)
		if n := len(re.FindAllString(src, -1)); n != 1 {
			t.Fatalf("%s sets %s %s %d times, want once: update onTestPorts", name, m.key, m.from, n)
		}
		src = re.ReplaceAllString(src, "${1}"+m.to)
	}
	moved, _, diags := config.Parse(name, []byte(src))
	if diags.HasErrors() || moved.AdminAddress() != pt.adminAddr() || moved.Groups[0].Port != pt.worker || moved.Balancers[0].Port != pt.lb {
		t.Fatalf("%s moved onto the test's ports does not use them (%v):\n%s", name, diags, src)
	}
	return src
}

func pidOf(w core.WorkerView) int {
	n, _ := strconv.Atoi(w.Details["pid"])
	return n
}

func alive(pid int) bool { return testutil.Alive(pid) }

// workerPIDs finds the live processes of this test's workers: those running
// in the test's directory (process workers inherit golb's working directory).
func workerPIDs(t *testing.T, dir string) map[int]string {
	t.Helper()
	return testutil.WorkerProcs(func(pid int, _ string) bool {
		cwd, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
		return cwd == dir
	})
}

// get GETs url, giving up after 5 s.
func get(url string) (int, string, error) { return getWithin(url, 5*time.Second) }

// getWithin GETs url, giving up after timeout.
func getWithin(url string, timeout time.Duration) (int, string, error) {
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), nil
}

func mustRead(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustWrite(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// waitHealthy waits until the agent reports n running, healthy workers, and
// returns how long that took.
func (p *golbProc) waitHealthy(n int, timeout time.Duration) time.Duration {
	p.t.Helper()
	return eventually(p.t, timeout, fmt.Sprintf("%d healthy workers", n), func() bool { return len(p.healthyWorkers()) == n })
}

// inFlight is the number of requests the balancers have in flight to
// workers, by GET /v1/workers.
func (p *golbProc) inFlight() int64 {
	var n int64
	for _, w := range p.workers() {
		n += w.InFlight
	}
	return n
}

// waitReplaced waits until n healthy workers serve and the worker gone is not
// among them, and returns how long that took.
func (p *golbProc) waitReplaced(gone string, n int, timeout time.Duration) time.Duration {
	p.t.Helper()
	return eventually(p.t, timeout, "worker "+gone+" replaced", func() bool {
		hs := p.healthyWorkers()
		for _, w := range hs {
			if w.ID == gone {
				return false
			}
		}
		return len(hs) == n
	})
}

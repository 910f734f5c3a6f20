package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golb/golb/internal/testutil"
)

// reloadTestPorts are the reload tests' ports, 15000-16999 of cmd/golb's
// range: a worker range, two listeners, a spare listener and the admin API.
func reloadTestPorts(t testing.TB) ports {
	base := testutil.PortRange(t, 15000, 17000, 20)
	return ports{worker: base, lb: base + 12, admin: base + 16}
}

// reloadHCL is the reload tests' config: group hello on the process driver
// (count, avg_delay, and extra lines in the group block), balancer web.
func reloadHCL(p ports, count int, delay, group, balancer string) string {
	return fmt.Sprintf(`
data_dir = ".golb"
admin { address = "127.0.0.1:%d" }
group "hello" {
  driver = "process"
  count  = %d
  port   = %d
  app {
    avg_delay    = %q
    failure_rate = 0
  }
  health_check {
    interval = "500ms"
    timeout  = "400ms"
    fall     = 3
  }
  update {
    max_parallel     = 1
    healthy_deadline = "5s"
  }
  %s
}
balancer "web" {
  group     = "hello"
  port      = %d
  listeners = 2
  %s
}
stats { path = "stats.db" }
`, p.admin, count, p.worker, delay, group, p.lb, balancer)
}

// TestReloadVerbAndSIGHUP: against a golb under 200 requests a second,
// `golb reload` of an invalid file exits 1 with the positioned diagnostic
// of `golb validate` and changes nothing (same worker pids, same
// listeners); `golb reload` of a count change and SIGHUP of a changed
// avg_delay apply (the rollover's answers come from new workers); a
// rollover to a command that exits at once stops, with the old workers
// serving; `golb status` shows the last reload and the stopped rollout;
// not one request fails; SIGTERM still shuts golb down.
func TestReloadVerbAndSIGHUP(t *testing.T) {
	dir := t.TempDir()
	pt := reloadTestPorts(t)
	path := filepath.Join(dir, "golb.hcl")
	mustWrite(t, path, reloadHCL(pt, 2, "1ms", "", ""))
	p := golb(t, dir, pt.adminAddr(), "run", path)
	p.waitHealthy(2, 60*time.Second)
	h := testutil.StartLoad([]string{fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", pt.lb)}, 200)
	start := time.Now()

	// Invalid: nothing changes.
	pids := workerPIDs(t, dir)
	mustWrite(t, path, reloadHCL(pt, 3, "1ms", "", "")+"\nbalancer \"x\" { port = \"no\" }\n")
	out, code := runGolb(t, dir, pt.adminAddr(), "reload")
	t.Logf("golb reload of an invalid file: exit %d:\n%s", code, out)
	if code != 1 || !strings.Contains(out, "golb.hcl:") || !strings.Contains(out, ": error: ") || !strings.Contains(out, " | ") || !strings.Contains(out, "nothing changed") {
		t.Fatalf("golb reload of an invalid file: exit %d, want 1 with a positioned diagnostic:\n%s", code, out)
	}
	vout, _ := runGolb(t, dir, pt.adminAddr(), "validate", path)
	if first := strings.SplitN(vout, "\n", 2)[0]; !strings.Contains(out, strings.TrimPrefix(first, path)) {
		t.Errorf("golb reload's diagnostic differs from golb validate's %q:\n%s", first, out)
	}
	time.Sleep(time.Second)
	if got := workerPIDs(t, dir); fmt.Sprint(got) != fmt.Sprint(pids) {
		t.Errorf("worker pids changed by an invalid reload: %v, want %v", got, pids)
	}
	for i := range 2 {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", pt.lb+i), time.Second); err != nil {
			t.Errorf("listener %d gone after an invalid reload: %v", pt.lb+i, err)
		} else {
			c.Close()
		}
	}

	// A change that cannot apply live: refused with its reason, and the
	// count change beside it not applied either.
	mustWrite(t, path, strings.Replace(reloadHCL(pt, 3, "1ms", "", ""), `stats { path = "stats.db" }`, `stats { path = "other.db" }`, 1))
	out, code = runGolb(t, dir, pt.adminAddr(), "reload")
	t.Logf("golb reload of a new stats path: exit %d:\n%s", code, out)
	if code != 1 || !strings.Contains(out, "golb: refused: the stats block changed") || !strings.Contains(out, "nothing changed") {
		t.Errorf("golb reload of a new stats path: exit %d, want 1 with the reason:\n%s", code, out)
	}
	if n := len(p.workers()); n != 2 {
		t.Errorf("%d workers after a refused reload, want 2", n)
	}

	// A count change, with golb reload.
	mustWrite(t, path, reloadHCL(pt, 3, "1ms", "", ""))
	out, code = runGolb(t, dir, pt.adminAddr(), "reload")
	if code != 0 || !strings.Contains(out, "reload applied: group hello: count 2 → 3") {
		t.Fatalf("golb reload: exit %d:\n%s", code, out)
	}
	p.waitHealthy(3, 60*time.Second)

	// A rollover, with SIGHUP; golb keeps running.
	old := map[string]bool{}
	for _, w := range p.workers() {
		old[w.ID] = true
	}
	mustWrite(t, path, reloadHCL(pt, 3, "2ms", "", `policy = "least_requests"`))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 90*time.Second, "the rollover after SIGHUP", func() bool {
		ws := p.healthyWorkers()
		if len(ws) != 3 || len(p.workers()) != 3 {
			return false
		}
		for _, w := range ws {
			if old[w.ID] {
				return false
			}
		}
		return true
	})
	t.Logf("3 workers rolled over in %v after SIGHUP", took)
	eventually(t, 10*time.Second, "an answer from a new worker", func() bool { return h.AnsweredBy(old) })
	select {
	case <-p.done:
		t.Fatalf("golb exited after SIGHUP:\n%s", p.out.String())
	default:
	}

	// A rollover that cannot succeed stops; the old workers serve on.
	serving := map[string]bool{}
	for _, w := range p.workers() {
		serving[w.ID] = true
	}
	broken := strings.Replace(reloadHCL(pt, 3, "2ms", `config { command = ["false"] }`, `policy = "least_requests"`),
		"  app {\n    avg_delay    = \"2ms\"\n    failure_rate = 0\n  }\n", "", 1)
	mustWrite(t, path, broken)
	out, code = runGolb(t, dir, pt.adminAddr(), "reload")
	if code != 0 {
		t.Fatalf("golb reload of the broken rollover: exit %d:\n%s", code, out)
	}
	var status string
	eventually(t, 60*time.Second, "golb status to show the stopped rollout", func() bool {
		status, _ = runGolb(t, dir, pt.adminAddr(), "status")
		return strings.Contains(status, "rollout stopped")
	})
	t.Logf("golb status:\n%s", status)
	if !strings.Contains(status, "last reload: applied") {
		t.Errorf("golb status shows no last reload:\n%s", status)
	}
	time.Sleep(time.Second)
	for _, w := range p.healthyWorkers() {
		if !serving[w.ID] {
			t.Errorf("worker %s of the broken settings is serving", w.ID)
		}
	}
	if n := len(p.healthyWorkers()); n != 3 {
		t.Errorf("%d workers serving after the stopped rollout, want the 3 old ones", n)
	}

	errs := h.Finish()
	t.Logf("%d requests answered in %v over 5 reloads, %d failed", h.OK.Load(), time.Since(start).Round(time.Millisecond), len(errs))
	for i, e := range errs {
		if i < 10 {
			t.Errorf("failed request: %s", e)
		}
	}
	_, metrics, err := get("http://" + pt.adminAddr() + "/metrics")
	if err != nil || !strings.Contains(metrics, `golb_reloads_total{result="applied"} 3`) || !strings.Contains(metrics, `golb_reloads_total{result="invalid"} 1`) || !strings.Contains(metrics, `golb_reloads_total{result="refused"} 1`) {
		t.Errorf("golb_reloads_total not as expected (%v):\n%s", err, grepLines(metrics, "golb_reloads_total"))
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(60 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
}

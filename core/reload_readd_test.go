package core

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golb/golb/core/state"
)

// TestReaddedGroupRollsOverOnceItsBalancerDrained: a group removed by a
// reload and added back, with other settings, by the next one while the
// balancer removed with it still drained kept its old workers for good:
// removeLater skipped a group back in the config, and an added group has
// no rollover. Now its workers serve the removed balancer's last requests,
// then roll over to the settings it came back with.
func TestReaddedGroupRollsOverOnceItsBalancerDrained(t *testing.T) {
	g, k := uniq("rg"), uniq("rk")
	killProcs(t, g, k)
	dir := t.TempDir()
	port, pk, lb := reloadPorts(t, 4), reloadPorts(t, 1), reloadPorts(t, 1)
	keep := strings.Replace(reloadConfig(dir, k, 0, pk, "1ms", "", ""), header(dir, ""), "", 1) // a config needs a group
	group := func(delay string) string {
		return strings.Replace(reloadConfig(dir, g, 1, port, delay, "", ""), header(dir, ""), "", 1)
	}
	f := newReloadFile(t, header(dir, "")+keep+group("4s")+slowBalancerHCL("web", g, lb))
	ta := startAgent(t, f.load())
	waitServing(t, ta, g, 1)
	before := ids(running(allWorkers(ta), g))
	web := balancerNamed(ta, "web")
	inflight := getAll(fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb), 3) // answered in 2 to 6 s
	deadline := time.Now().Add(10 * time.Second)
	for web.InFlight() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests in flight in web after 10s, want 3", web.InFlight())
		}
		time.Sleep(5 * time.Millisecond)
	}

	ta.reload(t, f, header(dir, "")+keep)              // g and web removed: web drains
	ta.reload(t, f, header(dir, "")+keep+group("1ms")) // g back, with other settings
	if web.InFlight() == 0 {
		t.Fatal("the removed web finished its requests before g came back: the test proves nothing")
	}
	expectOK(t, inflight, "the removed balancer's last requests")
	drained := time.Now()
	ws := ta.waitWorkers(t, 30*time.Second, "g rolled over to its new settings", func(ws []*state.Worker) bool {
		rs := inGroup(ws, g, "")
		return len(rs) == 1 && rs[0].Status == state.StatusRunning && !before[rs[0].ID] && !rs[0].Outdated
	})
	w := inGroup(ws, g, "")[0]
	t.Logf("g's worker %s replaced %v after the removed web drained", w.ID, time.Since(drained).Round(time.Millisecond))
	if w.Handle == nil || w.Handle.Labels[LabelSpec] != ta.spec(g).hash {
		t.Errorf("g's worker %s does not run the settings g came back with", w.ID)
	}
}

// TestReaddedBalancerKeepsItsMetrics: a balancer removed by a reload and
// added back by the next one while the old instance still drained lost its
// series from /metrics for good: the new instance's collector was refused
// (the old one's, with the same descriptors, was registered), and the old
// one's was then unregistered once it closed.
func TestReaddedBalancerKeepsItsMetrics(t *testing.T) {
	g := uniq("rm")
	killProcs(t, g)
	dir := t.TempDir()
	port, lb, adm := reloadPorts(t, 2), reloadPorts(t, 1), reloadPorts(t, 1)
	admin := fmt.Sprintf("127.0.0.1:%d", adm)
	group := strings.Replace(reloadConfig(dir, g, 1, port, "4s", "", ""),
		`admin { address = "" }`, fmt.Sprintf(`admin { address = %q }`, admin), 1)
	withWeb := group + slowBalancerHCL("web", g, lb)
	f := newReloadFile(t, withWeb)
	ta := startAgent(t, f.load())
	waitServing(t, ta, g, 1)
	url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb)

	old := balancerNamed(ta, "web")
	inflight := getAll(url, 3)
	deadline := time.Now().Add(20 * time.Second)
	for old.InFlight() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d in flight, want 3", old.InFlight())
		}
		time.Sleep(5 * time.Millisecond)
	}
	ta.reload(t, f, group)   // web removed: it drains its 3 requests
	ta.reload(t, f, withWeb) // and comes back meanwhile
	if old.InFlight() == 0 {
		t.Fatal("the old web drained before the second reload: the test proves nothing")
	}
	expectOK(t, inflight, "in flight across the reloads")
	expectOK(t, getAll(url, 2), "through the new web")
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(ta.logs.String(), "removed balancer closed"); {
		if time.Now().After(deadline) {
			t.Fatal("the removed web never closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	lines := metricLines(t, admin, `golb_requests_total{balancer="web"`)
	t.Logf("golb_requests_total of web once the old instance closed: %q", lines)
	if len(lines) == 0 {
		t.Error("/metrics has no golb_requests_total of balancer web, which serves and counted 2 requests")
	}
	ta.stop(t)
}

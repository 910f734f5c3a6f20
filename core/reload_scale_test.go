package core

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/golb/golb/core/autoscale"
	"github.com/golb/golb/core/state"
)

// scaleReloadConfig is a reload test config with the admin API on admin:
// group g (count, or the scale block when scale is set) behind balancer
// web at lb.
func scaleReloadConfig(dir, admin, g string, count, port, lb int, delay, scale string) string {
	src := strings.Replace(reloadConfig(dir, g, count, port, delay, scale, balancerHCL("web", g, lb, 1, "least_requests")),
		`admin { address = "" }`, fmt.Sprintf(`admin { address = %q }`, admin), 1)
	if scale != "" {
		src = strings.Replace(src, fmt.Sprintf("  count  = %d\n", count), "", 1)
	}
	return src
}

// scaleBlock is a scale block with short windows for tests.
func scaleBlock(min, max int, target float64, extra string) string {
	return fmt.Sprintf(`scale {
    min             = %d
    max             = %d
    target_inflight = %g
    stable_window   = "4s"
    panic_window    = "2s"
    scale_down_delay = "0s"
    %s
  }`, min, max, target, extra)
}

// metricLines are the lines of GET /metrics that start with prefix.
func metricLines(t *testing.T, admin, prefix string) []string {
	t.Helper()
	resp, err := httpc.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// scaleEvents is GET /v1/groups/NAME/events.
func scaleEvents(t *testing.T, admin, g string) []autoscale.Decision {
	t.Helper()
	var events []struct {
		Kind string `json:"kind"`
		autoscale.Decision
	}
	getJSON(t, "http://"+admin+"/v1/groups/"+g+"/events", &events)
	var out []autoscale.Decision
	for _, e := range events {
		if e.Kind == "scale" {
			out = append(out, e.Decision)
		}
	}
	return out
}

// TestReloadScaleBoundsUnderLoad: under a steady 60 requests a second of
// 60 ms each (about 4 in flight), a group scaled within [1, 2] at target 2
// sits at its max 2; a reload to [3, 4] at target 1 clamps the count to 3
// at once and the autoscaler takes it to 4 (wants 4+, max 4); a reload
// back to [1, 2] clamps it to 2 at once and the group drains to 2 workers.
// No request fails; the group view, its events and golb_autoscaler_*
// show the new settings.
func TestReloadScaleBoundsUnderLoad(t *testing.T) {
	g := uniq("rsb")
	killProcs(t, g)
	dir := t.TempDir()
	port, lb, ap := reloadPorts(t, 12), reloadPorts(t, 1), reloadPorts(t, 1)
	admin := fmt.Sprintf("127.0.0.1:%d", ap)
	f := newReloadFile(t, scaleReloadConfig(dir, admin, g, 1, port, lb, "60ms", scaleBlock(1, 2, 2, "")))
	ta := startAgent(t, f.load())
	ta.waitWorkers(t, 60*time.Second, "1 worker", func(ws []*state.Worker) bool { return len(running(ws, g)) >= 1 })
	waitServing(t, ta, g, 1)
	url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb)
	l := startLoad([]string{url}, 60)
	start := time.Now()

	ta.waitGroup(t, g, 30*time.Second, "desired at max 2 under load", func(sg *state.Group) bool { return sg.Desired == 2 })
	waitServing(t, ta, g, 2)

	ta.reload(t, f, scaleReloadConfig(dir, admin, g, 1, port, lb, "60ms", scaleBlock(3, 4, 1, "")))
	if sg := ta.group(t, g); sg.Desired != 3 || sg.Min != 3 || sg.Max != 4 {
		t.Errorf("right after the reload to [3, 4]: desired %d within [%d, %d], want 3 within [3, 4]", sg.Desired, sg.Min, sg.Max)
	}
	if v := ta.autoscalerView(g); v == nil || v.Target != 1 || v.Metric != autoscale.MetricInflight {
		t.Errorf("autoscaler view after the reload: %+v, want target 1 inflight", v)
	}
	reloaded := time.Now()
	ta.waitGroup(t, g, 30*time.Second, "desired at the new max 4", func(sg *state.Group) bool { return sg.Desired == 4 })
	t.Logf("the autoscaler took the group 3 → 4 %v after the reload", time.Since(reloaded).Round(time.Millisecond))
	ta.waitWorkers(t, 60*time.Second, "4 workers", func(ws []*state.Worker) bool { return len(running(ws, g)) == 4 })
	waitServing(t, ta, g, 4)
	time.Sleep(2 * time.Second) // decisions under load keep it within [3, 4]
	if sg := ta.group(t, g); sg.Desired < 3 || sg.Desired > 4 {
		t.Errorf("desired %d under load, want within [3, 4]", sg.Desired)
	}
	evs := scaleEvents(t, admin, g)
	var sawReload bool
	for _, d := range evs {
		if strings.HasPrefix(d.Reason, "reload: scale min 1 → 3, max 2 → 4, target_inflight 2 → 1") && d.From == 2 && d.To == 3 {
			sawReload = true
		}
	}
	if !sawReload {
		t.Errorf("events lack the reload's clamp 2 → 3: %+v", evs)
	}
	prefix := fmt.Sprintf(`golb_autoscaler_desired{group=%q} `, g)
	if got := metricLines(t, admin, prefix); len(got) != 1 || (got[0] != prefix+"3" && got[0] != prefix+"4") {
		t.Errorf("metrics %q, want %q3 or 4", got, prefix)
	}

	// An invalid block (min over max) beside a valid change changes nothing.
	f.write(strings.Replace(scaleReloadConfig(dir, admin, g, 1, port, lb, "60ms", scaleBlock(5, 2, 2, "")), `"least_requests"`, `"round_robin"`, 1))
	if ev, err := ta.Reload(context.Background()); err == nil || ev.Result != ReloadInvalid {
		t.Errorf("reload of min 5 > max 2: %+v, %v; want invalid", ev, err)
	}
	if sg, sp := ta.group(t, g), ta.autoscalers.lookup(g).as.Spec(); sg.Min != 3 || sg.Max != 4 || sp.Min != 3 || sp.Max != 4 || sp.TargetInflight != 1 {
		t.Errorf("after an invalid reload: bounds [%d, %d], spec %+v; want [3, 4] at target 1", sg.Min, sg.Max, sp)
	}
	if p := ta.balancersOf(g)[0].Config().Policy; p != "least_requests" {
		t.Errorf("the invalid reload's policy change was applied: %s", p)
	}

	ta.reload(t, f, scaleReloadConfig(dir, admin, g, 1, port, lb, "60ms", scaleBlock(1, 2, 2, "")))
	if sg := ta.group(t, g); sg.Desired != 2 || sg.Max != 2 {
		t.Errorf("right after the reload to [1, 2]: desired %d within [%d, %d], want 2", sg.Desired, sg.Min, sg.Max)
	}
	ta.waitWorkers(t, 60*time.Second, "2 workers", func(ws []*state.Worker) bool { return len(running(ws, g)) == 2 && len(ws) == 2 })
	time.Sleep(time.Second)
	errs := l.Finish()
	t.Logf("%d requests answered in %v over 2 scale reloads, %d failed", l.OK.Load(), time.Since(start).Round(time.Millisecond), len(errs))
	for i, e := range errs {
		if i < 10 {
			t.Errorf("failed request: %s", e)
		}
	}
	if st := ta.ReloadStatus(); st.Last == nil || !strings.Contains(st.Last.Summary, "scale min 3 → 1, max 4 → 2, target_inflight 1 → 2") {
		t.Errorf("last reload = %+v", st.Last)
	}
}

// TestReloadAddsScaleToZeroAndHolds: a scale block with min 0 added to a
// running group of 1 starts its autoscaler; with no request the group goes
// to zero after scale_to_zero_after, and a request then is held by the
// balancer (which did not hold before) and answered 200 once a worker is
// up.
func TestReloadAddsScaleToZeroAndHolds(t *testing.T) {
	g := uniq("rsz")
	killProcs(t, g)
	dir := t.TempDir()
	port, lb, ap := reloadPorts(t, 6), reloadPorts(t, 1), reloadPorts(t, 1)
	admin := fmt.Sprintf("127.0.0.1:%d", ap)
	f := newReloadFile(t, scaleReloadConfig(dir, admin, g, 1, port, lb, "1ms", ""))
	ta := startAgent(t, f.load())
	ta.waitWorkers(t, 60*time.Second, "1 worker", func(ws []*state.Worker) bool { return len(running(ws, g)) == 1 })
	url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb)
	waitOK(t, url)
	if ta.autoscalerView(g) != nil {
		t.Fatal("an autoscaler before the scale block")
	}

	ta.reload(t, f, scaleReloadConfig(dir, admin, g, 1, port, lb, "1ms", scaleBlock(0, 2, 10, `scale_to_zero_after = "3s"
    hold_timeout = "60s"`)))
	added := time.Now()
	if sg := ta.group(t, g); sg.Desired != 1 || sg.Min != 0 || sg.Max != 2 {
		t.Errorf("after adding the block: desired %d within [%d, %d], want 1 within [0, 2]", sg.Desired, sg.Min, sg.Max)
	}
	if v := ta.autoscalerView(g); v == nil {
		t.Fatal("no autoscaler after adding the scale block")
	}
	if h := ta.balancersOf(g)[0].Config().Hold; h.Max != 1000 || h.Timeout != time.Minute {
		t.Errorf("the balancer's hold after the reload: %+v, want hold_max 1000, 60s", h)
	}
	ta.waitGroup(t, g, 30*time.Second, "desired 0", func(sg *state.Group) bool { return sg.Desired == 0 })
	t.Logf("scaled to zero %v after the scale block was added (scale_to_zero_after 3s)", time.Since(added).Round(time.Millisecond))
	if d := time.Since(added); d < 3*time.Second {
		t.Errorf("scaled to zero after %v, before scale_to_zero_after", d)
	}
	ta.waitWorkers(t, 60*time.Second, "no worker", func(ws []*state.Worker) bool { return len(ws) == 0 })

	start := time.Now()
	type answer struct {
		status int
		body   string
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := httpc.Get(url)
		if err != nil {
			done <- answer{err: err}
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- answer{status: resp.StatusCode, body: string(body)}
	}()
	sawHeld := false
poll:
	for time.Since(start) < 60*time.Second {
		if ta.balancersOf(g)[0].Held() > 0 {
			sawHeld = true
			break
		}
		select {
		case a := <-done:
			done <- a
			break poll
		case <-time.After(5 * time.Millisecond):
		}
	}
	a := <-done
	if a.err != nil || a.status != 200 {
		t.Fatalf("the request at zero: %d %q %v", a.status, a.body, a.err)
	}
	t.Logf("the request at zero answered 200 after %v (seen held: %v)", time.Since(start).Round(time.Millisecond), sawHeld)
	if !sawHeld {
		t.Errorf("the request was not seen held")
	}
	evs := scaleEvents(t, admin, g)
	var added0, up bool
	for _, d := range evs {
		added0 = added0 || strings.HasPrefix(d.Reason, "reload: scale block added")
		up = up || (d.From == 0 && d.To == 1)
	}
	if !added0 || !up {
		t.Errorf("events: %+v, want the reload's and a 0 → 1", evs)
	}
	if got := metricLines(t, admin, "golb_autoscaler_desired{group=\""+g); len(got) != 1 {
		t.Errorf("golb_autoscaler_desired of the group: %q", got)
	}
}

// TestReloadRemovesScaleBackToCount: removing the scale block of a group
// the autoscaler holds at min 2 stops its autoscaler and takes the group
// to its count 1 at once; it stays there, its balancer no longer holds, and
// the autoscaler's metrics and view are gone. A new group with a scale
// block added by the same reload runs as one there at start: its
// autoscaler, bounds, holding balancer and metrics.
func TestReloadRemovesScaleBackToCount(t *testing.T) {
	g := uniq("rsr")
	killProcs(t, g)
	dir := t.TempDir()
	port, lb, ap := reloadPorts(t, 6), reloadPorts(t, 1), reloadPorts(t, 1)
	admin := fmt.Sprintf("127.0.0.1:%d", ap)
	f := newReloadFile(t, scaleReloadConfig(dir, admin, g, 1, port, lb, "1ms", scaleBlock(2, 3, 10, "")))
	ta := startAgent(t, f.load())
	ta.waitWorkers(t, 60*time.Second, "2 workers", func(ws []*state.Worker) bool { return len(running(ws, g)) == 2 })
	waitServing(t, ta, g, 2)
	url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb)
	l := startLoad([]string{url}, 20)

	g2, port2, lb2 := uniq("rsn"), reloadPorts(t, 6), reloadPorts(t, 1)
	killProcs(t, g2)
	second := strings.Replace(groupHCL(g2, 1, port2, "1ms"), "  count  = 1\n", "  "+scaleBlock(1, 2, 10, "")+"\n", 1) +
		balancerHCL("web2", g2, lb2, 1, "round_robin")
	ta.reload(t, f, scaleReloadConfig(dir, admin, g, 1, port, lb, "1ms", "")+second)
	if sg := ta.group(t, g); sg.Desired != 1 || sg.Min != 0 || sg.Max != 1000 {
		t.Errorf("after removing the block: desired %d within [%d, %d], want 1 within [0, 1000]", sg.Desired, sg.Min, sg.Max)
	}
	if ta.autoscalerView(g) != nil {
		t.Error("the autoscaler is still there")
	}
	if h := ta.balancersOf(g)[0].Config().Hold; h.Max != 0 {
		t.Errorf("the balancer still holds: %+v", h)
	}
	ta.waitWorkers(t, 60*time.Second, "1 worker", func(ws []*state.Worker) bool { return len(running(ws, g)) == 1 && len(inGroup(ws, g, "")) == 1 })
	time.Sleep(3 * time.Second) // what a feeder left running would decide
	if sg := ta.group(t, g); sg.Desired != 1 {
		t.Errorf("desired %d 3s after the block was removed, want its count 1", sg.Desired)
	}
	if got := metricLines(t, admin, "golb_autoscaler_desired{group=\""+g); len(got) != 0 {
		t.Errorf("autoscaler metrics after the block was removed: %q", got)
	}
	evs := scaleEvents(t, admin, g)
	if len(evs) == 0 || !strings.HasPrefix(evs[0].Reason, "reload: scale block removed") || evs[0].From != 2 || evs[0].To != 1 {
		t.Errorf("newest event: %+v, want the removal 2 → 1", evs)
	}

	if sg := ta.group(t, g2); sg.Min != 1 || sg.Max != 2 || sg.Desired != 1 {
		t.Errorf("the new scaled group: desired %d within [%d, %d], want 1 within [1, 2]", sg.Desired, sg.Min, sg.Max)
	}
	if ta.autoscalerView(g2) == nil {
		t.Error("the new scaled group has no autoscaler")
	}
	if h := ta.balancersOf(g2)[0].Config().Hold; h.Max != 1000 {
		t.Errorf("the new group's balancer: hold %+v, want hold_max 1000", h)
	}
	waitOK(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb2))
	if got := metricLines(t, admin, "golb_autoscaler_desired{group=\""+g2); len(got) != 1 {
		t.Errorf("golb_autoscaler_desired of the new group: %q", got)
	}
	errs := l.Finish()
	t.Logf("%d requests answered across the removal, %d failed", l.OK.Load(), len(errs))
	for i, e := range errs {
		if i < 10 {
			t.Errorf("failed request: %s", e)
		}
	}
}

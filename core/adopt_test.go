package core

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golb/golb/core/state"
)

// crashedAgent runs an agent on src in a subprocess (this test binary with
// $GOLB_CORE_AGENT_CONFIG), waits until its admin API at admin shows want
// running workers, and SIGKILLs it. It returns the worker processes left
// running, by pid.
func crashedAgent(t *testing.T, dir, src, admin string, want int, groups ...string) map[int]string {
	t.Helper()
	path := filepath.Join(dir, "first.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), agentConfigEnv+"="+path)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("first agent's output:\n%s", out.String())
		}
	})

	start := time.Now()
	for {
		var ws []WorkerView
		resp, err := httpc.Get("http://" + admin + "/v1/workers")
		if err == nil {
			_ = jsonDecode(resp, &ws)
		}
		running := 0
		for _, w := range ws {
			if w.Status == "running" {
				running++
			}
		}
		if running == want {
			break
		}
		select {
		case <-done:
			t.Fatalf("the first agent exited early")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("the first agent has %d running workers after 60s, want %d", running, want)
		}
	}
	t.Logf("first agent: %d workers running after %v", want, time.Since(start).Round(time.Millisecond))
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-done
	return waitProcs(t, 10*time.Second, "the workers to outlive the killed agent", func(ps map[int]string) bool { return len(ps) == want }, groups...)
}

// TestAdoptReplacesChangedAndRemovedGroups: after an agent crash, a new agent
// adopts the workers of an unchanged group (same processes), replaces the
// workers of a group whose settings changed (a new app.avg_delay, so another
// golb.spec label) and removes those of a group no longer in the config.
// No orphan, no duplicate.
func TestAdoptReplacesChangedAndRemovedGroups(t *testing.T) {
	kept, changed, removed := uniq("kept"), uniq("chg"), uniq("gone")
	killProcs(t, kept, changed, removed)
	dir := t.TempDir()
	pk, pc, pr := freePorts(t, 10), freePorts(t, 10), freePorts(t, 10)
	admin := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1))
	first := header(dir, admin) + groupHCL(kept, 1, pk, "1ms") + groupHCL(changed, 2, pc, "1ms") + groupHCL(removed, 1, pr, "1ms")
	before := crashedAgent(t, dir, first, admin, 4, kept, changed, removed)

	var keptPID int
	for pid, id := range before {
		if strings.HasPrefix(id, kept+"-") {
			keptPID = pid
		}
	}

	second := header(dir, "") + groupHCL(kept, 1, pk, "1ms") + groupHCL(changed, 2, pc, "2ms")
	ta := startAgent(t, parseConfig(t, second))
	ws := ta.waitWorkers(t, 60*time.Second, "1 adopted and 2 new workers running", func(ws []*state.Worker) bool {
		for _, w := range ws {
			if w.Outdated {
				return false // still serving while its replacements start
			}
		}
		return len(inGroup(ws, kept, state.StatusRunning)) == 1 && len(inGroup(ws, changed, state.StatusRunning)) == 2 && len(ws) == 3
	})
	for _, w := range ws {
		old := values(before)[w.ID]
		switch w.Group {
		case kept:
			if !w.Adopted || !old || w.ID != before[keptPID] {
				t.Errorf("unchanged group: %s, want %s adopted", describe([]*state.Worker{w}), before[keptPID])
			}
		case changed:
			if w.Adopted || old {
				t.Errorf("changed group: %s was adopted, want a new worker", describe([]*state.Worker{w}))
			}
		}
	}
	now := waitProcs(t, 20*time.Second, "the old workers of the changed and removed groups to exit", func(ps map[int]string) bool {
		return len(ps) == 3
	}, kept, changed, removed)
	if now[keptPID] != before[keptPID] {
		t.Errorf("the adopted worker's process %d is gone: %v", keptPID, now)
	}
	if got, want := values(now), ids(ws); len(got) != len(want) {
		t.Errorf("processes %v, want exactly the store's %s", now, describe(ws))
	} else {
		for id := range want {
			if !got[id] {
				t.Errorf("worker %s has no process: %v", id, now)
			}
		}
	}
	for pid, id := range before {
		if pid != keptPID && alive(pid) {
			t.Errorf("old worker %s (pid %d) still runs", id, pid)
		}
	}

	ta.stop(t)
	if left := workerProcs(kept, changed, removed); len(left) != 0 {
		t.Fatalf("worker processes left after Run returned: %v", left)
	}
}

// TestAdoptRemovesWorkersGracefully: workers left by a crashed agent that
// the new one does not want were SIGKILLed instead of stopped with SIGTERM:
// adopt calls Stop before the new plugin instance knows them, the process
// driver answers ErrNotFound, and only Destroy's SIGKILL reaches them, so a
// worker never drains (a `config { command }` service never cleans up).
func TestAdoptRemovesWorkersGracefully(t *testing.T) {
	removed, other := uniq("gone"), uniq("stay")
	killProcs(t, removed, other)
	dir := t.TempDir()
	po := freePorts(t, 10)
	admin := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1))
	first := header(dir, admin) + groupHCL(removed, 1, freePorts(t, 10), "1ms") + groupHCL(other, 1, po, "1ms")
	before := crashedAgent(t, dir, first, admin, 2, removed, other)

	ta := startAgent(t, parseConfig(t, header(dir, "")+groupHCL(other, 1, po, "1ms")))
	ta.waitWorkers(t, 60*time.Second, "the other group's worker adopted", func(ws []*state.Worker) bool {
		return len(inGroup(ws, other, state.StatusRunning)) == 1
	})
	waitProcs(t, 20*time.Second, "the removed group's worker to exit", func(ps map[int]string) bool { return len(ps) == 0 }, removed)
	ta.stop(t)
	for _, id := range before {
		if !strings.HasPrefix(id, removed+"-") {
			continue
		}
		log, err := os.ReadFile(filepath.Join(dir, "drivers", "process", "logs", id+".stderr.log"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(log), "worker stopped") {
			t.Errorf("removed worker %s did not stop cleanly (no SIGTERM?); its log:\n%s", id, log)
		}
	}
}

// TestChangedGroupRollsOver: after an agent crash, a group whose settings
// changed lost all its workers at once (they were removed before any
// replacement started), and clients got 503 until the new ones were up. Now
// the old workers serve until their replacements are healthy, and are then
// stopped: clients see no error once the first answer came.
func TestChangedGroupRollsOver(t *testing.T) {
	g := uniq("roll")
	killProcs(t, g)
	dir := t.TempDir()
	port, lb := freePorts(t, 10), freePorts(t, 1)
	admin := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1))
	before := crashedAgent(t, dir, header(dir, admin)+groupHCL(g, 2, port, "1ms"), admin, 2, g)

	second := header(dir, "") + groupHCL(g, 2, port, "2ms") + fmt.Sprintf(`
balancer "web" {
  group = %q
  port  = %d
  drain_timeout = "2s"
}
`, g, lb)
	ta := startAgent(t, parseConfig(t, second))

	// Load from the start until only the 2 new workers are left.
	done := make(chan struct{})
	var answers []string // worker id, or the error
	go func() {
		defer close(done)
		url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb)
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			answer := "no answer"
			if resp, err := httpc.Get(url); err == nil {
				var body struct{ Message string }
				_ = jsonDecode(resp, &body)
				answer = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimPrefix(body.Message, "hello from container: "))
			}
			answers = append(answers, answer)
			if onlyNew(ta, g, values(before)) {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	<-done

	old := values(before)
	fromOld, errsAfterFirst, first := 0, 0, -1
	for i, a := range answers {
		code, id, _ := strings.Cut(a, " ")
		if code == "200" {
			if first < 0 {
				first = i
			}
			if old[id] {
				fromOld++
			}
		} else if first >= 0 {
			errsAfterFirst++
			t.Errorf("answer %d: %q after the first 200", i, a)
		}
	}
	t.Logf("%d requests; first 200 at #%d; %d answered by the old workers; %d errors after the first 200", len(answers), first, fromOld, errsAfterFirst)
	if first < 0 {
		t.Fatalf("no 200 at all: %v", answers)
	}
	if fromOld == 0 {
		t.Errorf("the old workers served nothing while their replacements started")
	}
	ws, _ := ta.Store().Workers(nil)
	for _, w := range ws {
		if w.Outdated || old[w.ID] {
			t.Errorf("left after the rollover: %s", describe([]*state.Worker{w}))
		}
	}
	for pid, id := range before {
		if alive(pid) {
			t.Errorf("old worker %s (pid %d) still runs", id, pid)
		}
	}
}

// onlyNew reports whether group runs 2 workers, none of them old, in the
// store and as processes.
func onlyNew(ta *testAgent, group string, old map[string]bool) bool {
	ws, _ := ta.Store().Workers(nil)
	ps := workerProcs(group)
	if len(inGroup(ws, group, state.StatusRunning)) != 2 || len(ws) != 2 || len(ps) != 2 {
		return false
	}
	for _, w := range ws {
		if old[w.ID] {
			return false
		}
	}
	for _, id := range ps {
		if old[id] {
			return false
		}
	}
	return true
}

// TestRuntimeDownAtStartStartsItsGroup: a runtime that was down when golb
// started never got its workers: adopt retried its driver's List on a
// context that Run cancelled as soon as adopt returned, so the group stayed
// failing with no worker for as long as golb ran. Now the group waits,
// failing with "waiting for process: …" (the note `golb status` shows),
// starts nothing meanwhile (a worker an earlier run left may be there
// unlisted), and once the runtime answers it adopts that worker and starts
// the rest. The runtime here is the process driver with a List that fails
// until a file exists (the test binary's listgate knob).
func TestRuntimeDownAtStartStartsItsGroup(t *testing.T) {
	g := uniq("down")
	killProcs(t, g)
	dir := t.TempDir()
	port := freePorts(t, 10)
	admin := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1))
	left := crashedAgent(t, dir, header(dir, admin)+groupHCL(g, 1, port, "1ms"), admin, 1, g)

	gate := filepath.Join(dir, "runtime-up")
	ta := startAgent(t, parseConfig(t, header(dir, "")+groupHCL(g, 2, port, "1ms")), os.Args[0], "listgate", gate)
	const prefix = "waiting for process: runtime down (test)"
	ta.waitGroup(t, g, 30*time.Second, "the group waiting for its runtime", func(gr *state.Group) bool {
		return gr.Failing && strings.HasPrefix(gr.Reason, prefix)
	})
	var view *GroupView
	for _, v := range ta.GroupViews() {
		if v.Name == g {
			view = &v
		}
	}
	if view == nil || !view.Failing || !strings.HasPrefix(view.Reason, prefix) {
		t.Fatalf("GET /v1/groups shows %+v, want failing with %q…", view, prefix)
	}
	// Down for long enough that the retries reach their longest interval,
	// and long past the moment the old code gave up.
	time.Sleep(awaitMax + time.Second)
	if ws, _ := ta.Store().WorkersByGroup(nil, g); len(ws) != 0 {
		t.Fatalf("workers started while the runtime was down: %s", describe(ws))
	}

	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	ws := ta.waitWorkers(t, 60*time.Second, "the earlier worker adopted and a second one running", func(ws []*state.Worker) bool {
		return len(inGroup(ws, g, state.StatusRunning)) == 2
	})
	t.Logf("group at its count %v after its runtime became reachable (retries at most %v apart)", time.Since(up).Round(time.Millisecond), awaitMax)
	adopted := 0
	for _, w := range inGroup(ws, g, state.StatusRunning) {
		if w.Adopted && values(left)[w.ID] {
			adopted++
		}
	}
	if adopted != 1 {
		t.Errorf("%d of the running workers is the earlier run's %v, want 1: %s", adopted, left, describe(ws))
	}
	ta.waitGroup(t, g, 10*time.Second, "the waiting mark lifted", func(gr *state.Group) bool { return !gr.Failing && gr.Reason == "" })
	if procs := workerProcs(g); len(procs) != 2 {
		t.Errorf("worker processes %v, want 2: no duplicate of the adopted one", procs)
	}
}

package core

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golb/golb/core/state"
)

// hungStopGroup is a process group of count workers whose stop_timeout is
// 1 s, so that a hung Stop's deadline (stop_timeout + stopGrace) comes soon.
func hungStopGroup(name string, count, port int) string {
	return strings.Replace(groupHCL(name, count, port, "1ms"), `stop_timeout = "5s"`, `stop_timeout = "1s"`, 1)
}

// quickStops shortens the stop deadlines past stop_timeout.
func quickStops(a *Agent) { a.stopGrace, a.destroyTimeout = time.Second, 5*time.Second }

// TestHungStopIsDestroyed pins issue 14's third bug: a Stop that never
// returned left the worker draining for 40 s with no log, then golb logged
// "worker stopped" and forgot it while it still ran and answered, and Destroy
// was never called. Now Destroy is called at Stop's deadline, and the
// worker is gone before it is logged stopped. (The hangstop knob.)
func TestHungStopIsDestroyed(t *testing.T) {
	g := uniq("hangstop")
	killProcs(t, g)
	port := freePorts(t, 10)
	ta := startTunedAgent(t, parseConfig(t, header(t.TempDir(), "")+hungStopGroup(g, 2, port)), quickStops, os.Args[0], "hangstop")
	ws := ta.waitWorkers(t, 60*time.Second, "2 running workers", func(ws []*state.Worker) bool {
		return len(inGroup(ws, g, state.StatusRunning)) == 2
	})
	procs := waitProcs(t, 10*time.Second, "2 worker processes", func(ps map[int]string) bool { return len(ps) == 2 }, g)
	start := time.Now()
	if err := ta.Scale(g, 1); err != nil {
		t.Fatal(err)
	}
	ws = ta.waitWorkers(t, 60*time.Second, "1 worker left", func(ws []*state.Worker) bool { return len(inGroup(ws, g, "")) == 1 })
	kept := inGroup(ws, g, "")[0]
	if kept.Status != state.StatusRunning {
		t.Errorf("the worker kept is %s", kept.Status)
	}
	var victim string
	for _, id := range procs {
		if id != kept.ID {
			victim = id
		}
	}
	took := time.Since(start)
	t.Logf("scale 2 -> 1 with a hung Stop (stop_timeout 1s, grace 1s): worker destroyed and forgotten after %v", took.Round(time.Millisecond))
	if left := workerProcs(g); values(left)[victim] {
		t.Errorf("worker %s forgotten while its process still runs: %v", victim, left)
	}
	logs := ta.logs.String()
	if !strings.Contains(logs, `msg="worker did not stop; destroying it" worker=`+victim) {
		t.Errorf("no WARN that the hung worker was destroyed:\n%s", logs)
	}
	if !strings.Contains(logs, `msg="worker stopped" worker=`+victim+" group="+g+" how=destroyed") {
		t.Errorf("the destroyed worker was not logged stopped:\n%s", logs)
	}
}

// TestUnstoppableWorkerIsKeptLost pins issue 14's third bug where Destroy
// fails too: golb logged "worker stopped" and forgot a worker that still
// ran, and at SIGINT exited saying "golb stopped". Now the worker stays in
// the state as lost with the reason, Destroy is retried, it is never logged
// stopped, shutdown names it with its pid and how to kill it and does not
// claim a clean stop, and the next run adopts and stops it.
// (The hangstopdestroyfails knob.)
func TestUnstoppableWorkerIsKeptLost(t *testing.T) {
	g := uniq("unstop")
	killProcs(t, g)
	dir := t.TempDir()
	port := freePorts(t, 10)
	cfg := header(dir, "") + hungStopGroup(g, 2, port)
	ta := startTunedAgent(t, parseConfig(t, cfg), quickStops, os.Args[0], "hangstopdestroyfails")
	ta.waitWorkers(t, 60*time.Second, "2 running workers", func(ws []*state.Worker) bool {
		return len(inGroup(ws, g, state.StatusRunning)) == 2
	})
	waitProcs(t, 10*time.Second, "2 worker processes", func(ps map[int]string) bool { return len(ps) == 2 }, g)
	if err := ta.Scale(g, 1); err != nil {
		t.Fatal(err)
	}
	ws := ta.waitWorkers(t, 60*time.Second, "a lost worker", func(ws []*state.Worker) bool { return len(inGroup(ws, g, state.StatusLost)) == 1 })
	lost := inGroup(ws, g, state.StatusLost)[0]
	if !strings.Contains(lost.Reason, "deadline exceeded") || !strings.Contains(lost.Reason, destroyRefused) {
		t.Errorf("lost reason %q, want Stop's deadline and Destroy's error", lost.Reason)
	}
	// Retried: the first retry's Destroy fails again and says so.
	ta.waitWorkers(t, 30*time.Second, "Destroy retried", func(ws []*state.Worker) bool {
		w := inGroup(ws, g, state.StatusLost)
		return len(w) == 1 && strings.HasPrefix(w[0].Reason, "could not be stopped: destroy: ")
	})
	var view *WorkerView
	for _, v := range ta.WorkerViews() {
		if v.ID == lost.ID {
			view = &v
		}
	}
	if view == nil || view.Status != "lost" || view.Reason == "" {
		t.Fatalf("golb status shows the lost worker as %+v", view)
	}
	pid := lost.Details["pid"]
	if n, _ := strconv.Atoi(pid); !alive(n) {
		t.Fatalf("the lost worker's process %q does not run: the test proves nothing", pid)
	}

	// Shutdown: both workers hang in Stop and refuse Destroy.
	ta.cancel()
	select {
	case <-ta.done:
	case <-time.After(90 * time.Second):
		t.Fatal("Run did not return within 90s of cancel")
	}
	err := ta.runErr
	ta.runErr = nil // checked here, not by the cleanup's stop
	if !errors.Is(err, ErrWorkersLeft) || !strings.Contains(err.Error(), lost.ID) {
		t.Errorf("Run returned %v, want ErrWorkersLeft naming %s", err, lost.ID)
	}
	ta.showLogs(t)
	logs := ta.logs.String()
	if strings.Contains(logs, `msg="worker stopped" worker=`+lost.ID) {
		t.Errorf("a worker that still runs was logged stopped:\n%s", logs)
	}
	named := fmt.Sprintf(`msg="worker could not be stopped and may still run" worker=%s group=%s driver=process pid=%s kill="kill -KILL -- -%s"`, lost.ID, g, pid, pid)
	if !strings.Contains(logs, named) {
		t.Errorf("shutdown did not name the worker with its pid and how to kill it (want %s):\n%s", named, logs)
	}
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	if last := lines[len(lines)-1]; strings.Contains(last, `msg="golb stopped"`) || !strings.Contains(last, "not cleanly") {
		t.Errorf("the last line claims a clean stop: %s", last)
	}
	left := waitProcs(t, 10*time.Second, "both workers still running", func(ps map[int]string) bool { return len(ps) == 2 }, g)

	// The next run, with a plugin that works, adopts them and stops them.
	ta2 := startAgent(t, parseConfig(t, cfg))
	ta2.waitWorkers(t, 60*time.Second, "both workers adopted", func(ws []*state.Worker) bool {
		ad := 0
		for _, w := range inGroup(ws, g, state.StatusRunning) {
			if w.Adopted && values(left)[w.ID] {
				ad++
			}
		}
		return ad == 2
	})
	ta2.stop(t)
	waitProcs(t, 30*time.Second, "no worker left after the next run stopped", func(ps map[int]string) bool { return len(ps) == 0 }, g)
}

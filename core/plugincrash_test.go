package core

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golb/golb/core/state"
)

// TestPluginPanicInStartBacksOff pins issue 14's second bug: a plugin whose
// Start panicked was relaunched about 10 times a second (80 restarts in
// 8 s), each trace line logged at ERROR (1,700 lines), and the workers
// stayed pending with no NOTE. Now its restarts back off like a crash-looping
// worker's (at most 10 in the first 10 s), its panic is logged once with
// its trace and then counted, and the group's NOTE names the driver, the
// call and the panic. (The test binary's panicstart knob.)
func TestPluginPanicInStartBacksOff(t *testing.T) {
	g := uniq("panic")
	killProcs(t, g)
	port := freePorts(t, 10)
	start := time.Now()
	ta := startAgent(t, parseConfig(t, header(t.TempDir(), "")+groupHCL(g, 2, port, "1ms")), os.Args[0], "panicstart")
	const want = "driver process crashed in Start: panic: " + panicMessage
	ta.waitGroup(t, g, 30*time.Second, "the crash NOTE", func(gr *state.Group) bool { return gr.Failing && gr.Reason == want })

	// The first 10 s of the agent: count the restarts in them.
	time.Sleep(time.Until(start.Add(10 * time.Second)))
	ds, err := ta.Store().Drivers(nil)
	if err != nil || len(ds) != 1 {
		t.Fatalf("drivers: %+v %v", ds, err)
	}
	restarts := ds[0].Restarts
	t.Logf("plugin restarts in the first 10 s: %d", restarts)
	if restarts > 10 || restarts < 2 {
		t.Errorf("%d plugin restarts in the first 10 s, want 2 to 10", restarts)
	}
	if note := ta.note(g); note != want {
		t.Errorf("golb status NOTE = %q, want %q", note, want)
	}
	for _, v := range ta.DriverViews() {
		if v.Error != want {
			t.Errorf("GET /v1/drivers error = %q, want %q", v.Error, want)
		}
	}
	ws, _ := ta.Store().Workers(nil)
	if len(inGroup(ws, g, "")) == 0 || len(inGroup(ws, g, state.StatusPending)) != len(inGroup(ws, g, "")) {
		t.Errorf("workers %s, want all pending", describe(ws))
	}
	ta.stop(t)

	logs := ta.logs.String()
	var errLines int
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "level=ERROR") {
			errLines++
		}
	}
	t.Logf("%d ERROR lines for %d restarts", errLines, restarts)
	ta.showLogs(t)
	if n := strings.Count(logs, "trace="); n != 1 {
		t.Errorf("the panic's trace was logged %d times, want once", n)
	}
	// One trace, cut to 40 lines: the plugin's stderr may hold the
	// panics of two Starts at once (the group starts 2 workers).
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "trace=") {
			if n := strings.Count(l, `\n`); n > 41 {
				t.Errorf("the trace holds %d lines, want at most 40", n)
			}
		}
	}
	if errLines > 3 {
		t.Errorf("%d ERROR lines, want at most 3 (the crash, once):\n%s", errLines, logs)
	}
	if !strings.Contains(logs, "driver plugin crashed again the same way") || !strings.Contains(logs, "times=2") {
		t.Errorf("the repeats were not counted:\n%s", logs)
	}
}

// TestPluginPanicInStopLeavesNoWorker: a plugin that dies in every Stop
// must not make golb forget the worker it was stopping. The Stop is tried
// again on the new instance, which dies too; then Destroy, on the next
// instance, removes the worker. The NOTE names Stop, and shutdown, whose
// Stops die the same way, stops the last worker so too. (The panicstop
// knob.)
func TestPluginPanicInStopLeavesNoWorker(t *testing.T) {
	g := uniq("panicstop")
	killProcs(t, g)
	port := freePorts(t, 10)
	ta := startAgent(t, parseConfig(t, header(t.TempDir(), "")+groupHCL(g, 2, port, "1ms")), os.Args[0], "panicstop")
	ta.waitWorkers(t, 60*time.Second, "2 running workers", func(ws []*state.Worker) bool {
		return len(inGroup(ws, g, state.StatusRunning)) == 2
	})
	procs := waitProcs(t, 10*time.Second, "2 worker processes", func(ps map[int]string) bool { return len(ps) == 2 }, g)
	if err := ta.Scale(g, 1); err != nil {
		t.Fatal(err)
	}
	ta.waitGroup(t, g, 30*time.Second, "the crash NOTE", func(gr *state.Group) bool {
		return gr.Reason == "driver process crashed in Stop: panic: boom in Stop (test)"
	})
	ws := ta.waitWorkers(t, 60*time.Second, "the scaled-away worker gone", func(ws []*state.Worker) bool {
		return len(inGroup(ws, g, "")) == 1
	})
	kept := inGroup(ws, g, "")[0].ID
	waitProcs(t, 10*time.Second, "its process gone", func(ps map[int]string) bool {
		return len(ps) == 1 && values(ps)[kept]
	}, g)
	logs := ta.logs.String()
	for _, id := range procs {
		if id != kept && !strings.Contains(logs, `msg="worker did not stop; destroying it" worker=`+id) {
			t.Errorf("worker %s was not removed through Destroy:\n%s", id, logs)
		}
	}
	ta.stop(t) // Run returns nil: the last worker is destroyed too
	waitProcs(t, 10*time.Second, "no worker left", func(ps map[int]string) bool { return len(ps) == 0 }, g)
	ta.showLogs(t)
}

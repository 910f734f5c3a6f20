package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golb/golb/core/state"
	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/process"
)

// slowStartFor is how long slowStart's first Start takes: past the 1 s
// startTimeout of TestStartPastItsTimeoutLeavesNoWorker, and past the
// first retry of its lost worker's Destroy (1 s after), with room to spare.
const slowStartFor = 4 * time.Second

// slowStart is the process driver with a first Start that ignores its ctx
// and takes slowStartFor, then starts the worker anyway (a runtime that
// hangs and recovers, an image load that does not listen to its cancel),
// and a first Destroy that fails. Later calls are the process driver's.
type slowStart struct {
	*process.Driver
	starts, destroys atomic.Int32
}

func (d *slowStart) Start(ctx context.Context, spec drivers.WorkerSpec) (*drivers.Handle, error) {
	if d.starts.Add(1) == 1 {
		time.Sleep(slowStartFor)
		return d.Driver.Start(context.Background(), spec)
	}
	return d.Driver.Start(ctx, spec)
}

func (d *slowStart) Destroy(ctx context.Context, id string) error {
	if d.destroys.Add(1) == 1 {
		return errors.New("destroy refused once (test)")
	}
	return d.Driver.Destroy(ctx, id)
}

// shortStartTimeout sets startTimeout to d for the test (before its agent
// starts: register it before startAgent, whose cleanup then runs first).
func shortStartTimeout(t *testing.T, d time.Duration) {
	old := startTimeout
	startTimeout = d
	t.Cleanup(func() { startTimeout = old })
}

// TestStartPastItsTimeoutLeavesNoWorker: a Start that outlived
// startTimeout was logged and forgotten without a Destroy; the plugin
// finished it anyway and the worker ran on unknown to golb, even past a
// clean shutdown. Now the cut Start's worker is destroyed (kept lost while
// that Destroy fails), and shutdown stops one that a plugin started after
// golb gave up on it.
//
// The watch on the cut Start's id (cutstart.go) is put off past the test
// here, so that shutdown's own sweep is what finds the late worker;
// TestCutStartsLateWorkerIsRemoved has the watch find it while golb runs.
func TestStartPastItsTimeoutLeavesNoWorker(t *testing.T) {
	shortStartTimeout(t, time.Second)
	setCutSweep(t, time.Hour, time.Hour, time.Hour)
	g := uniq("sto")
	killProcs(t, g)
	src := header(t.TempDir(), "") + groupHCL(g, 1, freePorts(t, 10), "1ms")
	ta := startAgent(t, parseConfig(t, src), os.Args[0], "slowstart")

	lost := ta.waitWorkers(t, 30*time.Second, "the cut Start's worker kept lost (its first Destroy fails)", func(ws []*state.Worker) bool {
		return len(inGroup(ws, g, state.StatusLost)) == 1
	})
	reason := inGroup(lost, g, state.StatusLost)[0].Reason
	t.Logf("lost worker's reason: %s", reason)
	if !strings.Contains(reason, "start: context deadline exceeded") || !strings.Contains(reason, "destroy refused once") {
		t.Errorf("lost worker's reason %q does not say its Start was cut and its Destroy failed", reason)
	}
	ta.waitWorkers(t, 30*time.Second, "a replacement running, the lost one destroyed at last", func(ws []*state.Worker) bool {
		return len(running(ws, g)) == 1 && len(inGroup(ws, g, state.StatusLost)) == 0
	})
	// The plugin finishes the cut Start after golb destroyed its id: a
	// worker golb knows nothing of, beside the replacement.
	waitProcs(t, slowStartFor+30*time.Second, "the late Start's worker process beside the replacement",
		func(ps map[int]string) bool { return len(ps) == 2 }, g)
	ta.stop(t)
	if left := workerProcs(g); len(left) != 0 {
		t.Errorf("worker processes left running after a clean shutdown: %v", left)
	}
	if logs := ta.logs.String(); !strings.Contains(logs, "stopping a worker golb had lost track of") {
		t.Errorf("shutdown did not say it stopped a worker it had lost track of")
	}
}

// setCutSweep sets the cut-start watch's timing for the test (before its
// agent starts).
func setCutSweep(t *testing.T, first, most, watch time.Duration) {
	f, m, w := cutSweepFirst, cutSweepMax, cutWatchFor
	cutSweepFirst, cutSweepMax, cutWatchFor = first, most, watch
	t.Cleanup(func() { cutSweepFirst, cutSweepMax, cutWatchFor = f, m, w })
}

// TestCutStartsLateWorkerIsRemoved: a plugin that finished a Start after
// golb had cut it (and destroyed its id, finding nothing) left a worker
// running unknown to golb, beside its replacement, until golb's shutdown
// or the plugin's next restart. Now the cut Start's id is watched, and the
// late worker is removed while golb runs.
func TestCutStartsLateWorkerIsRemoved(t *testing.T) {
	shortStartTimeout(t, time.Second)
	setCutSweep(t, 200*time.Millisecond, time.Second, time.Minute)
	g := uniq("cut")
	killProcs(t, g)
	src := header(t.TempDir(), "") + groupHCL(g, 1, freePorts(t, 10), "1ms")
	ta := startAgent(t, parseConfig(t, src), os.Args[0], "slowstart")
	begin := time.Now()

	ta.waitWorkers(t, 30*time.Second, "a replacement running, the cut Start's record gone", func(ws []*state.Worker) bool {
		return len(running(ws, g)) == 1 && len(inGroup(ws, g, state.StatusLost)) == 0
	})
	for deadline := time.Now().Add(slowStartFor + 30*time.Second); !strings.Contains(ta.logs.String(), "a cut start's worker came up late; removing it"); {
		if time.Now().After(deadline) {
			t.Fatalf("no late worker of the cut Start found within %s", slowStartFor+30*time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitProcs(t, 30*time.Second, "the late worker gone, the replacement left", func(ps map[int]string) bool { return len(ps) == 1 }, g)
	t.Logf("late worker removed %s after the agent started (its Start took %s)", time.Since(begin).Round(time.Millisecond), slowStartFor)
	if ws, _ := ta.Store().Workers(nil); len(running(ws, g)) != 1 {
		t.Errorf("running workers after the late one was removed: %d, want the replacement alone", len(running(ws, g)))
	}
}

// startErr is the process driver with a Start that always fails, with one
// message for its first 3 calls and another after.
type startErr struct {
	*process.Driver
	calls atomic.Int32
}

func (d *startErr) Start(context.Context, drivers.WorkerSpec) (*drivers.Handle, error) {
	image := "a"
	if d.calls.Add(1) > 3 {
		image = "b"
	}
	return nil, fmt.Errorf("starterr: image %s not found (test)", image)
}

// TestStartErrorLoggedOncePerStreak: a group whose starts kept failing
// logged "starting worker failed" at ERROR, with the plugin's whole error,
// at every retry of its crash streak. Now the first of a streak and each
// new error text are ERROR, the same error again DEBUG.
func TestStartErrorLoggedOncePerStreak(t *testing.T) {
	g := uniq("ste")
	killProcs(t, g)
	src := header(t.TempDir(), "") + groupHCL(g, 1, freePorts(t, 10), "1ms")
	ta := startAgent(t, parseConfig(t, src), os.Args[0], "starterr")
	ta.waitGroup(t, g, 60*time.Second, "the group failing after 5 failed starts", func(g *state.Group) bool { return g.Failing })
	logs := ta.logs.String()
	loud, again := 0, strings.Count(logs, "starting worker failed again the same way")
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "level=ERROR") && strings.Contains(l, `msg="starting worker failed"`) {
			loud++
		}
	}
	t.Logf("%d failed starts: %d logged at ERROR, %d at DEBUG", loud+again, loud, again)
	if loud != 2 {
		t.Errorf("%d ERROR lines for failed starts, want 2 (the first, and the one whose error changed)", loud)
	}
	if again < 3 {
		t.Errorf("%d DEBUG lines for the same error again, want at least 3", again)
	}
}

package core

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/golb/golb/core/state"
)

// TestReconcileNeverStopsADrainingWorkerAgain: the scale-down and the
// rollover's retirement of outdated workers set Draining without looking at
// the status, so a pass that read a worker running just before a drain on
// request (or another pass) began stopping it ran a second stopWorker for
// it ("worker stopped" logged twice, a second Stop and Destroy). Now only
// the caller that moved a worker from running to draining stops it. Here
// each pass reads a stale snapshot (running) of a worker the store has
// draining; a second stop would fail (this agent has no plugin) and mark
// it lost.
func TestReconcileNeverStopsADrainingWorkerAgain(t *testing.T) {
	ta := crashAgent(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	now := time.Now().UTC()
	stale := func(id string, outdated bool) *state.Worker {
		w := &state.Worker{ID: id, Group: "g", Driver: "process", Port: 1, Status: state.StatusRunning, StartedAt: now, Outdated: outdated}
		if err := ta.Store().UpsertWorker(w); err != nil {
			t.Fatal(err)
		}
		if !ta.beginStop(id, state.StatusRunning) {
			t.Fatalf("beginStop(%s) did not move it from running", id)
		}
		if ta.beginStop(id, state.StatusRunning) {
			t.Fatalf("beginStop(%s) moved it twice", id)
		}
		return w // as a pass read it before: running
	}

	// A scale-down to 0 reading g-1 running.
	scaled := stale("g-1", false)
	ta.reconcileGroup(ctx, &state.Group{Name: "g", Driver: "process", Desired: 0, Max: 1000}, []*state.Worker{scaled})
	// A rollover, its replacement g-3 healthy, reading outdated g-2 running.
	outdated := stale("g-2", true)
	repl := &state.Worker{ID: "g-3", Group: "g", Driver: "process", Port: 3, Status: state.StatusRunning, StartedAt: now}
	ta.reconcileGroup(ctx, &state.Group{Name: "g", Driver: "process", Desired: 1, Max: 1000}, []*state.Worker{outdated, repl})

	time.Sleep(300 * time.Millisecond) // a second stopWorker fails at once
	for _, id := range []string{"g-1", "g-2"} {
		if w, _ := ta.Store().Worker(nil, id); w == nil || w.Status != state.StatusDraining {
			t.Errorf("worker %s: %s, want still draining (stopped by its first stopper only)", id, describe([]*state.Worker{w}))
		}
	}
	if strings.Contains(ta.logs.String(), "could not be stopped") {
		t.Errorf("a second stop ran:\n%s", ta.logs.String())
	}
	cancel()
	ta.wg.Wait()
}

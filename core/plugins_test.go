package core

import (
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golb/golb/core/state"
)

// TestHungPluginIsReplaced: a driver plugin that is alive but answers
// nothing (SIGSTOPped) was never noticed: a worker that died meanwhile was
// never replaced, and shutdown hung for as long as the plugin did. The
// liveness probe kills it, a new instance recovers the workers (the one
// still running is not restarted), and the dead worker is replaced.
func TestHungPluginIsReplaced(t *testing.T) {
	g := uniq("hung")
	killProcs(t, g)
	port := freePorts(t, 10)
	ta := startAgent(t, parseConfig(t, header(t.TempDir(), "")+groupHCL(g, 2, port, "1ms")))
	ta.waitWorkers(t, 60*time.Second, "2 running workers", func(ws []*state.Worker) bool {
		return len(inGroup(ws, g, state.StatusRunning)) == 2
	})
	procs := waitProcs(t, 10*time.Second, "2 worker processes", func(ps map[int]string) bool { return len(ps) == 2 }, g)
	ds, _ := ta.Store().Drivers(nil)
	if len(ds) != 1 || ds[0].PluginPID == 0 {
		t.Fatalf("drivers: %+v", ds)
	}
	hung := ds[0].PluginPID
	t.Cleanup(func() { _ = syscall.Kill(hung, syscall.SIGKILL) })

	start := time.Now()
	if err := syscall.Kill(hung, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var victimPID, survivorPID int
	var victim, survivor string
	for pid, id := range procs {
		if victim == "" {
			victimPID, victim = pid, id
		} else {
			survivorPID, survivor = pid, id
		}
	}
	if err := syscall.Kill(victimPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	ta.waitWorkers(t, 60*time.Second, "the killed worker replaced through a new plugin instance", func(ws []*state.Worker) bool {
		running := inGroup(ws, g, state.StatusRunning)
		return len(running) == 2 && ids(running)[survivor] && !ids(running)[victim]
	})
	t.Logf("hung plugin noticed and the dead worker replaced %v after the SIGSTOP", time.Since(start).Round(time.Millisecond))
	// The driver record is updated once the new instance has fingerprinted.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ds, _ = ta.Store().Drivers(nil)
		d := *ds[0]
		if d.Running && d.PluginPID != hung && d.Restarts == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("driver after the takeover: %+v, want running, a new pid, 1 restart", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if now := workerProcs(g); now[survivorPID] != survivor {
		t.Errorf("the surviving worker %s (pid %d) was restarted: processes now %v", survivor, survivorPID, now)
	}
	ta.stop(t)
	if left := workerProcs(g); len(left) != 0 {
		t.Errorf("worker processes left after shutdown: %v", left)
	}
}

// TestConcurrentDriverStateUpdatesAreNotLost: setDriverState read the
// driver record outside the write transaction and upserted a changed copy,
// so of two updates at once (a liveness probe marking the plugin silent, a
// restart recording its new pid) one silently undid the other. It now reads
// and writes in one transaction (state.UpdateDriver).
func TestConcurrentDriverStateUpdatesAreNotLost(t *testing.T) {
	store, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := store.UpsertDriver(&state.Driver{Name: "process", Running: true}); err != nil {
		t.Fatal(err)
	}
	m := &pluginManager{store: store}
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for range each {
				m.setDriverState("process", func(d *state.Driver) {
					d.Restarts++
					if i == 0 {
						d.Error = "plugin not answering"
					}
				})
			}
		})
	}
	wg.Wait()
	ds, _ := store.Drivers(nil)
	if len(ds) != 1 || ds[0].Restarts != writers*each || ds[0].Error == "" || !ds[0].Running {
		t.Fatalf("after %d concurrent updates: %+v, want Restarts %d, the Error set and Running kept", writers*each, ds[0], writers*each)
	}
	m.setDriverState("nosuch", func(*state.Driver) { t.Error("fn called for a driver with no record") })
	if ds, _ := store.Drivers(nil); len(ds) != 1 {
		t.Fatalf("setDriverState created a record: %+v", ds)
	}
}

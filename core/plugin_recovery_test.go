package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/golb/golb/core/state"
	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/process"
)

// hangRecover is the process driver as an instance that hangs: the first
// Recover any instance of its data dir gets blocks for ever (it ignores its
// ctx), and from then on so does that instance's Info, so the liveness
// probe sees it silent. Later instances find the marker file and work.
type hangRecover struct {
	*process.Driver
	dir  atomic.Value // string: the plugin's data dir (SetConfig)
	hung atomic.Bool
}

func (d *hangRecover) SetConfig(ctx context.Context, cfg drivers.PluginConfig) error {
	d.dir.Store(cfg.DataDir)
	return d.Driver.SetConfig(ctx, cfg)
}

func (d *hangRecover) Recover(ctx context.Context, h *drivers.Handle) error {
	dir, _ := d.dir.Load().(string)
	if f, err := os.OpenFile(filepath.Join(dir, "hung-once"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
		f.Close()
		d.hung.Store(true)
	}
	if d.hung.Load() {
		select {}
	}
	return d.Driver.Recover(ctx, h)
}

func (d *hangRecover) Info(ctx context.Context) (drivers.Info, error) {
	if d.hung.Load() {
		select {}
	}
	return d.Driver.Info(ctx)
}

// slowRecoverDelay is how long each of slowRecover's Recovers takes.
const slowRecoverDelay = 2500 * time.Millisecond

// slowRecover is the process driver with a Recover that takes
// slowRecoverDelay (ignoring its ctx), as a runtime under load does; its
// other calls answer at once.
type slowRecover struct{ *process.Driver }

func (d *slowRecover) Recover(ctx context.Context, h *drivers.Handle) error {
	time.Sleep(slowRecoverDelay)
	return d.Driver.Recover(ctx, h)
}

// recoveryConfig is count process workers of group g behind balancer "web"
// on lb, with an admin API off.
func recoveryConfig(dir, g string, count, port, lb int) string {
	return header(dir, "") + groupHCL(g, count, port, "1ms") + balancerHCL("web", g, lb, 1, "round_robin")
}

// pluginPID is the driver plugin's pid and restarts from the store.
func pluginPID(t *testing.T, ta *testAgent) (pid, restarts int) {
	t.Helper()
	ds, _ := ta.Store().Drivers(nil)
	if len(ds) != 1 {
		t.Fatalf("drivers: %+v", ds)
	}
	return ds[0].PluginPID, ds[0].Restarts
}

// steadyLoad sends GETs through url until stop is called, which returns
// the count of answers and of failures (not a 200).
func steadyLoad(url string) (stop func() (ok, failed int, firstErr string)) {
	var okN, failN atomic.Int64
	var first atomic.Value
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			resp, err := httpc.Get(url)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("%s", resp.Status)
				}
			}
			if err != nil {
				failN.Add(1)
				first.CompareAndSwap(nil, err.Error())
				continue
			}
			okN.Add(1)
		}
	})
	return func() (int, int, string) {
		close(done)
		wg.Wait()
		s, _ := first.Load().(string)
		return int(okN.Load()), int(failN.Load()), s
	}
}

// watchGroupStatuses records, until the test ends, every status any
// worker of group g took in the store, and any worker that left it.
func watchGroupStatuses(t *testing.T, ta *testAgent, g string) (seen func() string) {
	var mu sync.Mutex
	var events []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := map[string]state.WorkerStatus{}
		for {
			ws := memdb.NewWatchSet()
			all, _ := ta.Store().Workers(ws)
			now := map[string]state.WorkerStatus{}
			for _, w := range inGroup(all, g, "") {
				now[w.ID] = w.Status
				if last[w.ID] != w.Status && w.Status != state.StatusRunning && w.Status != state.StatusPending {
					mu.Lock()
					events = append(events, w.ID+" "+string(w.Status)+" ("+w.Reason+")")
					mu.Unlock()
				}
			}
			for id := range last {
				if _, ok := now[id]; !ok {
					mu.Lock()
					events = append(events, id+" forgotten")
					mu.Unlock()
				}
			}
			last = now
			if ws.WatchCtx(ctx) != nil {
				return
			}
		}
	}()
	stopped := false
	return func() string {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(events, "; ")
	}
}

// TestHungPluginInstanceDuringRecoveryLosesNoWorker pins a plugin restart
// whose new instance hangs in its first Recover: each worker's Recover
// timed out after 10 s and the worker was marked lost, pulled from the
// pools and destroyed, while the liveness probe skipped the driver until
// recovery returned, so the hung instance was never killed. Now the probe
// watches the new instance during recovery and kills it, the next instance
// recovers every worker, and the workers serve throughout. (The
// hangrecover knob.)
func TestHungPluginInstanceDuringRecoveryLosesNoWorker(t *testing.T) {
	g := uniq("hungrec")
	killProcs(t, g)
	port, lb := freePorts(t, 10), freePorts(t, 1)
	ta := startAgent(t, parseConfig(t, recoveryConfig(t.TempDir(), g, 3, port, lb)), os.Args[0], "hangrecover")
	ta.waitWorkers(t, 60*time.Second, "3 running workers", func(ws []*state.Worker) bool { return len(running(ws, g)) == 3 })
	waitServing(t, ta, g, 3)
	procs := waitProcs(t, 10*time.Second, "3 worker processes", func(ps map[int]string) bool { return len(ps) == 3 }, g)
	seen := watchGroupStatuses(t, ta, g)
	stopLoad := steadyLoad(fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb))

	first, _ := pluginPID(t, ta)
	start := time.Now()
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The second instance hangs in Recover; the probe kills it; the third
	// recovers all three.
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(ta.logs.String(), `msg="workers recovered by the new plugin instance" driver=process recovered=3 retrying=0`) {
		if time.Now().After(deadline) {
			t.Fatalf("the workers were not recovered within 60 s of the plugin's death")
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	time.Sleep(time.Second) // traffic on the recovered workers
	ok, failed, firstErr := stopLoad()
	_, restarts := pluginPID(t, ta)
	t.Logf("plugin killed, its next instance hung in Recover and was killed by the probe, the third recovered 3 workers: %v after the kill, %d restarts; %d requests answered meanwhile, %d failed",
		took.Round(time.Millisecond), restarts, ok, failed)
	if restarts != 2 {
		t.Errorf("%d plugin restarts, want 2 (the hung instance killed and replaced)", restarts)
	}
	if !strings.Contains(ta.logs.String(), "driver plugin not answering; killing it") {
		t.Errorf("the hung instance was not killed by the liveness probe")
	}
	if ev := seen(); ev != "" {
		t.Errorf("workers left running during the plugin's recovery: %s", ev)
	}
	if now := workerProcs(g); len(now) != 3 || fmt.Sprint(values(now)) != fmt.Sprint(values(procs)) {
		t.Errorf("worker processes %v, want the same 3 as before the crash %v", now, procs)
	}
	if failed > 0 || ok == 0 {
		t.Errorf("%d requests failed (first: %s), %d answered, while the plugin was recovered: want none failed", failed, firstErr, ok)
	}
	ta.stop(t)
	ta.showLogs(t)
}

// TestSlowPluginRecoveryKeepsWorkersServing pins a plugin restart whose
// new instance is slow to Recover (it answers, later than the timeout):
// every timed-out Recover marked a healthy worker lost, pulled it from the
// pools and destroyed it, one worker after the other, with the supervisors
// and stops waiting behind the whole sequence. Now a timeout is "retry
// later": the workers stay in the pools, the new instance takes over within
// about two timeouts, and the Recovers are retried until they succeed.
// (The slowrecover knob; recoverTimeout 1 s, each Recover 2.5 s.)
func TestSlowPluginRecoveryKeepsWorkersServing(t *testing.T) {
	g := uniq("slowrec")
	killProcs(t, g)
	port, lb := freePorts(t, 10), freePorts(t, 1)
	ta := startTunedAgent(t, parseConfig(t, recoveryConfig(t.TempDir(), g, 3, port, lb)),
		func(a *Agent) { a.recoverTimeout = time.Second }, os.Args[0], "slowrecover")
	ta.waitWorkers(t, 60*time.Second, "3 running workers", func(ws []*state.Worker) bool { return len(running(ws, g)) == 3 })
	waitServing(t, ta, g, 3)
	procs := waitProcs(t, 10*time.Second, "3 worker processes", func(ps map[int]string) bool { return len(ps) == 3 }, g)
	seen := watchGroupStatuses(t, ta, g)
	stopLoad := steadyLoad(fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb))

	first, _ := pluginPID(t, ta)
	start := time.Now()
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wait := func(what, line string, n int) time.Duration {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for strings.Count(ta.logs.String(), line) < n {
			if time.Now().After(deadline) {
				t.Fatalf("no %s within 60 s of the plugin's death", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}
	handover := wait("hand-over to the new instance", `msg="workers recovered by the new plugin instance" driver=process recovered=0 retrying=3`, 1)
	recovered := wait("recovery of all 3 workers", `msg="worker recovered by the new plugin instance"`, 3)
	time.Sleep(time.Second)
	ok, failed, firstErr := stopLoad()
	t.Logf("Recover 2.5 s, timeout 1 s: the new instance took over %v after the kill and had recovered the 3 workers %v after it; %d requests answered meanwhile, %d failed",
		handover.Round(time.Millisecond), recovered.Round(time.Millisecond), ok, failed)
	if ev := seen(); ev != "" {
		t.Errorf("workers left running during the plugin's recovery: %s", ev)
	}
	if now := workerProcs(g); len(now) != 3 || fmt.Sprint(values(now)) != fmt.Sprint(values(procs)) {
		t.Errorf("worker processes %v, want the same 3 as before the crash %v", now, procs)
	}
	if failed > 0 || ok == 0 {
		t.Errorf("%d requests failed (first: %s), %d answered, while the plugin was recovered: want none failed", failed, firstErr, ok)
	}
	if strings.Contains(ta.logs.String(), "worker lost with its plugin") {
		t.Errorf("a worker was logged lost")
	}
	// The new instance knows them: a scale-down stops one gracefully.
	if err := ta.Scale(g, 2); err != nil {
		t.Fatal(err)
	}
	ta.waitWorkers(t, 30*time.Second, "a worker stopped", func(ws []*state.Worker) bool { return len(inGroup(ws, g, "")) == 2 })
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(ta.logs.String(), `msg="worker stopped"`); { // logged once forgotten
		if time.Now().After(deadline) {
			t.Fatal("the scaled-away worker was not logged stopped")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(ta.logs.String(), "how=stopped") {
		t.Errorf("the scaled-away worker was not stopped gracefully by the new instance")
	}
	ta.stop(t)
	ta.showLogs(t)
}

// startUnknown starts a worker of group g on port through the agent's
// plugin, as golb's, but without a record in the store: a worker the
// plugin runs that golb does not know (its record lost).
func startUnknown(t *testing.T, ta *testAgent, g string, port int) string {
	t.Helper()
	c, _, err := ta.plugins.current("process")
	if err != nil {
		t.Fatal(err)
	}
	id := g + "-unknown" + strconv.Itoa(port%100)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Start(ctx, ta.specFor(&state.Worker{ID: id, Group: g, Driver: "process", Port: port})); err != nil {
		t.Fatalf("starting a worker unknown to golb: %v", err)
	}
	return id
}

// TestUnknownWorkersAreEachRemovedAfterAPluginRestart pins the cleanup of
// the workers a new plugin instance runs that golb has no record of: one
// 10 s ctx covered the List and every worker's Recover, Stop and Destroy in
// turn, errors discarded, so a Stop that hangs left the first worker, and
// every one after it, running unnoticed. Now each is removed on its own,
// with a stop's own deadlines. (The hangstop knob: Stop never returns.)
func TestUnknownWorkersAreEachRemovedAfterAPluginRestart(t *testing.T) {
	g := uniq("unknown")
	killProcs(t, g)
	port := freePorts(t, 10)
	ta := startTunedAgent(t, parseConfig(t, header(t.TempDir(), "")+hungStopGroup(g, 1, port)), quickStops, os.Args[0], "hangstop")
	ws := ta.waitWorkers(t, 60*time.Second, "1 running worker", func(ws []*state.Worker) bool { return len(running(ws, g)) == 1 })
	known := ws[0].ID
	unknown := []string{startUnknown(t, ta, g, port+7), startUnknown(t, ta, g, port+8)}
	waitProcs(t, 10*time.Second, "3 worker processes", func(ps map[int]string) bool { return len(ps) == 3 }, g)

	pid, _ := pluginPID(t, ta)
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitProcs(t, 40*time.Second, "the unknown workers gone", func(ps map[int]string) bool {
		v := values(ps)
		return len(ps) == 1 && v[known]
	}, g)
	t.Logf("2 workers unknown to golb, Stop hanging (stop_timeout 1 s, grace 1 s): both removed %v after the plugin's death", time.Since(start).Round(time.Millisecond))
	for _, id := range unknown { // logged once Destroy has returned
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(ta.logs.String(), `msg="worker unknown to golb removed" worker=`+id) {
			if time.Now().After(deadline) {
				t.Fatalf("worker %s not logged removed", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	ta.stop(t)
	ta.showLogs(t)
}

// TestUnknownWorkerThatCannotBeRemovedIsKeptLost pins the same cleanup
// when Destroy fails too: the worker was left running, unlogged and
// forgotten. Now it is kept as lost (golb status shows it, Destroy is
// retried), and shutdown names it. (The hangstopdestroyfails knob.)
func TestUnknownWorkerThatCannotBeRemovedIsKeptLost(t *testing.T) {
	g := uniq("unklost")
	killProcs(t, g)
	port := freePorts(t, 10)
	ta := startTunedAgent(t, parseConfig(t, header(t.TempDir(), "")+hungStopGroup(g, 1, port)), quickStops, os.Args[0], "hangstopdestroyfails")
	ta.waitWorkers(t, 60*time.Second, "1 running worker", func(ws []*state.Worker) bool { return len(running(ws, g)) == 1 })
	id := startUnknown(t, ta, g, port+7)
	pid, _ := pluginPID(t, ta)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ws := ta.waitWorkers(t, 40*time.Second, "the unknown worker kept lost", func(ws []*state.Worker) bool {
		for _, w := range inGroup(ws, g, state.StatusLost) {
			if w.ID == id {
				return true
			}
		}
		return false
	})
	for _, w := range ws {
		if w.ID == id && !strings.Contains(w.Reason, destroyRefused) {
			t.Errorf("lost reason %q, want Destroy's error", w.Reason)
		}
	}
	ta.cancel()
	select {
	case <-ta.done:
	case <-time.After(90 * time.Second):
		t.Fatal("Run did not return within 90s of cancel")
	}
	err := ta.runErr
	ta.runErr = nil // checked here, not by the cleanup's stop
	if !errors.Is(err, ErrWorkersLeft) || !strings.Contains(err.Error(), id) {
		t.Errorf("Run returned %v, want ErrWorkersLeft naming %s", err, id)
	}
	if logs := ta.logs.String(); !strings.Contains(logs, `msg="worker could not be stopped and may still run" worker=`+id) {
		t.Errorf("shutdown did not name the unknown worker:\n%s", logs)
	}
	ta.showLogs(t)
}

package core

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golb/golb/core/state"
)

// TestDrainRacingStartupIsNotADataRace pins an unsynchronised read: the
// admin API started before Run set the traffic and control lifetimes, and
// a drain request read a.trafficCtx while Run wrote it (go test -race
// reported it). Now Run sets them before the admin API starts. Drain
// requests hammer the admin address from before Run starts; the worker
// they name is in the state already, so that each request reaches the read.
func TestDrainRacingStartupIsNotADataRace(t *testing.T) {
	g := uniq("drainrace")
	killProcs(t, g)
	port, adminPort := freePorts(t, 10), freePorts(t, 1)
	addr := fmt.Sprintf("127.0.0.1:%d", adminPort)
	early := g + "-early000"
	var (
		mu    sync.Mutex
		codes = map[int]int{}
		wg    sync.WaitGroup
	)
	done := make(chan struct{})
	var stopOnce sync.Once
	stopHammers := func() { stopOnce.Do(func() { close(done) }); wg.Wait() }
	client := &http.Client{Timeout: 5 * time.Second}
	hammer := func() {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-done:
				return
			default:
			}
			resp, err := client.Post("http://"+addr+"/v1/workers/"+early+"/drain", "application/json", nil)
			if err != nil {
				time.Sleep(100 * time.Microsecond) // not listening yet
				continue
			}
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			accepted := codes[http.StatusAccepted] > 0
			mu.Unlock()
			if accepted {
				return
			}
		}
	}
	tune := func(a *Agent) {
		w := &state.Worker{ID: early, Group: g, Driver: "process", Port: port + 9, Status: state.StatusRunning, StartedAt: time.Now()}
		if err := a.Store().UpsertWorker(w); err != nil {
			t.Fatal(err)
		}
		for range 4 {
			wg.Go(hammer)
		}
	}
	ta := startTunedAgent(t, parseConfig(t, header(t.TempDir(), addr)+groupHCL(g, 1, port, "1ms")), tune)
	defer stopHammers()
	ta.waitWorkers(t, 30*time.Second, "the early worker drained", func(ws []*state.Worker) bool {
		for _, w := range ws {
			if w.ID == early {
				return false
			}
		}
		return true
	})
	stopHammers()
	t.Logf("drain requests answered during startup, by status: %v", codes)
	for code, n := range codes {
		if code != http.StatusAccepted && code != http.StatusConflict && code != http.StatusNotFound {
			t.Errorf("%d drain requests answered %d, want 202 (then 409 or 404 once it drains)", n, code)
		}
	}
	if codes[http.StatusAccepted] != 1 {
		t.Errorf("%d drain requests accepted, want 1", codes[http.StatusAccepted])
	}
}

// TestDrainDuringShutdownIsRefused pins goWork during shutdown: a drain
// requested while Run waited for the background work (a.wg.Wait) called
// a.wg.Add then, which can panic the WaitGroup or start a stop that Run no
// longer waits for. Now a drain requested once shutdown began is refused
// (409: shutdown stops every worker itself). A request in flight holds the
// shutdown in its drain of the balancers meanwhile.
func TestDrainDuringShutdownIsRefused(t *testing.T) {
	g := uniq("drainstop")
	killProcs(t, g)
	port, lb, adminPort := freePorts(t, 10), freePorts(t, 1), freePorts(t, 1)
	addr := fmt.Sprintf("127.0.0.1:%d", adminPort)
	src := header(t.TempDir(), addr) + groupHCL(g, 1, port, "2s") + balancerHCL("web", g, lb, 1, "round_robin")
	ta := startAgent(t, parseConfig(t, src))
	waitServing(t, ta, g, 1)
	id := running(allWorkers(ta), g)[0].ID
	var answered atomic.Int32
	go func() {
		if resp, err := httpc.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb)); err == nil {
			resp.Body.Close()
			answered.Store(int32(resp.StatusCode))
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for h := ta.health()[id]; h == nil || h.inflight == 0; h = ta.health()[id] {
		if time.Now().After(deadline) {
			t.Fatal("the request never got in flight")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ta.cancel()
	for !strings.Contains(ta.logs.String(), "shutting down") {
		time.Sleep(time.Millisecond)
	}
	code, body := post(t, "http://"+addr+"/v1/workers/"+id+"/drain", "")
	t.Logf("drain requested during shutdown: %d %v", code, body)
	if code != http.StatusConflict || !strings.Contains(fmt.Sprint(body), "shutting down") {
		t.Errorf("drain during shutdown answered %d %v, want 409 saying golb is shutting down", code, body)
	}
	ta.stop(t)
	if strings.Contains(ta.logs.String(), "draining worker on request") {
		t.Errorf("a drain was started during shutdown")
	}
	if answered.Load() != http.StatusOK {
		t.Errorf("the request in flight at shutdown was answered %d, want 200", answered.Load())
	}
}

// TestWorkAddedWhileShutdownWaitsIsWaitedFor pins the WaitGroup misuse at
// shutdown: work added (goWork's Add) while Run sat in Wait, from a count
// of zero, is a misuse of a sync.WaitGroup (it may panic, and go test -race
// reports it), and work added while the count was not zero could still
// start after Wait had returned. The agent's workGroup waits for work added
// while it waits, and may be waited on again; refused, it takes no more.
func TestWorkAddedWhileShutdownWaitsIsWaitedFor(t *testing.T) {
	var g workGroup
	g.Add(1)
	waited := make(chan struct{})
	go func() { g.Wait(); close(waited) }()
	g.Add(1) // started while Run waits
	g.Done()
	select {
	case <-waited:
		t.Fatal("Wait returned with work left")
	case <-time.After(50 * time.Millisecond):
	}
	g.Done()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return once the work was done")
	}
	// Work from a count of zero, racing Wait, again and again.
	for range 2000 {
		var g workGroup
		var starters sync.WaitGroup
		var ran atomic.Int32
		for range 2 {
			starters.Go(func() { g.Go(func() { ran.Add(1) }) })
		}
		g.Wait()
		starters.Wait()
		g.Wait()
		if ran.Load() != 2 {
			t.Fatalf("the last Wait returned before the work ran (%d of 2)", ran.Load())
		}
	}
	g.refuse()
	if g.tryAdd() {
		t.Error("tryAdd counted work after refuse")
	}
	g.Add(1) // goWork still counts, and is still waited for
	go g.Done()
	g.Wait()
}

package core

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golb/golb/core/state"
)

// TestRunScalesAndStopsClean runs an agent in this process with real plugin
// and worker subprocesses: the workers reach running and serve through the
// balancer, Scale up and down is reconciled (newest stopped first), and
// cancelling Run returns nil with no worker process left.
func TestRunScalesAndStopsClean(t *testing.T) {
	g := uniq("run")
	killProcs(t, g)
	port, lb := freePorts(t, 10), freePorts(t, 1)
	src := header(t.TempDir(), "") + groupHCL(g, 2, port, "1ms") + fmt.Sprintf(`
balancer "web" {
  group = %q
  port  = %d
  drain_timeout = "2s"
}
`, g, lb)
	ta := startAgent(t, parseConfig(t, src))

	ws := ta.waitWorkers(t, 60*time.Second, "2 running workers", func(ws []*state.Worker) bool {
		return len(inGroup(ws, g, state.StatusRunning)) == 2 && len(ws) == 2
	})
	first := ids(ws)
	for _, w := range ws {
		if w.Address == "" || w.Handle == nil || w.Port < port || w.Port >= port+10 || w.Adopted || w.Driver != "process" {
			t.Fatalf("running worker: %+v", w)
		}
	}
	procs := waitProcs(t, 10*time.Second, "2 worker processes", func(ps map[int]string) bool { return len(ps) == 2 }, g)
	if got := values(procs); len(got) != 2 || !got[ws[0].ID] || !got[ws[1].ID] {
		t.Fatalf("processes %v do not match the store %s", procs, describe(ws))
	}

	// The balancer was fed the workers: a request through it reaches one.
	var body struct{ Message string }
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb))
		if err == nil {
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && json.Unmarshal(raw, &body) == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 200 through the balancer within 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	served := strings.TrimPrefix(body.Message, "hello from container: ")
	if !first[served] {
		t.Fatalf("balancer answer %q is not from a worker of the group %v", body.Message, first)
	}

	if err := ta.Scale(g, 4); err != nil {
		t.Fatal(err)
	}
	ws = ta.waitWorkers(t, 60*time.Second, "4 running workers", func(ws []*state.Worker) bool {
		return len(inGroup(ws, g, state.StatusRunning)) == 4 && len(ws) == 4
	})
	for id := range first {
		if !ids(ws)[id] {
			t.Fatalf("scaling up replaced worker %s: %s", id, describe(ws))
		}
	}
	ports := map[int]bool{}
	for _, w := range ws {
		if ports[w.Port] {
			t.Fatalf("two workers on port %d: %s", w.Port, describe(ws))
		}
		ports[w.Port] = true
	}
	waitProcs(t, 10*time.Second, "4 worker processes", func(ps map[int]string) bool { return len(ps) == 4 }, g)

	if err := ta.Scale(g, 1); err != nil {
		t.Fatal(err)
	}
	ws = ta.waitWorkers(t, 60*time.Second, "1 worker left", func(ws []*state.Worker) bool { return len(ws) == 1 })
	if ws[0].Status != state.StatusRunning || !first[ws[0].ID] {
		t.Fatalf("scale down kept %s, want one of the oldest %v", describe(ws), first)
	}
	procs = waitProcs(t, 20*time.Second, "3 worker processes to exit", func(ps map[int]string) bool { return len(ps) == 1 }, g)
	if !values(procs)[ws[0].ID] {
		t.Fatalf("the process left is %v, want %s", procs, ws[0].ID)
	}

	ta.stop(t)
	if left, _ := ta.Store().Workers(nil); len(left) != 0 {
		t.Errorf("workers still in the store after Run: %s", describe(left))
	}
	if left := workerProcs(g); len(left) != 0 {
		t.Fatalf("worker processes left after Run returned: %v", left)
	}
}

// TestScaleDownWhileStartingLeaksNoWorker: a worker stopped by a scale-down
// while its Start was still in flight was started anyway and never stopped
// (startWorker ignored that its store record was gone or draining), leaving
// a process that golb no longer knew, even after shutdown.
func TestScaleDownWhileStartingLeaksNoWorker(t *testing.T) {
	g := uniq("flap")
	killProcs(t, g)
	src := header(t.TempDir(), "") + groupHCL(g, 0, freePorts(t, 10), "1ms")
	ta := startAgent(t, parseConfig(t, src))
	for round := 1; round <= 3; round++ {
		if err := ta.Scale(g, 3); err != nil {
			t.Fatal(err)
		}
		// The moment the reconciler has recorded the 3 pending workers (their
		// Start RPCs now in flight), take them back.
		ta.waitWorkers(t, 30*time.Second, fmt.Sprintf("round %d: 3 workers recorded", round), func(ws []*state.Worker) bool { return len(ws) >= 3 })
		if err := ta.Scale(g, 0); err != nil {
			t.Fatal(err)
		}
		ta.waitWorkers(t, 60*time.Second, fmt.Sprintf("round %d: no worker in the store", round), func(ws []*state.Worker) bool { return len(ws) == 0 })
	}
	waitProcs(t, 10*time.Second, "no worker process with none in the store", func(ps map[int]string) bool { return len(ps) == 0 }, g)
	ta.stop(t)
	if left := workerProcs(g); len(left) != 0 {
		t.Fatalf("worker processes left after Run returned: %v", left)
	}
}

// TestShutdownWhileStartingLeaksNoWorker: cancelling Run while workers were
// starting cancelled their Start RPCs, but the driver started them anyway;
// startWorker forgot them on the error and shutdown left them running.
func TestShutdownWhileStartingLeaksNoWorker(t *testing.T) {
	for round := 1; round <= 2; round++ {
		g := uniq("quit")
		killProcs(t, g)
		src := header(t.TempDir(), "") + groupHCL(g, 0, freePorts(t, 10), "1ms")
		ta := startAgent(t, parseConfig(t, src))
		if err := ta.Scale(g, 6); err != nil {
			t.Fatal(err)
		}
		ta.waitWorkers(t, 30*time.Second, fmt.Sprintf("round %d: 6 workers recorded", round), func(ws []*state.Worker) bool { return len(ws) >= 6 })
		ta.stop(t)
		// A Start the plugin finished after Run returned would show up now.
		time.Sleep(300 * time.Millisecond)
		if left := workerProcs(g); len(left) != 0 {
			t.Fatalf("round %d: worker processes left after Run returned: %v", round, left)
		}
	}
}

// flakyGroup is a config whose group's first `crashes` workers exit at once
// (exit 3), and the next ones run the built-in worker. Each start appends

// TestResponseTimeoutReachesBalancer: the balancer block's response_timeout
// bounds the wait for a slow worker: 504, about then, not after the worker's
// delay.
func TestResponseTimeoutReachesBalancer(t *testing.T) {
	g := uniq("slow")
	killProcs(t, g)
	port, lb := freePorts(t, 10), freePorts(t, 1)
	src := header(t.TempDir(), "") + groupHCL(g, 1, port, "6s") + fmt.Sprintf(`
balancer "web" {
  group = %q
  port  = %d
  response_timeout = "300ms"
  drain_timeout = "0s"
}
`, g, lb)
	ta := startAgent(t, parseConfig(t, src))
	ta.waitWorkers(t, 60*time.Second, "1 running worker", func(ws []*state.Worker) bool {
		return len(inGroup(ws, g, state.StatusRunning)) == 1
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb)
	deadline := time.Now().Add(30 * time.Second)
	for {
		start := time.Now()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		took := time.Since(start)
		if resp.StatusCode == http.StatusGatewayTimeout {
			t.Logf("504 after %v", took.Round(time.Millisecond))
			if took >= 3*time.Second {
				t.Fatalf("504 after %v: the worker's 3-9 s delay, not response_timeout", took)
			}
			return
		}
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("status %d after %v, want 504 (503 only until the worker is healthy)", resp.StatusCode, took)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

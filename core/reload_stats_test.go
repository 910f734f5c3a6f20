package core

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golb/golb/balancer"
	"github.com/golb/golb/core/stats"
)

// slowBalancerHCL is a balancer whose drain outlasts the slowest answer of a
// worker with avg_delay 4s (6 s at most).
func slowBalancerHCL(name, group string, port int) string {
	return fmt.Sprintf(`
balancer %q {
  group  = %q
  port   = %d
  policy = "round_robin"
  drain_timeout = "30s"
}
`, name, group, port)
}

// groupRequests is what the aggregator has counted for group's workers.
func groupRequests(ta *testAgent, group string) (total, success uint64) {
	for _, t := range ta.agg.Snapshot() {
		if len(t.WorkerID) > len(group) && t.WorkerID[:len(group)+1] == group+"-" {
			total += t.Total()
			success += t.Success
		}
	}
	return total, success
}

// storedRequests reads what the stats file in dir holds for group's workers,
// once the agent has stopped.
func storedRequests(t *testing.T, dir, group string) uint64 {
	t.Helper()
	s, err := stats.OpenSQLite(filepath.Join(dir, "stats.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, x := range ts {
		if len(x.WorkerID) > len(group) && x.WorkerID[:len(group)+1] == group+"-" {
			n += x.Total()
		}
	}
	return n
}

// getAll sends n GETs to url at once and returns their status codes.
func getAll(url string, n int) <-chan int {
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, err := httpc.Get(url)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	go func() { wg.Wait(); close(codes) }()
	return codes
}

func expectOK(t *testing.T, codes <-chan int, what string) {
	t.Helper()
	for c := range codes {
		if c != http.StatusOK {
			t.Fatalf("%s: a request answered %d, want 200", what, c)
		}
	}
}

func balancerNamed(ta *testAgent, name string) *balancer.Balancer {
	for _, b := range ta.allBalancers() {
		if b.Name() == name {
			return b
		}
	}
	return nil
}

// TestReaddedBalancerStillDrainingLosesNoCounts pins the bug where a reload
// adding balancer "web" back while the one an earlier reload removed still
// drained folded the old one's counts at that instant and dropped its source:
// the requests it finished afterwards were counted where nobody read them
// (true count 15, stats 10).
func TestReaddedBalancerStillDrainingLosesNoCounts(t *testing.T) {
	g := uniq("rd")
	killProcs(t, g)
	dir := t.TempDir()
	port, lb := reloadPorts(t, 2), reloadPorts(t, 1)
	group := reloadConfig(dir, g, 1, port, "4s", "", "")
	withWeb := group + slowBalancerHCL("web", g, lb)
	f := newReloadFile(t, withWeb)
	ta := startAgent(t, f.load())
	waitServing(t, ta, g, 1)
	url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb)

	expectOK(t, getAll(url, 10), "before the reloads")
	old := balancerNamed(ta, "web")
	inflight := getAll(url, 5) // answered in 2 to 6 s: after both reloads
	deadline := time.Now().Add(10 * time.Second)
	for old.InFlight() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests in flight in web after 10s, want 5", old.InFlight())
		}
		time.Sleep(5 * time.Millisecond)
	}
	ta.reload(t, f, group)   // web removed: it drains its 5 requests
	ta.reload(t, f, withWeb) // web added back while the old one drains
	if old.InFlight() == 0 {
		t.Fatal("the old web finished its requests before the second reload: the test proves nothing")
	}
	expectOK(t, inflight, "in flight across the reloads")

	// The old web's source is folded once its Shutdown returns.
	waitFor := time.Now().Add(30 * time.Second)
	for {
		if n, _ := groupRequests(ta, g); n == 15 {
			break
		} else if time.Now().After(waitFor) {
			t.Fatalf("stats count %d requests, want 15", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the removed web is closed by now: still 15
	if n, _ := groupRequests(ta, g); n != 15 {
		t.Fatalf("stats count %d requests after the old web closed, want 15", n)
	}
	ta.stop(t)
	if n := storedRequests(t, dir, g); n != 15 {
		t.Fatalf("the stats file holds %d requests, want 15", n)
	}
}

// TestUndoneReloadKeepsTheCountsOfTheBalancerItStarted pins the bug where a
// balancer started by a reload that was then undone (a later balancer could
// not bind) was never a stats source: the requests it proxied in between were
// counted nowhere.
func TestUndoneReloadKeepsTheCountsOfTheBalancerItStarted(t *testing.T) {
	g := uniq("ru")
	killProcs(t, g)
	dir := t.TempDir()
	port, lb, le, lbad := reloadPorts(t, 2), reloadPorts(t, 1), reloadPorts(t, 1), reloadPorts(t, 1)
	base := reloadConfig(dir, g, 1, port, "1ms", "", balancerHCL("web", g, lb, 1, "round_robin"))
	f := newReloadFile(t, base)
	ta := startAgent(t, f.load())
	waitServing(t, ta, g, 1)

	const proxied = 3
	var hookErr error
	var taken net.Listener
	testHookBalancerStarted = func(b *balancer.Balancer) {
		if b.Name() != "extra" {
			return
		}
		// extra serves: send it requests, then take the port of the balancer
		// started next, so that the reload fails and is undone.
		url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", le)
		ok := 0
		for deadline := time.Now().Add(30 * time.Second); ok < proxied && time.Now().Before(deadline); {
			if resp, err := httpc.Get(url); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok++
					continue
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		if ok < proxied {
			hookErr = fmt.Errorf("extra answered %d requests with 200 in 30s, want %d", ok, proxied)
			return
		}
		taken, hookErr = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", lbad))
	}
	t.Cleanup(func() { testHookBalancerStarted = nil })

	f.write(base + balancerHCL("extra", g, le, 1, "round_robin") + balancerHCL("bad", g, lbad, 1, "round_robin"))
	_, err := ta.Reload(context.Background())
	if taken != nil {
		defer taken.Close()
	}
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	if _, ok := errorsAsReload(err); !ok || !errors.Is(err, ErrReloadRefused) {
		t.Fatalf("Reload: %v, want refused (bad cannot bind)", err)
	}
	t.Logf("Reload: %v", err)
	if balancerNamed(ta, "extra") != nil {
		t.Fatal("the undone reload left balancer extra running")
	}
	if n, ok := groupRequests(ta, g); n != proxied || ok != proxied {
		t.Fatalf("stats count %d requests (%d ok) after the undone reload, want %d", n, ok, proxied)
	}
	ta.stop(t)
	if n := storedRequests(t, dir, g); n != proxied {
		t.Fatalf("the stats file holds %d requests, want %d", n, proxied)
	}
}

package core

// Regression tests for bugs found while writing the core tests. Each one
// fails on the code as it was and names the bug it pins.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golb/golb/core/state"
)

// its time (ns) to the returned file.
func flakyGroup(t *testing.T, dir, group string, crashes int) (src, starts string) {
	t.Helper()
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	starts = filepath.Join(dir, "starts")
	script := filepath.Join(dir, "flaky.sh")
	err = os.WriteFile(script, []byte(fmt.Sprintf(`#!/bin/sh
date +%%s%%N >> %[1]q
n=$(wc -l < %[1]q)
if [ $n -le %[2]d ]; then echo "crash $n" >&2; exit 3; fi
exec %[3]q worker
`, starts, crashes, self)), 0o755)
	if err != nil {
		t.Fatal(err)
	}
	return header(dir, "") + fmt.Sprintf(`
group %q {
  port = %d
  config {
    command = [%q]
  }
}
`, group, freePorts(t, 10), script), starts
}

// startTimes reads the start times a flaky group's script wrote.
func startTimes(t *testing.T, path string) []time.Time {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Time
	for _, l := range strings.Fields(string(raw)) {
		ns, err := strconv.ParseInt(l, 10, 64)
		if err != nil {
			t.Fatalf("start time %q: %v", l, err)
		}
		out = append(out, time.Unix(0, ns))
	}
	return out
}

// waitRecovered waits until a flaky group's worker that does not crash runs.
func waitRecovered(t *testing.T, ta *testAgent, group, starts string) {
	t.Helper()
	start := time.Now()
	for {
		ws, _ := ta.Store().WorkersByGroup(nil, group)
		raw, _ := os.ReadFile(starts)
		if n := strings.Count(string(raw), "\n"); n > failingAfter && len(ws) == 1 && ws[0].Status == state.StatusRunning {
			t.Logf("a worker running after %d crashes, %v", n-1, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("no worker running after the crash loop within 60s: %s, %d starts", describe(ws), strings.Count(string(raw), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCrashBackoffHonoured: the backoff recordCrash set was skipped for every
// other crash, since workerExited marked the worker failed (waking the
// reconciler, which saw the previous, expired backoff) before it recorded
// the crash; a crash-looping group restarted twice as often as intended.
func TestCrashBackoffHonoured(t *testing.T) {
	t.Parallel() // mostly waits out backoffs
	g := uniq("back")
	killProcs(t, g)
	dir := t.TempDir()
	src, starts := flakyGroup(t, dir, g, failingAfter)
	ta := startAgent(t, parseConfig(t, src))
	waitRecovered(t, ta, g, starts)
	ts := startTimes(t, starts)
	if len(ts) != failingAfter+1 {
		t.Fatalf("%d starts, want %d", len(ts), failingAfter+1)
	}
	// Start k+1 follows crash k: immediately after the first, then 250ms,
	// 500ms, 1s, 2s. Lower bounds only (less 20ms for the clocks involved);
	// a busy machine may take longer.
	for k := 2; k <= failingAfter; k++ {
		want := baseBackoff << (k - 2)
		gap := ts[k].Sub(ts[k-1])
		t.Logf("start %d came %v after start %d (backoff %v)", k+1, gap.Round(time.Millisecond), k, want)
		if gap < want-20*time.Millisecond {
			t.Errorf("start %d came %v after start %d, want at least the backoff %v", k+1, gap, k, want)
		}
	}
}

// TestFailingClearedAfterRecovery: a group stayed failing, with its last
// crash as the reason, for as long as golb ran once its workers had
// recovered from a crash loop: only a crash ever wrote Group.Failing.
func TestFailingClearedAfterRecovery(t *testing.T) {
	t.Parallel() // mostly waits out backoffs
	g := uniq("loop")
	killProcs(t, g)
	src, starts := flakyGroup(t, t.TempDir(), g, failingAfter)
	ta := startAgent(t, parseConfig(t, src))

	ta.waitGroup(t, g, 30*time.Second, "the group failing", func(gr *state.Group) bool { return gr.Failing && gr.Reason != "" })
	waitRecovered(t, ta, g, starts)
	// It has recovered once a worker has lived minUptime, as a crash after
	// that long starts a new streak.
	ta.waitGroup(t, g, minUptime+15*time.Second, "the group no longer failing", func(gr *state.Group) bool { return !gr.Failing && gr.Reason == "" })
}

// TestReconcileReadsBackoffUnderLock: reconcileGroup read crashLoop.notTill
// after releasing a.mu while recordCrash wrote it, a data race (go test
// -race). It also pins that a pass during a backoff waits for its end.
func TestReconcileReadsBackoffUnderLock(t *testing.T) {
	ta := crashAgent(t)
	g := &state.Group{Name: "g", Driver: "process", Desired: 1, Max: 1000}
	ta.recordCrash("g", 0, "one")
	ta.recordCrash("g", 0, "two") // a 250ms backoff
	ta.mu.Lock()
	notTill := ta.crashes["g"].notTill
	ta.mu.Unlock()
	if next := ta.reconcileGroup(context.Background(), g, nil); !next.Equal(notTill) {
		t.Fatalf("during a backoff reconcileGroup returned %v, want its end %v", next, notTill)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			ta.recordCrash("g", 0, "boom")
		}
	}()
	for range 200 {
		ta.reconcileGroup(context.Background(), g, nil)
	}
	<-done
}

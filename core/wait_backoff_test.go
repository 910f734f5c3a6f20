package core

import (
	"context"
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

// waitErr is the process driver with a Wait that fails at once, with one
// message for its first 2 calls and another after.
type waitErr struct {
	*process.Driver
	calls atomic.Int32
}

func (d *waitErr) Wait(context.Context, string) (drivers.ExitResult, error) {
	phase := 1
	if d.calls.Add(1) > 2 {
		phase = 2
	}
	return drivers.ExitResult{}, fmt.Errorf("waiterr: wait broken, phase %d (test)", phase)
}

// TestFailingWaitBacksOff: a Wait that kept failing was asked again every
// second, each time with a WARN, per worker, forever. Now it is asked again
// after 1 s, then 2 s, 4 s … up to 30 s, with a WARN when it starts failing
// and when its error changes, DEBUG otherwise.
func TestFailingWaitBacksOff(t *testing.T) {
	g := uniq("wb")
	killProcs(t, g)
	src := header(t.TempDir(), "") + groupHCL(g, 1, freePorts(t, 10), "1ms")
	ta := startAgent(t, parseConfig(t, src), os.Args[0], "waiterr")
	ta.waitWorkers(t, 60*time.Second, "the worker running", func(ws []*state.Worker) bool { return len(running(ws, g)) == 1 })
	start := time.Now()
	// Waits at 0, 1 s (the same error) and 3 s (a new one); the 4th comes at 7 s.
	warns := func() int {
		n := 0
		for _, l := range strings.Split(ta.logs.String(), "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, `msg="waiting on worker`) {
				n++
			}
		}
		return n
	}
	for warns() < 2 && time.Since(start) < 30*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond)
	logs := ta.logs.String()
	w, d := warns(), strings.Count(logs, "waiting on worker failed again the same way")
	t.Logf("in %v of failing Waits: %d WARN, %d DEBUG (retry_in 1s: %v, 2s: %v, 4s: %v)", time.Since(start).Round(100*time.Millisecond), w, d,
		strings.Contains(logs, "retry_in=1s"), strings.Contains(logs, "retry_in=2s"), strings.Contains(logs, "retry_in=4s"))
	if w != 2 || d != 1 {
		t.Errorf("%d WARN and %d DEBUG lines for 3 failed Waits, want 2 (the first, the changed one) and 1", w, d)
	}
	if !strings.Contains(logs, "retry_in=4s") {
		t.Errorf("the third failed Wait is not retried after 4s")
	}
}

package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golb/golb/core/state"
	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/process"
)

// forgetfulWait is the process driver whose first Wait does not know the
// worker (as a new instance that came up while its Start finished) and
// whose first two Recovers fail in transit, as a sick plugin's would.
type forgetfulWait struct {
	*process.Driver
	waits, recovers atomic.Int32
}

func (d *forgetfulWait) Wait(ctx context.Context, id string) (drivers.ExitResult, error) {
	if d.waits.Add(1) == 1 {
		return drivers.ExitResult{}, fmt.Errorf("forgetfulwait: no worker %s (test): %w", id, drivers.ErrNotFound)
	}
	return d.Driver.Wait(ctx, id)
}

func (d *forgetfulWait) Recover(ctx context.Context, h *drivers.Handle) error {
	if d.recovers.Add(1) <= 2 {
		return errors.New("forgetfulwait: runtime busy (test)")
	}
	return d.Driver.Recover(ctx, h)
}

// TestSupervisorKeepsAWorkerWhoseRecoverFails pins a healthy worker
// destroyed: when a plugin's Wait did not know a worker, the supervisor
// tried one Recover, and any failure of it (a timeout, a plugin busy or
// killed meanwhile) marked the worker lost, which pulled it from the pools
// and destroyed it. Only a definite answer (no such worker, a stale
// handle) loses it now; a failed Recover is asked again with backoff.
func TestSupervisorKeepsAWorkerWhoseRecoverFails(t *testing.T) {
	g := uniq("sr")
	killProcs(t, g)
	src := header(t.TempDir(), "") + groupHCL(g, 1, freePorts(t, 10), "1ms")
	ta := startAgent(t, parseConfig(t, src), os.Args[0], "forgetfulwait")
	ws := ta.waitWorkers(t, 60*time.Second, "the worker running", func(ws []*state.Worker) bool { return len(running(ws, g)) == 1 })
	first := running(ws, g)[0].ID
	// Recover fails after 0 s and 1 s, works after 3 s.
	time.Sleep(5 * time.Second)
	ws, _ = ta.Store().Workers(nil)
	live := running(ws, g)
	t.Logf("5 s later: %s", describe(ws))
	if len(live) != 1 || live[0].ID != first {
		t.Errorf("worker %s was not kept through two failed Recovers: now %s", first, describe(ws))
	}
	for _, w := range ws {
		if w.Status == state.StatusLost {
			t.Errorf("worker %s marked lost: %s", w.ID, w.Reason)
		}
	}
}

package drivertest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/proc"
)

// leftoverGrace is how long the suite gives what a returned Destroy or
// failed Start left to disappear (a SIGKILLed process still exiting, a
// namespace being torn down) before it calls it leaked. A leak is for good.
const leftoverGrace = 2 * time.Second

// noLeftovers fails when Harness.Leftovers finds anything of worker id.
func (s *suite) noLeftovers(id, when string) {
	s.t.Helper()
	if s.h.Leftovers == nil {
		return
	}
	deadline := time.Now().Add(leftoverGrace)
	for {
		left := s.h.Leftovers(s.t, id)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s, worker %s left behind what the driver no longer lists:\n  %s", when, id, strings.Join(left, "\n  "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// MarkedProcesses is a Harness.Leftovers for drivers whose workers are
// processes of this machine (children, sandboxes, containers whose
// processes this user may read): the running processes that have
// GOLB_WORKER_ID=id in their environment, which golb gives every worker and
// which its children inherit.
func MarkedProcesses(t *testing.T, id string) []string {
	t.Helper()
	ps, err := proc.FindMarked(0, "GOLB_WORKER_ID="+id)
	if err != nil {
		t.Fatalf("looking for processes of worker %s: %v", id, err)
	}
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, fmt.Sprintf("pid %d (%s)", p.PID, cmdline(p.PID)))
	}
	return out
}

// testWrapper: a worker run through a wrapper whose child outlives it. Stop
// ends the whole worker, child included (which ignores SIGTERM: SIGKILL
// after the timeout, unless the driver ends the rest with the wrapper); a
// wrapper that exits by itself does not leave its child serving on the
// worker's port either, so that a crash-looping wrapper cannot pile up
// orphans holding it.
func testWrapper(s *suite) {
	if s.h.Wrapper == nil {
		s.t.Skip("harness has no wrapper worker")
	}
	d := s.launch()

	spec := s.spec("wrapped", s.h.Wrapper)
	h := s.start(d, spec)
	s.waitServing(d, h)
	begin := time.Now()
	s.stop(d, spec.ID, time.Second)
	s.t.Logf("stop of a wrapper whose child ignores SIGTERM, with a 1s timeout, took %v", time.Since(begin))
	if httpOK("http://" + h.Address + "/healthz") {
		s.t.Fatal("the wrapper's child still serves after Stop returned")
	}
	if err := portFree(spec.Port); err != nil {
		s.t.Fatalf("port %d still taken after Stop returned: %v", spec.Port, err)
	}
	if st, err := d.Inspect(s.ctx(), spec.ID); err != nil || st.State != drivers.StateExited {
		s.t.Fatalf("Inspect after Stop: %+v, %v; want exited", st, err)
	}
	if err := d.Destroy(s.ctx(), spec.ID); err != nil {
		s.t.Fatalf("Destroy: %v", err)
	}
	s.noLeftovers(spec.ID, "after Stop and Destroy")

	spec = s.spec("wrapper-exits", s.h.Wrapper)
	spec.Env["GOLB_TEST_WRAPPER_EXIT"] = "2"
	h = s.start(d, spec)
	s.waitServing(d, h)
	ctx, cancel := context.WithTimeout(s.ctx(), s.h.StartTimeout+10*time.Second)
	defer cancel()
	res, err := d.Wait(ctx, spec.ID)
	if err != nil {
		s.t.Fatalf("Wait on a wrapper that exits: %v", err)
	}
	s.t.Logf("wrapper's exit: %v", res)
	if res.ExitCode != 3 {
		s.t.Errorf("Wait = %+v, want the wrapper's exit code 3", res)
	}
	deadline := time.Now().Add(leftoverGrace)
	for httpOK("http://"+h.Address+"/healthz") || portFree(spec.Port) != nil {
		if time.Now().After(deadline) {
			s.t.Fatalf("the wrapper exited, and its child still holds port %d %v after Wait returned: "+
				"once the main process has exited, end the rest of the worker", spec.Port, leftoverGrace)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.noLeftovers(spec.ID, "after the wrapper exited")
	if err := d.Destroy(s.ctx(), spec.ID); err != nil {
		s.t.Fatalf("Destroy: %v", err)
	}
	s.noLeftovers(spec.ID, "after Destroy")
}

// cmdline is process pid's command line, cut to 120 bytes, for a message.
func cmdline(pid int) string {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return "?"
	}
	line := strings.TrimSpace(strings.ReplaceAll(string(raw), "\x00", " "))
	if len(line) > 120 {
		line = line[:120] + "…"
	}
	return line
}

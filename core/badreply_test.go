package core

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golb/golb/core/state"
)

// TestStartReplyWithEmptyAddressFailsTheGroup pins issue 14's first bug: a
// plugin whose Start replied with an empty address got its worker recorded
// running at address "", unhealthy forever, with no note and no WARN (and a
// reply with no handle at all panicked core). Now the SDK client refuses the
// reply, the start counts as failed with the crash-loop backoff, the worker
// the plugin did start is destroyed, the error is logged once, and the
// group's NOTE names the bad reply. (The test binary's noaddress knob.)
func TestStartReplyWithEmptyAddressFailsTheGroup(t *testing.T) {
	g := uniq("noaddr")
	killProcs(t, g)
	dir := t.TempDir()
	port := freePorts(t, 10)
	ta := startAgent(t, parseConfig(t, header(dir, "")+groupHCL(g, 2, port, "1ms")), os.Args[0], "noaddress")
	const want = "crash-looping: driver process: Start reply: empty worker address"
	ta.waitGroup(t, g, 60*time.Second, "the group failing on the bad reply", func(gr *state.Group) bool {
		return gr.Failing && gr.Reason == want
	})
	if note := ta.note(g); note != want {
		t.Errorf("golb status NOTE = %q, want %q", note, want)
	}
	ws, err := ta.Store().Workers(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range inGroup(ws, g, "") {
		if w.Status == state.StatusRunning || w.Address != "" || w.Handle != nil {
			t.Errorf("worker %s recorded from a bad reply: %s %q", w.ID, w.Status, w.Address)
		}
	}
	// Every worker the plugin started was destroyed: none runs unknown.
	waitProcs(t, 10*time.Second, "no worker process left", func(ps map[int]string) bool { return len(ps) == 0 }, g)
	logs := ta.logs.String()
	if n := strings.Count(logs, "driver plugin sent a bad reply"); n != 1 {
		t.Errorf("the bad reply was logged %d times at ERROR, want once", n)
	}
	if strings.Contains(logs, "worker started") || strings.Contains(logs, "panic") {
		t.Errorf("a bad reply was taken for a start, or panicked:\n%s", logs)
	}
}

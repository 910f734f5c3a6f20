package core

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/golb/golb/core/state"
)

// TestSpecCarriesPortBindAddrAndWorkerCommand pins two of issue 14's SDK
// bugs: core filled only GOLB_WORKER_ID and the app settings in
// WorkerSpec.Env (each driver added PORT and BIND_ADDR itself, though the
// SDK said core did), and no plugin was told how to run the built-in worker,
// so an external driver could not run it. Through a plugin that refuses a
// spec without them (the strictspec knob), a group on the built-in worker
// and one with its own command both start.
func TestSpecCarriesPortBindAddrAndWorkerCommand(t *testing.T) {
	builtin, own := uniq("spec"), uniq("specown")
	killProcs(t, builtin, own)
	dir := t.TempDir()
	// The own command is the built-in worker too, run by path: it serves
	// the same, but the group gives it (config.command).
	src := header(dir, "") + groupHCL(builtin, 1, freePorts(t, 10), "1ms") + fmt.Sprintf(`
group %q {
  port = %d
  config {
    command = [%q, "worker"]
  }
}
`, own, freePorts(t, 10), os.Args[0])
	ta := startAgent(t, parseConfig(t, src), os.Args[0], "strictspec")
	ta.waitWorkers(t, 60*time.Second, "a worker running in each group", func(ws []*state.Worker) bool {
		return len(inGroup(ws, builtin, state.StatusRunning)) == 1 && len(inGroup(ws, own, state.StatusRunning)) == 1
	})
	ws, _ := ta.Store().Workers(nil)
	w := inGroup(ws, builtin, state.StatusRunning)[0]
	spec := ta.specFor(w)
	if want := []string{os.Args[0], "worker"}; fmt.Sprint(spec.WorkerCommand) != fmt.Sprint(want) {
		t.Errorf("WorkerCommand %q, want %q", spec.WorkerCommand, want)
	}
	for _, g := range []string{builtin, own} {
		for _, v := range ta.GroupViews() {
			if v.Name == g && v.Failing {
				t.Errorf("group %s failing: %s", g, v.Reason)
			}
		}
	}
}

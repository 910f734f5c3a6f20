package core

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golb/golb/core/state"
)

// killOne SIGKILLs one of the processes in ps and returns its worker id.
func killOne(t *testing.T, ps map[int]string) string {
	t.Helper()
	for pid, id := range ps {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		return id
	}
	t.Fatal("no process to kill")
	return ""
}

// live is the group's workers that count toward its desired count.
func liveIn(ws []*state.Worker, group string) []*state.Worker {
	var out []*state.Worker
	for _, w := range ws {
		if w.Group == group && w.Status.Live() {
			out = append(out, w)
		}
	}
	return out
}

// TestOldWorkerDyingMidRolloverDoesNotStopIt: an OLD worker that died
// while its group rolled over was counted as a crash of the group (streak
// 1, however long it had run), which checkRollout read as "a replacement
// failed": the rollover stopped, its replacement was stopped, and the
// group stayed a worker short until its settings changed again. Now an
// outdated worker's death is no crash: the rollover goes on, the dead one
// is made up, and the group ends with its count, all of the new settings.
func TestOldWorkerDyingMidRolloverDoesNotStopIt(t *testing.T) {
	x := newRolloutFixture(t, "rk", 2, "1", "60s")
	ta, g := x.ta, x.g
	old := workerProcs(g)
	ta.reload(t, x.f, x.config("2ms", ""))
	dead := killOne(t, old)
	start := time.Now()
	ws := ta.waitWorkers(t, 60*time.Second, "the rollover done: 2 workers, all new", func(ws []*state.Worker) bool {
		live := liveIn(ws, g)
		if len(live) != 2 || len(ws) != 2 {
			return false
		}
		for _, w := range live {
			if w.Status != state.StatusRunning || w.Outdated || pidOfWorker(old, w.ID) != 0 {
				return false
			}
		}
		return true
	})
	waitServing(t, ta, g, 2)
	sg := ta.group(t, g)
	t.Logf("old worker %s killed; rollover done %v later: %s, RolloutStopped=%q", dead, time.Since(start).Round(time.Millisecond), describe(ws), sg.RolloutStopped)
	if sg.RolloutStopped != "" {
		t.Errorf("the rollover stopped: %s", sg.RolloutStopped)
	}
	if strings.Contains(ta.logs.String(), "rollout stopped") {
		t.Errorf("an old worker's death was logged as a stopped rollout")
	}
}

// pidOfWorker is the pid of worker id in ps, or 0.
func pidOfWorker(ps map[int]string, id string) int {
	for pid, wid := range ps {
		if wid == id {
			return pid
		}
	}
	return 0
}

// TestStoppedRolloverMakesUpDeadOldWorkers: once a rollover had stopped,
// boundRollout held the group's desired count at its live replacements, so
// an old worker that died was never replaced (and `golb scale` up did
// nothing) until the settings changed again. Now, as Nomad's reconciler
// places a lost allocation even in a failed deployment, with the job's
// current version, the dead old worker is made up at once with the new
// settings; the made-up worker is not on trial (not stopped as the failed
// rollover's replacements are), and a scale-up starts new workers too. The
// rollover stays stopped: the surviving old worker keeps serving.
func TestStoppedRolloverMakesUpDeadOldWorkers(t *testing.T) {
	x := newRolloutFixture(t, "rm", 2, "1", "60s")
	ta, g := x.ta, x.g
	old := workerProcs(g)
	ta.reload(t, x.f, x.config("2ms", ""))
	// Its first replacement dies as it starts: the rollover stops.
	repl := waitProcs(t, 60*time.Second, "the first replacement's process", func(ps map[int]string) bool { return len(ps) == 3 }, g)
	for pid, id := range repl {
		if old[pid] == "" {
			killOne(t, map[int]string{pid: id})
		}
	}
	ta.waitGroup(t, g, 60*time.Second, "the rollover stopped", func(g *state.Group) bool { return g.RolloutStopped != "" })
	ta.waitWorkers(t, 30*time.Second, "only the 2 old workers left", func(ws []*state.Worker) bool { return len(ws) == 2 })

	dead := killOne(t, old)
	start := time.Now()
	ws := ta.waitWorkers(t, 60*time.Second, "the dead old worker made up", func(ws []*state.Worker) bool {
		return !ids(ws)[dead] && len(liveIn(ws, g)) == 2 && len(running(ws, g)) == 2 && len(ws) == 2
	})
	made := time.Since(start)
	hash := ta.spec(g).hash
	for _, w := range liveIn(ws, g) {
		if pidOfWorker(old, w.ID) == 0 && (w.Handle == nil || w.Handle.Labels[LabelSpec] != hash || w.Outdated) {
			t.Errorf("made-up worker %s does not run the new settings: %+v", w.ID, w.Handle)
		}
	}
	waitServing(t, ta, g, 2)
	time.Sleep(time.Second) // the made-up worker is not stopped as on trial
	ws = allWorkers(ta)
	if len(running(ws, g)) != 2 {
		t.Errorf("after the made-up worker served: %s, want 2 running", describe(ws))
	}
	if err := ta.Scale(g, 3); err != nil {
		t.Fatal(err)
	}
	ta.waitWorkers(t, 60*time.Second, "scaled up to 3 with the rollover stopped", func(ws []*state.Worker) bool { return len(running(ws, g)) == 3 })
	sg := ta.group(t, g)
	t.Logf("old worker %s killed with the rollover stopped: made up in %v; %s; RolloutStopped=%q", dead, made.Round(time.Millisecond), describe(allWorkers(ta)), sg.RolloutStopped)
	if sg.RolloutStopped == "" {
		t.Errorf("the stopped rollover was cleared: nothing changed the group's settings")
	}
}

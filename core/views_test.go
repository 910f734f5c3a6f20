package core

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/golb/golb/core/admin"
	"github.com/golb/golb/core/state"
)

// TestDashboardViews: the agent's admin.Views give the dashboard each
// worker with its pid and health, the balancer's counters under its group,
// the autoscaler of a scaled group only, and a drain that replaces the
// worker; drain refuses unknown and non-running workers; the agent serves
// the page and the stream on its admin address.
func TestDashboardViews(t *testing.T) {
	g, h := uniq("dash"), uniq("fix")
	killProcs(t, g, h)
	addr := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1))
	scaled := strings.Replace(groupHCL(g, 2, freePorts(t, 10), "1ms"), "  app {", "  scale {\n    min = 2\n    max = 3\n  }\n  app {", 1)
	lb := freePorts(t, 1)
	src := header(t.TempDir(), addr) + scaled + groupHCL(h, 1, freePorts(t, 10), "1ms") + fmt.Sprintf(`
balancer "front" {
  group = %q
  port  = %d
}
`, g, lb)
	ta := startAgent(t, parseConfig(t, src))
	ta.waitWorkers(t, 60*time.Second, "3 running workers", func(ws []*state.Worker) bool {
		return len(inGroup(ws, g, state.StatusRunning)) == 2 && len(inGroup(ws, h, state.StatusRunning)) == 1
	})
	v := dashViews{ta.Agent}
	for range 20 {
		if resp, err := httpc.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb)); err == nil {
			resp.Body.Close()
		}
	}

	st := v.State(memdb.NewWatchSet())
	if len(st.Workers) != 3 || len(st.Groups) != 2 || len(st.Drivers) != 1 || len(st.Balancers) != 1 {
		t.Fatalf("state: %+v", st)
	}
	b := st.Balancers[0]
	if b.Name != "front" || b.Group != g || b.Classes["2xx"] < 20 || len(b.Buckets) != len(b.Bounds)+1 || len(b.Addrs) != 1 {
		t.Errorf("balancer: %+v", b)
	}
	for _, gr := range st.Groups {
		if (gr.Scale != nil) != (gr.Name == g) {
			t.Errorf("group %s: scale %+v; want one for the scaled group only", gr.Name, gr.Scale)
		}
		if gr.Scale != nil && gr.Scale.Mode != "stable" {
			t.Errorf("group %s: autoscaler mode %q, want stable", gr.Name, gr.Scale.Mode)
		}
	}
	var victim admin.Worker
	for _, w := range st.Workers {
		if w.PID == 0 || !alive(w.PID) || w.Status != "running" || w.StartedAt.IsZero() {
			t.Errorf("worker: %+v", w)
		}
		if w.Group == g {
			victim = w
		}
	}

	if err := v.Drain("nosuch"); !errors.Is(err, admin.ErrNoWorker) {
		t.Errorf("drain of an unknown worker: %v", err)
	}
	if err := v.Drain(victim.ID); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if err := v.Drain(victim.ID); !errors.Is(err, admin.ErrNotRunning) && !errors.Is(err, admin.ErrNoWorker) {
		t.Errorf("second drain: %v", err)
	}
	ta.waitWorkers(t, 60*time.Second, victim.ID+" replaced", func(ws []*state.Worker) bool {
		return !ids(ws)[victim.ID] && len(inGroup(ws, g, state.StatusRunning)) == 2
	})
	if alive(victim.PID) {
		t.Errorf("the drained worker's process %d still runs", victim.PID)
	}

	for path, ctype := range map[string]string{"/": "text/html", "/v1/stream": "text/event-stream"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) {
			t.Errorf("GET %s: %s %s", path, resp.Status, resp.Header.Get("Content-Type"))
		}
	}
}

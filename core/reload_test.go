package core

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golb/golb/core/admin"
	"github.com/golb/golb/core/config"
	"github.com/golb/golb/core/state"
	"github.com/golb/golb/internal/testutil"
)

// reloadPorts finds n free consecutive ports in 29000-29999, the reload
// tests' part of core's range.
func reloadPorts(t testing.TB, n int) int { return testutil.PortRange(t, 29000, 30000, n) }

// reloadFile is a config file on disk that a test rewrites between reloads.
type reloadFile struct {
	t    *testing.T
	path string
}

func newReloadFile(t *testing.T, src string) *reloadFile {
	f := &reloadFile{t: t, path: filepath.Join(t.TempDir(), "golb.hcl")}
	f.write(src)
	return f
}

func (f *reloadFile) write(src string) {
	f.t.Helper()
	if err := os.WriteFile(f.path, []byte(src), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// load parses the file as `golb run FILE` does.
func (f *reloadFile) load() *config.Config {
	f.t.Helper()
	cfg, _, diags := config.Load(f.path)
	if diags.HasErrors() {
		f.t.Fatalf("config does not parse: %s", diags.Error())
	}
	return cfg
}

// reload writes src and reloads, failing the test unless it applied.
func (ta *testAgent) reload(t *testing.T, f *reloadFile, src string) ReloadEvent {
	t.Helper()
	f.write(src)
	start := time.Now()
	ev, err := ta.Reload(context.Background())
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if ev.Result != ReloadApplied {
		t.Fatalf("Reload: %s: %s", ev.Result, ev.Summary)
	}
	t.Logf("reload applied in %v: %s", time.Since(start).Round(time.Millisecond), ev.Summary)
	return ev
}

// startLoad is testutil's load generator.
func startLoad(urls []string, rps int) *testutil.Load { return testutil.StartLoad(urls, rps) }

// reloadConfig is a test config: group g (count, avg delay, update block)
// and balancers. Its health checks are lenient: on a busy 2-core machine
// under -race, a 100 ms timeout failed checks of healthy workers.
func reloadConfig(dir, g string, count, port int, delay, update, balancers string) string {
	return header(dir, "") + fmt.Sprintf(`
group %q {
  driver = "process"
  count  = %d
  port   = %d
  stop_timeout = "5s"
  app {
    avg_delay    = %q
    failure_rate = 0
  }
  health_check {
    interval = "400ms"
    timeout  = "300ms"
    fall     = 3
  }
  %s
}
`, g, count, port, delay, update) + balancers
}

func balancerHCL(name, group string, port, listeners int, policy string) string {
	return fmt.Sprintf(`
balancer %q {
  group     = %q
  port      = %d
  listeners = %d
  policy    = %q
  drain_timeout = "5s"
}
`, name, group, port, listeners, policy)
}

func running(ws []*state.Worker, group string) []*state.Worker {
	return inGroup(ws, group, state.StatusRunning)
}

// TestReloadUnderLoadDropsNothing: under a steady 200 requests a second
// through the balancer, reloads that scale a group 3 → 5 → 2, change the
// policy, add a second balancer on new ports, take a balancer's listeners
// 2 → 1 and roll the whole group over (new avg_delay and failure_rate) all
// apply without one failed request; the rollover's answers come from new
// worker ids.
func TestReloadUnderLoadDropsNothing(t *testing.T) {
	g := uniq("rl")
	killProcs(t, g)
	dir := t.TempDir()
	port, lb, lb2 := reloadPorts(t, 12), reloadPorts(t, 2), reloadPorts(t, 1)
	// From the policy change on, the balancers retry 5xx answers on
	// another worker: the rollover's new settings fail 1% of requests
	// (those that find no other worker to retry on are counted apart).
	retrying := func(s string) string {
		return strings.Replace(s, "drain_timeout", "retries  = 2\n  retry_on = [\"5xx\"]\n  drain_timeout", 1)
	}
	web := func(listeners int, policy string) string {
		s := balancerHCL("web", g, lb, listeners, policy)
		if policy != "round_robin" {
			s = retrying(s)
		}
		return s
	}
	web2 := retrying(balancerHCL("web2", g, lb2, 1, "p2c"))
	settle := func() { time.Sleep(400 * time.Millisecond) } // load through each state
	f := newReloadFile(t, reloadConfig(dir, g, 3, port, "2ms", "", web(2, "round_robin")))
	ta := startAgent(t, f.load())
	ta.waitWorkers(t, 60*time.Second, "3 workers", func(ws []*state.Worker) bool { return len(running(ws, g)) == 3 })
	waitServing(t, ta, g, 3)

	// Both listeners of web, then web2 too once it exists.
	urls := []string{fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb), fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb+1)}
	l := startLoad(urls[:1], 200)
	start := time.Now()

	ta.reload(t, f, reloadConfig(dir, g, 5, port, "2ms", "", web(2, "round_robin")))
	ta.waitWorkers(t, 60*time.Second, "5 workers", func(ws []*state.Worker) bool { return len(running(ws, g)) == 5 })
	waitServing(t, ta, g, 5)
	settle()
	ta.reload(t, f, reloadConfig(dir, g, 2, port, "2ms", "", web(2, "round_robin")))
	ta.waitWorkers(t, 60*time.Second, "2 workers", func(ws []*state.Worker) bool { return len(inGroup(ws, g, state.StatusRunning)) == 2 && len(ws) == 2 })
	settle()
	ta.reload(t, f, reloadConfig(dir, g, 2, port, "2ms", "", web(2, "least_requests")))
	if got := ta.balancersOf(g)[0].Config().Policy; got != "least_requests" {
		t.Fatalf("policy after reload = %s", got)
	}
	settle()
	both := web(2, "least_requests") + web2
	ta.reload(t, f, reloadConfig(dir, g, 2, port, "2ms", "", both))
	url2 := fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb2)
	waitOK(t, url2)
	l2 := startLoad([]string{url2}, 50)
	settle()

	// 2 → 1 listeners with requests in flight on the one that closes (a
	// new connection to a closed port is refused: none is sent after).
	inflight := startLoad(urls[1:], 50)
	time.Sleep(300 * time.Millisecond)
	inflight.Halt()
	ta.reload(t, f, reloadConfig(dir, g, 2, port, "2ms", "", web(1, "least_requests")+web2))
	errs2 := inflight.Finish()
	if _, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", lb+1), time.Second); err == nil {
		t.Errorf("listener %d still accepts after 2 → 1", lb+1)
	}
	settle()

	// The whole group rolls over: new settings, new worker ids.
	before := ids(running(allWorkers(ta), g))
	rolled := strings.Replace(reloadConfig(dir, g, 2, port, "3ms", "", web(1, "least_requests")+web2), "failure_rate = 0\n", "failure_rate = 0.01\n", 1)
	ta.reload(t, f, rolled)
	ta.waitWorkers(t, 90*time.Second, "the rollover", func(ws []*state.Worker) bool {
		rs := running(ws, g)
		if len(ws) != 2 || len(rs) != 2 {
			return false
		}
		for _, w := range rs {
			if before[w.ID] || w.Outdated {
				return false
			}
		}
		return true
	})
	seenBefore := l.IDs()
	waitServing(t, ta, g, 2)
	time.Sleep(500 * time.Millisecond)
	newAnswers := 0
	for id, n := range l.IDs() {
		if !before[id] {
			newAnswers += n - seenBefore[id]
		}
	}
	errs := append(l.Finish(), l2.Finish()...)
	errs = append(errs, errs2...)
	t.Logf("%d requests answered in %v over 6 reloads, %d failed; %d answered by the rolled-over workers after the rollover; %d answered 500 by the new failure_rate 0.01 with no other worker to retry on",
		l.OK.Load()+l2.OK.Load()+inflight.OK.Load(), time.Since(start).Round(time.Millisecond), len(errs), newAnswers, l.Simulated.Load()+l2.Simulated.Load())
	for i, e := range errs {
		if i < 10 {
			t.Errorf("failed request: %s", e)
		}
	}
	if newAnswers == 0 {
		t.Errorf("no answer from the new workers after the rollover")
	}
	if inflight.OK.Load() == 0 {
		t.Errorf("no request was served on the listener that closed")
	}
	st := ta.ReloadStatus()
	if st.Last == nil || st.Last.Result != ReloadApplied || !strings.Contains(st.Last.Summary, "rolls over (avg_delay 2ms → 3ms, failure_rate 0 → 0.01)") {
		t.Errorf("last reload = %+v", st.Last)
	}
}

// waitServing waits until n workers of group are healthy in its balancers.
func waitServing(t *testing.T, ta *testAgent, group string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ws := running(allWorkers(ta), group)
		serving := ta.servingIn(group)
		c := 0
		for _, w := range ws {
			if serving(w.ID) {
				c++
			}
		}
		if c >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("fewer than %d workers of %s serving after 60s", n, group)
}

// waitOK waits until url answers 200.
func waitOK(t *testing.T, url string) {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 60*time.Second {
		if resp, err := httpc.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Logf("%s answers 200 after %v", url, time.Since(start).Round(time.Millisecond))
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not answer 200 within 60s", url)
}

func allWorkers(ta *testAgent) []*state.Worker {
	ws, _ := ta.Store().Workers(nil)
	return ws
}

// TestReloadInvalidFileChangesNothing: a reload to a file with an error
// returns its positioned diagnostic and leaves the same workers (same
// pids) and the same listeners.
func TestReloadInvalidFileChangesNothing(t *testing.T) {
	g := uniq("ri")
	killProcs(t, g)
	dir := t.TempDir()
	port, lb := reloadPorts(t, 4), reloadPorts(t, 1)
	src := reloadConfig(dir, g, 2, port, "1ms", "", balancerHCL("web", g, lb, 1, "round_robin"))
	f := newReloadFile(t, src)
	ta := startAgent(t, f.load())
	ta.waitWorkers(t, 60*time.Second, "2 workers", func(ws []*state.Worker) bool { return len(running(ws, g)) == 2 })
	pids := workerProcs(g)

	bad := strings.Replace(src, "count  = 2", "count  = 4\n  bogus = 1", 1)
	f.write(bad)
	ev, err := ta.Reload(context.Background())
	var re *ReloadError
	if !errors.As(err, &re) || !errors.Is(err, ErrConfig) || len(re.Diags) == 0 {
		t.Fatalf("Reload of an invalid file: %v, want a ReloadError with diagnostics", err)
	}
	d := re.Diags[0]
	t.Logf("diagnostic: %s:%d:%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, d.Summary)
	wantLine := strings.Count(bad[:strings.Index(bad, "bogus")], "\n") + 1
	if d.Subject.Filename != f.path || d.Subject.Start.Line != wantLine {
		t.Errorf("diagnostic at %s:%d, want %s:%d", d.Subject.Filename, d.Subject.Start.Line, f.path, wantLine)
	}
	if ev.Result != ReloadInvalid {
		t.Errorf("event = %+v", ev)
	}
	time.Sleep(time.Second) // what a wrongly applied reload would have started
	if got := workerProcs(g); fmt.Sprint(values(got)) != fmt.Sprint(values(pids)) || len(got) != 2 {
		t.Errorf("workers changed: %v, want %v", got, pids)
	}
	for pid := range pids {
		if !alive(pid) {
			t.Errorf("worker pid %d gone", pid)
		}
	}
	if g := ta.group(t, g); g.Desired != 2 {
		t.Errorf("desired = %d after an invalid reload", g.Desired)
	}
	if addrs := ta.allBalancers()[0].Addrs(); len(addrs) != 1 || !strings.HasSuffix(addrs[0], fmt.Sprint(lb)) {
		t.Errorf("listeners = %v", addrs)
	}
}

// TestReloadRefusesWhatCannotApplyLive: a new data_dir, stats sink or admin
// address refuses the whole reload with the reason; the count change in
// the same file is not applied either.
func TestReloadRefusesWhatCannotApplyLive(t *testing.T) {
	g := uniq("rr")
	killProcs(t, g)
	dir := t.TempDir()
	port := reloadPorts(t, 4)
	f := newReloadFile(t, reloadConfig(dir, g, 1, port, "1ms", "", ""))
	ta := startAgent(t, f.load())
	ta.waitWorkers(t, 60*time.Second, "1 worker", func(ws []*state.Worker) bool { return len(running(ws, g)) == 1 })
	for _, tc := range []struct{ what, src, want string }{
		{"data_dir", strings.Replace(reloadConfig(dir, g, 2, port, "1ms", "", ""), "data_dir = \""+dir, "data_dir = \""+dir+"/other", 1), "data_dir"},
		{"stats", strings.Replace(reloadConfig(dir, g, 2, port, "1ms", "", ""), "flush_interval = \"100ms\"", "flush_interval = \"200ms\"", 1), "stats block"},
		{"admin", strings.Replace(reloadConfig(dir, g, 2, port, "1ms", "", ""), `admin { address = "" }`, `admin { address = "127.0.0.1:29999" }`, 1), "admin address"},
	} {
		f.write(tc.src)
		ev, err := ta.Reload(context.Background())
		var re *ReloadError
		if !errors.As(err, &re) || !errors.Is(err, ErrReloadRefused) {
			t.Fatalf("%s: Reload = %v, want refused", tc.what, err)
		}
		t.Logf("%s: %s", tc.what, ev.Summary)
		if ev.Result != ReloadRefused || !strings.Contains(ev.Summary, tc.want) {
			t.Errorf("%s: event %+v, want a reason naming %q", tc.what, ev, tc.want)
		}
		if d := ta.group(t, g).Desired; d != 1 {
			t.Errorf("%s: desired = %d: the count change of a refused reload was applied", tc.what, d)
		}
	}
}

// TestReloadWithoutFileKeepsTheDefault: golb started on the embedded default
// has no file to re-read, and says so.
func TestReloadWithoutFileKeepsTheDefault(t *testing.T) {
	cfg := parseConfig(t, reloadConfig(t.TempDir(), "d", 1, 29000, "1ms", "", ""))
	cfg.Filename = config.DefaultFileName
	a, err := New(cfg, Options{Self: []string{os.Args[0]}, Builtins: testBuiltins})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Reload(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Reload before Run: %v, want ErrNotRunning", err)
	}
	a.controlCtx = context.Background() // as Run sets it
	ev, err := a.Reload(context.Background())
	if err != nil || ev.Result != ReloadUnchanged || !strings.Contains(ev.Summary, "embedded default") {
		t.Fatalf("Reload = %+v, %v", ev, err)
	}
}

// rolloutFixture is an agent running group g from a file: count workers
// with an update block, behind balancer web, all serving.
type rolloutFixture struct {
	ta                  *testAgent
	f                   *reloadFile
	g, dir, update, web string
	count, port, lb     int
}

func newRolloutFixture(t *testing.T, prefix string, count int, maxParallel, deadline string) *rolloutFixture {
	x := &rolloutFixture{g: uniq(prefix), dir: t.TempDir(), count: count, port: reloadPorts(t, 3*count), lb: reloadPorts(t, 1)}
	killProcs(t, x.g)
	x.update = fmt.Sprintf("update {\n    max_parallel     = %s\n    healthy_deadline = %q\n  }", maxParallel, deadline)
	x.web = balancerHCL("web", x.g, x.lb, 1, "round_robin")
	x.f = newReloadFile(t, x.config("1ms", ""))
	x.ta = startAgent(t, x.f.load())
	x.ta.waitWorkers(t, 60*time.Second, "the workers", func(ws []*state.Worker) bool { return len(running(ws, x.g)) == count })
	waitServing(t, x.ta, x.g, count)
	return x
}

// config is the fixture's file with avg_delay delay and extra lines in the
// group block.
func (x *rolloutFixture) config(delay, extra string) string {
	return reloadConfig(x.dir, x.g, x.count, x.port, delay, x.update+"\n  "+extra, x.web)
}

// TestRolloutBoundedByMaxParallel: a group of 4 with max_parallel 2 rolls
// over with at most 2 replacements starting at once, and never fewer than
// 4 − 2 workers serving.
func TestRolloutBoundedByMaxParallel(t *testing.T) {
	x := newRolloutFixture(t, "rp", 4, "2", "60s")
	ta, g := x.ta, x.g
	before := ids(running(allWorkers(ta), g))

	ta.reload(t, x.f, x.config("2ms", ""))
	maxStarting, minServing := 0, 4
	start := time.Now()
	for time.Since(start) < 90*time.Second {
		ws := allWorkers(ta)
		serving := ta.servingIn(g)
		starting, servingN, fresh := 0, 0, 0
		for _, w := range ws {
			if w.Group != g || !w.Status.Live() {
				continue
			}
			if w.Status == state.StatusRunning && serving(w.ID) {
				servingN++
			}
			if !before[w.ID] {
				fresh++
				if w.Status != state.StatusRunning || !serving(w.ID) {
					starting++
				}
			}
		}
		maxStarting, minServing = max(maxStarting, starting), min(minServing, servingN)
		if fresh == 4 && servingN == 4 && len(ws) == 4 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("rollover of 4 with max_parallel 2 took %v: at most %d replacements starting at once, at least %d workers serving",
		time.Since(start).Round(time.Millisecond), maxStarting, minServing)
	if maxStarting > 2 {
		t.Errorf("%d replacements starting at once, want at most max_parallel 2", maxStarting)
	}
	if maxStarting == 0 {
		t.Errorf("no replacement seen starting")
	}
	if minServing < 2 {
		t.Errorf("only %d workers serving during the rollover, want at least count − max_parallel = 2", minServing)
	}
	for _, w := range allWorkers(ta) {
		if before[w.ID] || w.Outdated {
			t.Errorf("left after the rollover: %s", describe([]*state.Worker{w}))
		}
	}
}

// TestRolloutStopsAtHealthyDeadline: replacements that never pass their
// health check (a program that runs but serves nothing) stop the rollover
// at healthy_deadline, after max_parallel attempts; the old workers keep
// serving every request, and the group and the events say why.
func TestRolloutStopsAtHealthyDeadline(t *testing.T) {
	testRolloutStops(t, `config { command = ["sleep", "600"] }`, "not healthy within healthy_deadline")
}

// TestRolloutStopsWhenReplacementsExit: replacements whose command exits at
// once stop the rollover at their first failure; the old workers keep
// serving every request.
func TestRolloutStopsWhenReplacementsExit(t *testing.T) {
	testRolloutStops(t, `config { command = ["false"] }`, "a replacement failed")
}

func testRolloutStops(t *testing.T, broken, want string) {
	x := newRolloutFixture(t, "rs", 2, "1", "3s")
	ta, g, f := x.ta, x.g, x.f
	pids := workerProcs(g)
	l := startLoad([]string{fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", x.lb)}, 100)

	src := strings.Replace(x.config("1ms", broken), "  app {\n    avg_delay    = \"1ms\"\n    failure_rate = 0\n  }\n", "", 1)
	start := time.Now()
	ta.reload(t, f, src)
	sg := ta.waitGroup(t, g, 90*time.Second, "the rollover stopped", func(g *state.Group) bool { return g.RolloutStopped != "" })
	took := time.Since(start)
	time.Sleep(time.Second) // nothing more may start
	errs := l.Finish()
	t.Logf("rollover stopped after %v: %s; %d requests served meanwhile, %d failed", took.Round(time.Millisecond), sg.RolloutStopped, l.OK.Load(), len(errs))
	if !strings.Contains(sg.RolloutStopped, want) {
		t.Errorf("RolloutStopped = %q, want %q", sg.RolloutStopped, want)
	}
	for i, e := range errs {
		if i < 10 {
			t.Errorf("failed request: %s", e)
		}
	}
	for pid, id := range pids {
		if !alive(pid) {
			t.Errorf("old worker %s (pid %d) stopped", id, pid)
		}
	}
	ws := allWorkers(ta)
	if fresh := len(ws) - len(running(ws, g)); len(running(ws, g)) != 2 || fresh != 0 {
		t.Errorf("workers after the stopped rollover: %s", describe(ws))
	}
	var note string
	for _, v := range ta.GroupViews() {
		if v.Name == g {
			note = v.RolloutStopped
		}
	}
	if note == "" {
		t.Errorf("golb status shows no stopped rollout")
	}
	found := false
	for _, ev := range ta.ReloadStatus().Events {
		found = found || ev.Result == RolloutStopped && ev.Group == g
	}
	if !found {
		t.Errorf("no rollout_stopped event: %+v", ta.ReloadStatus().Events)
	}
	mux := http.NewServeMux()
	admin.NewAPI(apiViews{ta.Agent}, nil).Register(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/groups/"+g+"/events", nil))
	if body := rec.Body.String(); rec.Code != 200 || !strings.Contains(body, `"rollout_stopped"`) || !strings.Contains(body, want) {
		t.Errorf("GET /v1/groups/%s/events: %d %s", g, rec.Code, body)
	}

	// Back to the settings the old workers run with: they are current
	// again, nothing is replaced, and the stopped rollout is cleared.
	ta.reload(t, f, x.config("1ms", ""))
	ta.waitGroup(t, g, 30*time.Second, "the stopped rollout cleared", func(g *state.Group) bool { return g.RolloutStopped == "" })
	time.Sleep(time.Second)
	for _, w := range allWorkers(ta) {
		if w.Outdated {
			t.Errorf("worker %s still outdated after a reload back to its settings", w.ID)
		}
	}
	if got := workerProcs(g); fmt.Sprint(got) != fmt.Sprint(pids) {
		t.Errorf("workers replaced after a reload back to their settings: %v, want %v", got, pids)
	}
}

// TestReloadRestartsDriverWithNewSettings: a changed driver block restarts
// the driver's plugin with the new settings (a new plugin pid); its workers
// are recovered, as after a plugin crash, and then roll over (the settings
// shape them), while every request is served.
func TestReloadRestartsDriverWithNewSettings(t *testing.T) {
	g := uniq("rd")
	killProcs(t, g)
	dir := t.TempDir()
	port, lb := reloadPorts(t, 8), reloadPorts(t, 1)
	web := balancerHCL("web", g, lb, 1, "round_robin")
	f := newReloadFile(t, reloadConfig(dir, g, 2, port, "1ms", "", web))
	ta := startAgent(t, f.load())
	ta.waitWorkers(t, 60*time.Second, "2 workers", func(ws []*state.Worker) bool { return len(running(ws, g)) == 2 })
	waitServing(t, ta, g, 2)
	pidOf := func() int {
		d, _ := ta.Store().Drivers(nil)
		for _, d := range d {
			if d.Name == "process" {
				return d.PluginPID
			}
		}
		return 0
	}
	before, old := pidOf(), ids(running(allWorkers(ta), g))
	l := startLoad([]string{fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb)}, 100)
	block := fmt.Sprintf("\ndriver \"process\" {\n  worker_command = [%q, \"worker\"]\n}\n", os.Args[0])
	ev := ta.reload(t, f, reloadConfig(dir, g, 2, port, "1ms", "", web)+block)
	if !strings.Contains(ev.Summary, "driver process: settings changed") {
		t.Errorf("summary %q does not name the driver", ev.Summary)
	}
	deadline := time.Now().Add(30 * time.Second)
	for pidOf() == before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // the record follows the restart
	}
	if after := pidOf(); after == before || after == 0 {
		t.Errorf("plugin pid %d → %d: not restarted", before, after)
	}
	ta.waitWorkers(t, 90*time.Second, "the rollover", func(ws []*state.Worker) bool {
		rs := running(ws, g)
		return len(ws) == 2 && len(rs) == 2 && !old[rs[0].ID] && !old[rs[1].ID]
	})
	errs := l.Finish()
	t.Logf("plugin pid %d → %d; %d requests served across the restart and rollover, %d failed", before, pidOf(), l.OK.Load(), len(errs))
	for i, e := range errs {
		if i < 10 {
			t.Errorf("failed request: %s", e)
		}
	}
	for _, w := range allWorkers(ta) {
		if w.Status == state.StatusLost {
			t.Errorf("worker lost with the plugin restart: %s", describe([]*state.Worker{w}))
		}
	}
}

// TestReloadAddsAndRemovesGroups: a group and its balancer added by a
// reload start and serve; a group and balancer removed by the next one
// drain and stop, its workers' processes end, and the group is forgotten.
func TestReloadAddsAndRemovesGroups(t *testing.T) {
	a, b := uniq("ra"), uniq("rb")
	killProcs(t, a, b)
	dir := t.TempDir()
	pa, pb, la, lbp := reloadPorts(t, 4), reloadPorts(t, 4), reloadPorts(t, 1), reloadPorts(t, 1)
	one := reloadConfig(dir, a, 2, pa, "1ms", "", balancerHCL("wa", a, la, 1, "round_robin"))
	groupB := strings.Replace(reloadConfig(dir, b, 1, pb, "1ms", "", balancerHCL("wb", b, lbp, 1, "p2c")), header(dir, ""), "", 1)
	f := newReloadFile(t, one)
	ta := startAgent(t, f.load())
	ta.waitWorkers(t, 60*time.Second, "group a", func(ws []*state.Worker) bool { return len(running(ws, a)) == 2 })
	ev := ta.reload(t, f, one+groupB)
	if !strings.Contains(ev.Summary, "group "+b+": added") || !strings.Contains(ev.Summary, "balancer wb: added") {
		t.Errorf("summary %q", ev.Summary)
	}
	waitOK(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lbp))
	pidsA := workerProcs(a)

	ev = ta.reload(t, f, header(dir, "")+groupB)
	if !strings.Contains(ev.Summary, "group "+a+": removed") || !strings.Contains(ev.Summary, "balancer wa: removed") {
		t.Errorf("summary %q", ev.Summary)
	}
	ta.waitWorkers(t, 60*time.Second, "group a's workers gone", func(ws []*state.Worker) bool {
		return len(inGroup(ws, a, state.StatusRunning))+len(inGroup(ws, a, state.StatusDraining)) == 0
	})
	waitProcs(t, 30*time.Second, "group a's processes gone", func(m map[int]string) bool { return len(m) == 0 }, a)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if g, _ := ta.Store().Group(nil, a); g == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if g, _ := ta.Store().Group(nil, a); g != nil {
		t.Errorf("removed group still known: %+v", g)
	}
	if _, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", la), time.Second); err == nil {
		t.Errorf("removed balancer still listens on %d", la)
	}
	waitOK(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lbp))
	t.Logf("group a's %d workers stopped; group b serves", len(pidsA))
}

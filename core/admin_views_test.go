package core

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golb/golb/balancer"
	"github.com/golb/golb/core/state"
	"github.com/golb/golb/core/stats"
)

// viewAgent is an agent that is never prepared or run, with just what the
// admin API reads: workers in its store, one started balancer "web" in
// front of them, and a stats aggregator over a SQLite file holding seed.
// It serves the admin API and returns the agent and the API's base URL.
func viewAgent(t *testing.T, workers map[string]http.Handler, seed []stats.Totals) (*testAgent, *balancer.Balancer, string) {
	t.Helper()
	ta := crashAgent(t)
	sink, err := stats.OpenSQLite(filepath.Join(t.TempDir(), "stats.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	if err := sink.Write(context.Background(), seed); err != nil {
		t.Fatal(err)
	}
	if ta.agg, err = stats.NewAggregator(sink, time.Hour, nil); err != nil {
		t.Fatal(err)
	}

	bc := balancer.DefaultConfig()
	bc.Name, bc.Port, bc.Logger = "web", freePorts(t, 1), slog.New(slog.DiscardHandler)
	bc.Health = balancer.HealthCheck{Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond}
	b, err := balancer.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	ta.balancers = append(ta.balancers, b)
	ta.agg.AddSource("web", balancerSource(b))

	var bs []balancer.Backend
	for id, h := range workers {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		addr := strings.TrimPrefix(srv.URL, "http://")
		bs = append(bs, balancer.Backend{ID: id, Address: addr})
		w := &state.Worker{ID: id, Group: "g", Driver: "process", Address: addr, Status: state.StatusRunning, StartedAt: time.Now()}
		if err := ta.Store().UpsertWorker(w); err != nil {
			t.Fatal(err)
		}
	}
	b.SetBackends(bs)

	admin := "127.0.0.1:" + strconv.Itoa(freePorts(t, 1))
	srv, err := ta.serveAdmin(admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return ta, b, "http://" + admin
}

// okWorker answers every path, /healthz included, with 200.
var okWorker = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })

// waitUntil polls cond for up to 15 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWorkersViewShowsHealthError pins a defect: a worker that never passed
// its health check (its /healthz answered 404: it ran some other HTTP
// server) showed only "unhealthy". GET /v1/workers now says why, and only
// for the unhealthy worker.
func TestWorkersViewShowsHealthError(t *testing.T) {
	other := http.NewServeMux()
	other.Handle("GET /api/v1/hello", okWorker) // /healthz: 404
	_, _, base := viewAgent(t, map[string]http.Handler{"g-ok": okWorker, "g-other": other}, nil)

	var raw []map[string]any
	waitUntil(t, "g-ok healthy and g-other's health error", func() bool {
		raw = nil
		getJSON(t, base+"/v1/workers", &raw)
		byID := map[string]map[string]any{}
		for _, w := range raw {
			byID[w["id"].(string)] = w
		}
		return byID["g-ok"]["healthy"] == true && byID["g-other"]["health_error"] != nil
	})
	for _, w := range raw {
		switch w["id"] {
		case "g-ok":
			if _, has := w["health_error"]; has {
				t.Errorf("healthy worker has a health_error: %v", w)
			}
		case "g-other":
			if w["healthy"] != false || w["health_error"] != "GET /healthz: 404 Not Found" {
				t.Errorf("worker answering 404 to its checks: %v, want unhealthy with health_error %q", w, "GET /healthz: 404 Not Found")
			}
		}
	}
}

// TestWorkersViewAgreesWithStats pins a defect: after golb was SIGKILLed and
// restarted, `golb status` showed 0 requests for adopted workers (it read
// the balancers, which start from zero) while `golb stats` showed their
// stored counts. Both now read the stats aggregator: here a worker with 77
// requests in the stats file serves 3 more, and GET /v1/workers and GET
// /v1/stats both say 80, with the same failures and mean.
func TestWorkersViewAgreesWithStats(t *testing.T) {
	seed := []stats.Totals{{WorkerID: "g-a", Success: 70, Failed: 7, LatencySum: 77 * 12 * time.Millisecond}}
	ta, b, base := viewAgent(t, map[string]http.Handler{"g-a": okWorker}, seed)
	waitUntil(t, "g-a healthy", func() bool { return ta.WorkerViews()[0].Healthy })
	for range 3 {
		resp, err := httpc.Get("http://" + b.Addrs()[0] + "/api/v1/hello")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET through the balancer: %s", resp.Status)
		}
	}

	var workers []WorkerView
	getJSON(t, base+"/v1/workers", &workers)
	var seedJSON map[string][]map[string]json.Number
	getJSON(t, base+"/v1/stats", &seedJSON)
	stat := func(section string) json.Number {
		for _, e := range seedJSON[section] {
			if n, ok := e["g-a"]; ok {
				return n
			}
		}
		t.Fatalf("GET /v1/stats has no %s for g-a: %v", section, seedJSON)
		return ""
	}
	if len(workers) != 1 {
		t.Fatalf("GET /v1/workers: %+v", workers)
	}
	w := workers[0]
	t.Logf("view: %d requests, %d failed, mean %vms; stats: %s, %s, %sms", w.Requests, w.Failed, w.MeanLatencyMS,
		stat("TotalRequests"), stat("FailedRequests"), stat("AverageResponseTime"))
	if w.Requests != 80 || stat("TotalRequests") != "80" {
		t.Errorf("requests: view %d, stats %s; want 80 in both (77 stored + 3 now)", w.Requests, stat("TotalRequests"))
	}
	if w.Failed != 7 || stat("FailedRequests") != "7" {
		t.Errorf("failed: view %d, stats %s; want 7 in both", w.Failed, stat("FailedRequests"))
	}
	if mean, _ := stat("AverageResponseTime").Float64(); w.MeanLatencyMS != mean || mean == 0 {
		t.Errorf("mean: view %vms, stats %vms; want the same, above 0", w.MeanLatencyMS, mean)
	}
}

// TestUnbalancedGroupIsNotUnhealthy pins a defect: the workers of a group
// that no balancer serves always showed as unhealthy (nothing checks them),
// and their group as 0 healthy. Running is what counts for them.
func TestUnbalancedGroupIsNotUnhealthy(t *testing.T) {
	ta := crashAgent(t)
	for id, st := range map[string]state.WorkerStatus{"solo-1": state.StatusRunning, "solo-2": state.StatusPending} {
		if err := ta.Store().UpsertWorker(&state.Worker{ID: id, Group: "solo", Driver: "process", Status: st, StartedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range ta.WorkerViews() {
		if want := v.ID == "solo-1"; v.Healthy != want {
			t.Errorf("%s (%s) healthy = %v, want %v", v.ID, v.Status, v.Healthy, want)
		}
	}
}

// damageStatsFile fills every page of the SQLite file at path but the first
// (header and schema) with random bytes while the agent's sink has it open, as
// a failing disk would. It first moves the WAL into the file, and afterwards
// commits from a connection of its own, which makes the sink's connection drop
// its page cache: from then on every write of the sink finds the damage.
func damageStatsFile(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var busy, walFrames, moved int
	if err := db.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &walFrames, &moved); err != nil || busy != 0 {
		t.Fatalf("checkpointing the WAL of %s: busy %d, err %v", path, busy, err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	size := int(binary.BigEndian.Uint16(raw[16:18])) // the page size; 1 means 65536
	if size == 1 {
		size = 65536
	}
	if len(raw) <= size {
		t.Fatalf("%s has a single page", path)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := size; i < len(raw); i++ {
		raw[i] = byte(rng.Uint32())
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(raw[size:], int64(size)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, stats.SchemaVersion)); err != nil {
		t.Fatalf("committing from a second connection: %v", err)
	}
}

// TestStatsStoreViewShowsFailingStore pins a defect: with the stats file
// damaged under a running golb, every flush failed while `golb status` and
// the admin API showed nothing wrong. GET /v1/stats/store now says since when
// writes fail, with the error (naming the file) and the requests not stored.
func TestStatsStoreViewShowsFailingStore(t *testing.T) {
	seed := []stats.Totals{{WorkerID: "g-a", Success: 70, Failed: 7, LatencySum: 77 * time.Millisecond}}
	ta, b, base := viewAgent(t, map[string]http.Handler{"g-a": okWorker}, seed)
	path := ta.agg.SinkPath()
	var v StatsStoreView
	getJSON(t, base+"/v1/stats/store", &v)
	if v.State != "ok" || v.Sink != "sqlite" || v.Path != path || v.Error != "" || v.FailingSince != "" || v.UnflushedRequests != 0 {
		t.Fatalf("GET /v1/stats/store before any trouble: %+v, want ok at %s with nothing unflushed", v, path)
	}

	waitUntil(t, "g-a healthy", func() bool { return ta.WorkerViews()[0].Healthy })
	for range 3 {
		resp, err := httpc.Get("http://" + b.Addrs()[0] + "/api/v1/hello")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	damageStatsFile(t, path)
	before := time.Now().Add(-time.Second) // failing_since has whole seconds
	err := ta.agg.Flush(context.Background())
	t.Logf("Flush: %v", err)
	if !errors.Is(err, stats.ErrDamaged) {
		t.Fatalf("Flush over the damaged file = %v, want stats.ErrDamaged", err)
	}

	getJSON(t, base+"/v1/stats/store", &v)
	t.Logf("GET /v1/stats/store: %+v", v)
	since, perr := time.Parse(time.RFC3339, v.FailingSince)
	if v.State != "failing" || perr != nil || since.Before(before) || v.FailedWrites != 1 {
		t.Errorf("state %q since %q (%v), %d failed writes; want failing since the Flush, 1 failed write", v.State, v.FailingSince, perr, v.FailedWrites)
	}
	if !strings.Contains(v.Error, "writing stats to "+path+": the file is damaged") {
		t.Errorf("error %q does not name the damaged file %s", v.Error, path)
	}
	if v.UnflushedRequests != 3 {
		t.Errorf("unflushed_requests = %d, want the 3 requests served since the stored 77", v.UnflushedRequests)
	}
}

// TestGroupEventsListLifecycle closes a gap with the contract: GET
// /v1/groups/NAME/events listed only the autoscaler's decisions (and
// stopped rollovers), and a worker's start or crash was only in the
// dashboard's log. Here a scaled group is scaled by hand, then one of its
// workers is SIGKILLed: its events list, newest first, the replacement's
// start, the victim's exit, the third worker's start and the decision, in
// that order, each with its kind, and the decision exactly as before;
// another group's events are not among them, nor its among theirs.
func TestGroupEventsListLifecycle(t *testing.T) {
	g, h := uniq("gev"), uniq("oth")
	killProcs(t, g, h)
	addr := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1))
	scaled := strings.Replace(groupHCL(g, 2, freePorts(t, 10), "1ms"), "  app {", "  scale {\n    min = 2\n    max = 3\n  }\n  app {", 1)
	ta := startAgent(t, parseConfig(t, header(t.TempDir(), addr)+scaled+groupHCL(h, 1, freePorts(t, 10), "1ms")))
	base := "http://" + addr
	ta.waitWorkers(t, 60*time.Second, "3 running workers", func(ws []*state.Worker) bool {
		return len(inGroup(ws, g, state.StatusRunning)) == 2 && len(inGroup(ws, h, state.StatusRunning)) == 1
	})
	first := ids(inGroup(allWorkers(ta), g, ""))

	if err := ta.Scale(g, 3); err != nil {
		t.Fatal(err)
	}
	ws := ta.waitWorkers(t, 60*time.Second, "3 running in "+g, func(ws []*state.Worker) bool { return len(inGroup(ws, g, state.StatusRunning)) == 3 })
	var third string
	for _, w := range inGroup(ws, g, "") {
		if !first[w.ID] {
			third = w.ID
		}
	}
	victim := inGroup(ws, g, state.StatusRunning)[0]
	if victim.ID == third {
		victim = inGroup(ws, g, state.StatusRunning)[1]
	}
	pid, _ := strconv.Atoi(victim.Details["pid"])
	if pid <= 0 {
		t.Fatalf("worker %s has no pid: %v", victim.ID, victim.Details)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	// The answer: each entry's kind and type, worker and time.
	type entry struct {
		Kind   string    `json:"kind"`
		Type   string    `json:"type"`
		Time   time.Time `json:"time"`
		Group  string    `json:"group"`
		Worker string    `json:"worker"`
		Text   string    `json:"text"`
		From   int       `json:"from"`
		To     int       `json:"to"`
		Reason string    `json:"reason"`
	}
	var got []entry
	var raw []map[string]any
	find := func(match func(entry) bool) int {
		for i, e := range got {
			if match(e) {
				return i
			}
		}
		return -1
	}
	var replacement string
	waitUntil(t, "the replacement's start in "+g+"'s events", func() bool {
		got, raw = nil, nil
		getJSON(t, base+"/v1/groups/"+g+"/events", &got)
		getJSON(t, base+"/v1/groups/"+g+"/events", &raw)
		i := find(func(e entry) bool {
			return e.Kind == "lifecycle" && e.Type == "replaced" && strings.Contains(e.Text, "replaces "+victim.ID)
		})
		if i < 0 {
			return false
		}
		replacement = got[i].Worker
		return find(func(e entry) bool { return e.Type == "started" && e.Worker == replacement }) >= 0
	})
	var lines []string
	for _, e := range got {
		lines = append(lines, fmt.Sprintf("%s %s %s %s %s", e.Time.Format("15:04:05.000"), e.Kind, e.Type, e.Worker, e.Text+e.Reason))
	}
	t.Logf("%s's events:\n%s", g, strings.Join(lines, "\n"))

	for i, e := range got {
		if e.Group != g || strings.HasPrefix(e.Worker, h) {
			t.Errorf("entry %d is not %s's: %+v", i, g, e)
		}
		if e.Kind != "scale" && e.Kind != "lifecycle" {
			t.Errorf("entry %d: kind %q", i, e.Kind)
		}
		if e.Kind == "lifecycle" && (e.Type == "" || e.Text == "" || e.Time.IsZero()) {
			t.Errorf("entry %d: a lifecycle entry without its type, text or time: %+v", i, e)
		}
		if i > 0 && e.Time.After(got[i-1].Time) {
			t.Errorf("entry %d (%s) is newer than entry %d (%s): not newest first", i, e.Time, i-1, got[i-1].Time)
		}
	}
	started := find(func(e entry) bool { return e.Type == "started" && e.Worker == replacement })
	exited := find(func(e entry) bool { return (e.Type == "exited" || e.Type == "gone") && e.Worker == victim.ID })
	third3 := find(func(e entry) bool { return e.Type == "started" && e.Worker == third })
	scale := find(func(e entry) bool {
		return e.Kind == "scale" && e.From == 2 && e.To == 3 && strings.Contains(e.Reason, "golb scale")
	})
	if started < 0 || exited < 0 || third3 < 0 || scale < 0 || !(started < exited && exited < third3 && third3 < scale) {
		t.Errorf("want, newest first, %s started (at %d), %s exited (%d), %s started (%d), the decision 2 → 3 (%d)", replacement, started, victim.ID, exited, third, third3, scale)
	}
	if scale >= 0 {
		var keys []string
		for k := range raw[scale] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if w := "direction from group kind metric mode panic_inflight panic_rps ready reason stable_inflight stable_rps target time to"; strings.Join(keys, " ") != w {
			t.Errorf("the scale entry's fields: %s, want %s", strings.Join(keys, " "), w)
		}
	}

	var other []entry
	getJSON(t, base+"/v1/groups/"+h+"/events", &other)
	for _, e := range other {
		if e.Group != h || strings.HasPrefix(e.Worker, g) {
			t.Errorf("%s's events list %+v", h, e)
		}
	}
	var only []entry
	getJSON(t, base+"/v1/groups/"+g+"/events?kind=scale", &only)
	if len(only) != 1 || only[0].Kind != "scale" {
		t.Errorf("?kind=scale: %+v", only)
	}
}

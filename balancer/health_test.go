package balancer

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golb/golb/internal/testutil"
)

func TestNewWorkerGetsNoTrafficBeforeFirstPassingCheck(t *testing.T) {
	a := newWorker(t, "a", nil)
	b0 := newWorker(t, "b", nil)
	b0.healthy.Store(false)
	bal := startBalancer(t, testConfig(), a, b0)
	c := testClient()
	waitFor(t, "b checked twice", func() bool { return b0.checks.Load() >= 2 })
	for range 30 {
		if code, _ := get(t, c, baseURL(bal)+"/"); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
	}
	if h := b0.hits.Load(); h != 0 {
		t.Fatalf("worker failing its checks got %d requests", h)
	}
	b0.healthy.Store(true)
	// The pool is published just after the flag Stats reads: under a
	// busy CI run, 10 requests once went out in between.
	waitFor(t, "b healthy and in the pool", func() bool { return statsOf(t, bal, "b").Healthy && inPool(bal, "b") })
	for range 30 {
		get(t, c, baseURL(bal)+"/")
	}
	if h := b0.hits.Load(); h != 15 {
		t.Fatalf("recovered worker got %d of 30 round-robin requests, want 15", h)
	}
}

// TestNewWorkerCheckedAtOnce pins that a new worker is checked immediately,
// not after the first Interval.
func TestNewWorkerCheckedAtOnce(t *testing.T) {
	a := newWorker(t, "a", nil)
	cfg := testConfig()
	cfg.Health.Interval, cfg.Health.Timeout = time.Hour, 5*time.Second
	bal := startBalancer(t, cfg, a) // waits until healthy; would take an hour otherwise
	late := newWorker(t, "late", nil)
	bal.SetBackends([]Backend{a.backend(), late.backend()})
	waitFor(t, "worker added later healthy", func() bool { return statsOf(t, bal, "late").Healthy })
}

// TestFallAndRiseThresholds records the balancer's view as each check
// arrives: the k-th failing check sees the results of k-1 failures.
func TestFallAndRiseThresholds(t *testing.T) {
	w := newWorker(t, "a", nil)
	cfg := testConfig()
	cfg.Health = HealthCheck{Interval: 50 * time.Millisecond, Timeout: 50 * time.Millisecond, Fall: 3, Rise: 2}
	var mu sync.Mutex
	var views []bool // healthy as seen when a check in the current phase arrived
	var bal *Balancer
	recording := false
	w.onCheck = func(n int64, pass bool) {
		mu.Lock()
		defer mu.Unlock()
		if recording {
			views = append(views, healthyCount(bal) == 1)
		}
	}
	// startBalancer needs Rise=2 passes, so the callback must not use bal yet.
	bal = startBalancer(t, cfg, w)

	phase := func(pass bool, wantBefore bool, threshold int) {
		t.Helper()
		mu.Lock()
		views, recording = nil, true
		w.healthy.Store(pass)
		mu.Unlock()
		waitFor(t, "health flips", func() bool { return (healthyCount(bal) == 1) != wantBefore })
		mu.Lock()
		got := append([]bool(nil), views...)
		recording = false
		mu.Unlock()
		// Checks 1..threshold arrive before the threshold-th result is applied.
		if len(got) < threshold {
			t.Fatalf("flipped after %d checks, threshold %d", len(got), threshold)
		}
		for i := range threshold {
			if got[i] != wantBefore {
				t.Fatalf("check %d saw healthy=%v, want %v (views %v)", i+1, got[i], wantBefore, got)
			}
		}
		t.Logf("views %v", got)
	}
	phase(false, true, 3) // fall
	c := testClient()
	if code, _ := get(t, c, baseURL(bal)+"/"); code != http.StatusServiceUnavailable {
		t.Fatalf("unhealthy pool: status %d, want 503", code)
	}
	phase(true, false, 2) // rise
	if code, _ := get(t, c, baseURL(bal)+"/"); code != http.StatusOK {
		t.Fatalf("recovered pool: status %d, want 200", code)
	}
}

// TestHealthCheckTimeout pins a defect of the seed: a check without a
// timeout hangs on a stuck worker, which then never leaves the pool.
func TestHealthCheckTimeout(t *testing.T) {
	g := newGate()
	defer g.open()
	var stuck atomic.Bool
	w := newWorker(t, "a", nil)
	w.onCheck = func(int64, bool) {
		if stuck.Load() {
			g.wait()
		}
	}
	cfg := testConfig()
	cfg.Health = HealthCheck{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond, Fall: 1}
	bal := startBalancer(t, cfg, w)
	stuck.Store(true) // the worker stops answering checks
	waitFor(t, "stuck worker unhealthy", func() bool { return healthyCount(bal) == 0 })
}

// logRecords decodes the JSON log lines in buf whose msg starts with prefix.
func logRecords(t *testing.T, buf *testutil.SyncBuffer, prefix string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if msg, _ := rec["msg"].(string); strings.HasPrefix(msg, prefix) {
			out = append(out, rec)
		}
	}
	return out
}

// TestHealthCheckFailureIsExplained pins a defect: a worker whose /healthz
// answered 404 (it ran some other HTTP server) never got traffic, and the
// reason was logged only at DEBUG. The reason is now in Stats while the
// checks fail, a WARN names it once (not once per check), and the WARN of a
// healthy worker turning unhealthy carries it too.
func TestHealthCheckFailureIsExplained(t *testing.T) {
	var logs testutil.SyncBuffer
	var passing atomic.Bool
	var checks atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			checks.Add(1)
			if !passing.Load() {
				http.NotFound(w, r)
				return
			}
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(other.Close)
	be := Backend{ID: "other", Address: strings.TrimPrefix(other.URL, "http://")}

	a := newWorker(t, "a", nil)
	cfg := testConfig()
	cfg.Health = HealthCheck{Interval: 50 * time.Millisecond, Timeout: 50 * time.Millisecond, Fall: 2}
	cfg.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) // the default level: INFO
	bal := startBalancer(t, cfg, a)
	bal.SetBackends([]Backend{a.backend(), be})

	const reason = "GET /healthz: 404 Not Found"
	waitFor(t, "the 404 reported", func() bool { return statsOf(t, bal, "other").HealthError == reason })
	n := checks.Load()
	waitFor(t, "five more failed checks", func() bool { return checks.Load() >= n+5 })
	if s := statsOf(t, bal, "other"); s.Healthy {
		t.Fatalf("a worker answering 404 to its checks is healthy: %+v", s)
	}
	warns := logRecords(t, &logs, "worker not passing its health check")
	if len(warns) != 1 {
		t.Fatalf("%d warnings for a worker failing every check, want 1; logs:\n%s", len(warns), logs.String())
	}
	if w := warns[0]; w["level"] != "WARN" || w["id"] != "other" || w["addr"] != be.Address || w["reason"] != reason {
		t.Errorf("warning %v, want WARN with id other, addr %s, reason %q", w, be.Address, reason)
	}

	passing.Store(true)
	waitFor(t, "the worker healthy", func() bool { return statsOf(t, bal, "other").Healthy })
	if s := statsOf(t, bal, "other"); s.HealthError != "" {
		t.Errorf("health error %q kept after a passing check", s.HealthError)
	}
	passing.Store(false)
	waitFor(t, "the worker unhealthy", func() bool { return !statsOf(t, bal, "other").Healthy })
	n = checks.Load()
	waitFor(t, "five more failed checks", func() bool { return checks.Load() >= n+5 })
	downs := logRecords(t, &logs, "worker unhealthy")
	if len(downs) != 1 || downs[0]["level"] != "WARN" || downs[0]["reason"] != reason {
		t.Errorf("healthy→unhealthy logged as %v, want one WARN with reason %q", downs, reason)
	}
	if warns := logRecords(t, &logs, "worker not passing its health check"); len(warns) != 1 {
		t.Errorf("%d not-passing warnings after the worker turned unhealthy, want still 1", len(warns))
	}
	if got := statsOf(t, bal, "other").HealthError; got != reason {
		t.Errorf("health error %q, want %q", got, reason)
	}
}

// TestHealthCheckErrorsAreShort: a refused connection and a check without
// an answer are reported without the URL noise of net/http's errors.
func TestHealthCheckErrorsAreShort(t *testing.T) {
	g := newGate()
	defer g.open()
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-g.ch:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(stuck.Close)
	refused := freeAddr(t)
	cfg := testConfig()
	cfg.Health = HealthCheck{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond}
	bal := startBalancer(t, cfg)
	bal.SetBackends([]Backend{{ID: "stuck", Address: strings.TrimPrefix(stuck.URL, "http://")}, {ID: "refused", Address: refused}})
	for id, want := range map[string]string{
		"stuck":   "GET /healthz: no answer within 50ms",
		"refused": "GET /healthz: dial tcp " + refused + ": connect: connection refused",
	} {
		waitFor(t, id+" reported", func() bool { return statsOf(t, bal, id).HealthError != "" })
		if got := statsOf(t, bal, id).HealthError; got != want {
			t.Errorf("%s: health error %q, want %q", id, got, want)
		}
	}
}

// TestStartingWorkerIsNotWarnedAbout: every worker started by golb logged
// "worker not passing its health check", since its first fast checks fail
// while it is still starting. A worker that passes within its first Interval
// gets no warning.
func TestStartingWorkerIsNotWarnedAbout(t *testing.T) {
	var logs testutil.SyncBuffer
	addr := freeAddr(t)
	cfg := testConfig()
	cfg.Health = HealthCheck{Interval: 2 * time.Second, Timeout: time.Second, Fall: 2}
	cfg.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	bal := startBalancer(t, cfg)
	bal.SetBackends([]Backend{{ID: "late", Address: addr}})
	time.Sleep(300 * time.Millisecond) // several refused fast checks
	if s := statsOf(t, bal, "late"); s.HealthError == "" {
		t.Fatalf("no failed check recorded before the worker listened: %+v", s)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	waitFor(t, "the late worker healthy", func() bool { return statsOf(t, bal, "late").Healthy })
	if warns := logRecords(t, &logs, "worker not passing its health check"); len(warns) != 0 {
		t.Fatalf("a worker healthy within its first interval was warned about: %v", warns)
	}
}

// inPool reports whether the backend id is among the balancer's
// published candidates.
func inPool(b *Balancer, id string) bool {
	if p := b.pool.Load(); p != nil {
		for _, be := range *p {
			if be.id == id {
				return true
			}
		}
	}
	return false
}

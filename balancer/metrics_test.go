package balancer

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func statusByPath() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fail":
			w.WriteHeader(http.StatusInternalServerError)
		case "/missing":
			w.WriteHeader(http.StatusNotFound)
		}
	})
}

func TestStatsAndCollector(t *testing.T) {
	w := newWorker(t, "a", statusByPath())
	cfg := testConfig()
	cfg.Eject5xx = -1
	b := startBalancer(t, cfg, w)
	c := testClient()
	paths := map[string]int{"/ok": 6, "/fail": 3, "/missing": 2}
	sent := 0
	for p, n := range paths {
		for range n {
			get(t, c, baseURL(b)+p)
			sent++
		}
	}
	b.SetBackends(nil) // a removed worker keeps its counts
	if code, _ := get(t, c, baseURL(b)+"/ok"); code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", code)
	}

	s := statsOf(t, b, "a")
	if s.Success+s.Failed != uint64(sent) || s.Failed != 3 || s.Success != 8 {
		t.Fatalf("stats %+v: want success 8 + failed 3 = %d sent", s, sent)
	}
	if s.LatencySum <= 0 || s.InFlight != 0 || !s.Removed {
		t.Fatalf("stats %+v: want positive latency, nothing in flight, removed", s)
	}

	want := `
# HELP golb_requests_total Proxied attempts by worker and status class (error: no answer).
# TYPE golb_requests_total counter
golb_requests_total{balancer="web",code_class="1xx",worker="a"} 0
golb_requests_total{balancer="web",code_class="2xx",worker="a"} 6
golb_requests_total{balancer="web",code_class="3xx",worker="a"} 0
golb_requests_total{balancer="web",code_class="4xx",worker="a"} 2
golb_requests_total{balancer="web",code_class="5xx",worker="a"} 3
golb_requests_total{balancer="web",code_class="error",worker="a"} 0
# HELP golb_request_errors_total Failed attempts (5xx answer or transport error) by worker.
# TYPE golb_request_errors_total counter
golb_request_errors_total{balancer="web",worker="a"} 3
# HELP golb_inflight_requests Requests in flight to workers.
# TYPE golb_inflight_requests gauge
golb_inflight_requests{balancer="web"} 0
# HELP golb_unavailable_total Requests answered 503 because no worker was healthy.
# TYPE golb_unavailable_total counter
golb_unavailable_total{balancer="web"} 1
`
	if err := testutil.CollectAndCompare(b.Collector(), strings.NewReader(want),
		"golb_requests_total", "golb_request_errors_total", "golb_inflight_requests", "golb_unavailable_total"); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.CollectAndLint(b.Collector()); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}

	// Two balancers register side by side; the pedantic registry checks
	// that Collect matches Describe.
	other, err := New(Config{Name: "api"})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(b.Collector(), other.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "golb_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			found = true
			if h.GetSampleCount() != uint64(sent) {
				t.Errorf("histogram count %d, want %d", h.GetSampleCount(), sent)
			}
			if got, want := h.GetSampleSum(), s.LatencySum.Seconds(); got != want {
				t.Errorf("histogram sum %v, want %v", got, want)
			}
		}
	}
	if !found {
		t.Fatal("no golb_request_duration_seconds histogram")
	}
}

func TestWorkerHealthyGauge(t *testing.T) {
	up, down := newWorker(t, "up", nil), newWorker(t, "down", nil)
	down.healthy.Store(false)
	b := startBalancer(t, testConfig(), up, down)
	waitFor(t, "down checked", func() bool { return down.checks.Load() >= 1 })
	want := `
# HELP golb_worker_healthy Whether the worker receives traffic (1) or not (0).
# TYPE golb_worker_healthy gauge
golb_worker_healthy{balancer="web",worker="down"} 0
golb_worker_healthy{balancer="web",worker="up"} 1
`
	if err := testutil.CollectAndCompare(b.Collector(), strings.NewReader(want), "golb_worker_healthy"); err != nil {
		t.Fatal(err)
	}
}

func TestRetryBudget(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	rb := newRetryBudget(0.2, -1)
	for range 100 {
		rb.request(now)
	}
	granted := 0
	for range 50 {
		if rb.allow(now) {
			granted++
		}
	}
	if granted != 20 {
		t.Fatalf("granted %d retries for 100 requests at 20%%, want 20", granted)
	}
	// The window slides: 10s later the old requests no longer count.
	later := now.Add(budgetWindow * time.Second)
	if rb.allow(later) {
		t.Fatal("retry granted with no recent requests and no floor")
	}
	floored := newRetryBudget(0.2, 10)
	n := 0
	for range 200 {
		if floored.allow(now) {
			n++
		}
	}
	if n != 10*budgetWindow {
		t.Fatalf("floor of 10/s granted %d retries in an idle window, want %d", n, 10*budgetWindow)
	}
}

// TestStatsNeverSeesAMovingBackendTwiceOrNotAtAll pins a counting race: a
// removed backend moved to the retired list (and a re-added one back) in
// two atomic stores, so a Stats reader between them counted it twice or
// not at all; a PostgreSQL flush taking the doubled snapshot stored the
// worker's whole count again, for good.
func TestStatsNeverSeesAMovingBackendTwiceOrNotAtAll(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Name = "web"
	cfg.Health.Interval = -1
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.SetBackends([]Backend{{ID: "keep", Address: "127.0.0.1:1"}})
	b.mu.Lock()
	b.byID["keep"].observe(class2xx, time.Millisecond)
	b.mu.Unlock()
	var stop atomic.Bool
	var twice, missing, reads atomic.Int64
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for !stop.Load() {
				n := uint64(0)
				for _, s := range b.Stats() {
					if s.ID == "keep" {
						n += s.Success
					}
				}
				reads.Add(1)
				switch {
				case n > 1:
					twice.Add(1)
				case n == 0:
					missing.Add(1)
				}
			}
		})
	}
	cycles := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); cycles++ {
		b.SetBackends([]Backend{{ID: fmt.Sprint("other", cycles), Address: "127.0.0.1:1"}}) // keep retired
		b.SetBackends([]Backend{{ID: "keep", Address: "127.0.0.1:1"}})                      // keep back
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d moves each way, %d Stats reads: counted twice %d, missing %d", cycles, reads.Load(), twice.Load(), missing.Load())
	if twice.Load() > 0 || missing.Load() > 0 {
		t.Errorf("Stats counted the moving backend twice %d times, missed it %d times", twice.Load(), missing.Load())
	}
}

package balancer

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
	waitFor(t, "b healthy", func() bool { return statsOf(t, bal, "b").Healthy })
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

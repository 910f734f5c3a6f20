package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// seedStats is the seed's /worker/stats shape.
type seedStats map[string][]map[string]float64

func (s seedStats) get(key, id string) float64 {
	for _, m := range s[key] {
		if v, ok := m[id]; ok {
			return v
		}
	}
	return -1
}

func fetchStats(t *testing.T, port int) seedStats {
	t.Helper()
	var s seedStats
	if err := getJSON(fmt.Sprintf("http://127.0.0.1:%d/worker/stats", port), &s); err != nil {
		t.Fatalf("GET /worker/stats: %v", err)
	}
	return s
}

var loadClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func hello(port int) (int, error) {
	resp, err := loadClient.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", port))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var b [512]byte
	for {
		if _, err := resp.Body.Read(b[:]); err != nil {
			break
		}
	}
	return resp.StatusCode, nil
}

func writeStatsConfig(t testing.TB, dir string, pt ports, failure float64, delay string) string {
	t.Helper()
	path := writeConfig(t, dir, pt, 3, "")
	raw := mustRead(t, path)
	raw = strings.Replace(raw, `avg_delay    = "1ms"`, fmt.Sprintf(`avg_delay    = %q`, delay), 1)
	raw = strings.Replace(raw, `failure_rate = 0`, fmt.Sprintf(`failure_rate = %g`, failure), 1)
	mustWrite(t, path, raw)
	return path
}

// TestRoundRobinAndExactStats: 10,000 sequential requests through both
// listeners to 3 healthy workers give each 3,333 or 3,334, and /worker/stats
// counts exactly what the client sent.
func TestRoundRobinAndExactStats(t *testing.T) {
	dir := t.TempDir()
	pt := newPorts(t)
	cfg := writeStatsConfig(t, dir, pt, 0, "0s")
	p := golb(t, dir, pt.adminAddr(), "run", cfg)
	p.waitHealthy(3, 20*time.Second)
	const n = 10000
	for i := range n {
		code, err := hello(pt.lb + i%2)
		if err != nil || code != 200 {
			t.Fatalf("request %d: %d %v", i, code, err)
		}
	}
	s := fetchStats(t, pt.lb+1)
	if got := s.get("TotalRequests", "total"); got != n {
		t.Fatalf("TotalRequests.total = %v, want %d", got, n)
	}
	if ok, failed := s.get("SuccessfulRequests", "total"), s.get("FailedRequests", "total"); ok+failed != n {
		t.Fatalf("successes %v + failures %v != %d", ok, failed, n)
	}
	for _, w := range p.workers() {
		got := s.get("TotalRequests", w.ID)
		t.Logf("worker %s: %v requests, mean %v ms", w.ID, got, s.get("AverageResponseTime", w.ID))
		if got != 3333 && got != 3334 {
			t.Errorf("worker %s got %v requests, want 3333 or 3334", w.ID, got)
		}
	}
	out, code := runGolb(t, dir, pt.adminAddr(), "stats")
	if code != 0 || !strings.Contains(out, "total") || !strings.Contains(out, "10000") {
		t.Fatalf("golb stats: exit %d:\n%s", code, out)
	}
	out, code = runGolb(t, dir, pt.adminAddr(), "stats", "--json")
	var js seedStats
	if code != 0 || json.Unmarshal([]byte(out), &js) != nil || js.get("TotalRequests", "total") != n {
		t.Fatalf("golb stats --json: exit %d:\n%s", code, out)
	}
	code, body, err := get("http://" + pt.adminAddr() + "/metrics")
	if err != nil || code != 200 || !strings.Contains(body, "golb_requests_total") || !strings.Contains(body, "golb_worker_inflight_requests{") || !strings.Contains(body, `golb_workers{group="hello",status="running"} 3`) {
		t.Fatalf("/metrics: %d %v\n%.2000s", code, err, body)
	}
}

// TestFailureRateThroughBalancer: at failure_rate 0.12 the failed fraction
// over 10,000 requests is within ±1.5 points of 12%.
func TestFailureRateThroughBalancer(t *testing.T) {
	dir := t.TempDir()
	pt := newPorts(t)
	cfg := writeStatsConfig(t, dir, pt, 0.12, "0s")
	p := golb(t, dir, pt.adminAddr(), "run", cfg)
	p.waitHealthy(3, 20*time.Second)
	const n = 10000
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= n {
				code, err := hello(pt.lb)
				if err != nil {
					t.Errorf("transport error: %v", err)
					return
				}
				if code == 500 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	frac := float64(failed.Load()) / n
	s := fetchStats(t, pt.lb)
	t.Logf("client saw %.4f failed; /worker/stats says %v of %v", frac, s.get("FailedRequests", "total"), s.get("TotalRequests", "total"))
	if frac < 0.105 || frac > 0.135 {
		t.Fatalf("failed fraction %.4f, want 0.12 ± 0.015", frac)
	}
	if s.get("FailedRequests", "total") != float64(failed.Load()) || s.get("TotalRequests", "total") != n {
		t.Fatalf("stats disagree with the client: %v failed of %v", s.get("FailedRequests", "total"), s.get("TotalRequests", "total"))
	}
}

// TestWorkerCrashUnderLoad: a worker SIGKILLed during ~200 rps of GETs gives
// no client-visible error, and leaves the pool after at most one failed
// attempt.
func TestWorkerCrashUnderLoad(t *testing.T) {
	const clients = 4
	dir := t.TempDir()
	pt := newPorts(t)
	cfg := writeStatsConfig(t, dir, pt, 0, "1ms")
	p := golb(t, dir, pt.adminAddr(), "run", cfg)
	p.waitHealthy(3, 20*time.Second)
	victim := p.healthyWorkers()[1]

	// One ticker paces the load at 200 rps, spread over both listeners;
	// clients goroutines send the requests.
	var sent, errs atomic.Int64
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for i := range jobs {
				code, err := hello(pt.lb + i%2)
				sent.Add(1)
				if err != nil || code != 200 {
					errs.Add(1)
					t.Logf("client-visible failure: %d %v", code, err)
				}
			}
		})
	}
	tick := time.NewTicker(5 * time.Millisecond)
	start := time.Now()
	killed := false
	for i := 0; time.Since(start) < 3*time.Second; i++ {
		<-tick.C
		if !killed && time.Since(start) >= time.Second {
			if err := syscall.Kill(pidOf(victim), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
		jobs <- i
	}
	tick.Stop()
	close(jobs)
	wg.Wait()

	s := fetchStats(t, pt.lb)
	victimFailed := s.get("FailedRequests", victim.ID)
	ejected := regexp.MustCompile(`msg="worker ejected" balancer=web id=` + victim.ID + ` .*consecutive=(\d+)`).FindStringSubmatch(p.out.String())
	t.Logf("%d requests sent, %d client-visible errors; failed attempts on the killed worker: %v; ejection log: %q",
		sent.Load(), errs.Load(), victimFailed, ejected)
	if errs.Load() != 0 {
		t.Errorf("%d client-visible errors, want 0", errs.Load())
	}
	// The first failed attempt takes the worker out of the pool: the
	// balancer logs its ejection after 1 consecutive failure (unless the
	// reconciler removed it first). Attempts already under way on it then,
	// one per client at most, fail too and are retried elsewhere; no
	// attempt starts on it after that.
	if ejected != nil && ejected[1] != "1" {
		t.Errorf("the killed worker was ejected after %s consecutive failures, want 1", ejected[1])
	}
	if victimFailed > clients {
		t.Errorf("the killed worker had %v failed attempts; with %d clients at most %d can have been under way when the first failed", victimFailed, clients, clients)
	}
}

// TestAgentCrashKeepsStats: golb SIGKILLed under load leaves a sound stats
// file, and after a restart the totals continue from the last flush.
func TestAgentCrashKeepsStats(t *testing.T) {
	dir := t.TempDir()
	pt := newPorts(t)
	cfg := writeStatsConfig(t, dir, pt, 0.1, "1ms")
	p := golb(t, dir, pt.adminAddr(), "run", cfg)
	p.waitHealthy(3, 20*time.Second)

	type sample struct {
		at    time.Time
		total float64
	}
	var mu sync.Mutex
	var samples []sample
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = hello(pt.lb)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			var s seedStats
			if getJSON(fmt.Sprintf("http://127.0.0.1:%d/worker/stats", pt.lb), &s) == nil {
				mu.Lock()
				samples = append(samples, sample{time.Now(), s.get("TotalRequests", "total")})
				mu.Unlock()
			}
		}
	}()
	time.Sleep(3 * time.Second)
	killedAt := time.Now()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.wait(10 * time.Second)
	close(stop)
	wg.Wait()

	db, err := sql.Open("sqlite", filepath.Join(dir, "stats.db"))
	if err != nil {
		t.Fatal(err)
	}
	var check string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check = %q, %v", check, err)
	}
	db.Close()

	p2 := golb(t, dir, pt.adminAddr(), "run", cfg)
	p2.waitHealthy(3, 20*time.Second)
	after := fetchStats(t, pt.lb).get("TotalRequests", "total")
	// The restart must keep at least what was counted one flush interval
	// (1 s, plus margin for the busy machine) before the kill.
	var floor, ceil float64
	mu.Lock()
	for _, s := range samples {
		if s.at.Before(killedAt.Add(-1500 * time.Millisecond)) {
			floor = s.total
		}
		ceil = max(ceil, s.total)
	}
	mu.Unlock()
	t.Logf("totals: %v counted 1.5 s before the kill, %v at the last sample, %v after restart", floor, ceil, after)
	if floor == 0 || after < floor {
		t.Fatalf("after restart total %v < %v counted before the last flush: stats lost", after, floor)
	}
	if after > ceil+100 {
		t.Fatalf("after restart total %v exceeds what was ever counted (%v)", after, ceil)
	}
}

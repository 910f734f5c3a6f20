package balancer

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golb/golb/internal/testutil"
)

// worker is a real HTTP server on 127.0.0.1 standing in for a golb worker.
// It answers /healthz with 200 while healthy, and counts every other
// request it receives.
type worker struct {
	id      string
	srv     *httptest.Server
	healthy atomic.Bool
	hits    atomic.Int64 // non-health requests
	checks  atomic.Int64 // health requests
	handler http.Handler // for non-health paths; default answers 200 "ok <id>"
	onCheck func(n int64, pass bool)
}

func newWorker(t *testing.T, id string, h http.Handler) *worker {
	t.Helper()
	w := &worker{id: id, handler: h}
	w.healthy.Store(true)
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			n := w.checks.Add(1)
			pass := w.healthy.Load()
			if w.onCheck != nil {
				w.onCheck(n, pass)
			}
			if !pass {
				rw.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(rw, "ok")
			return
		}
		w.hits.Add(1)
		if w.handler != nil {
			w.handler.ServeHTTP(rw, r)
			return
		}
		_, _ = io.WriteString(rw, "ok "+id)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *worker) backend() Backend {
	return Backend{ID: w.id, Address: strings.TrimPrefix(w.srv.URL, "http://")}
}

// testConfig is a config suited to tests: one ephemeral listener, and
// health checks often enough to be quick but not so often that a busy
// -race run flaps them.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Name = "web"
	cfg.Health.Interval, cfg.Health.Timeout = 200*time.Millisecond, 200*time.Millisecond
	return cfg
}

// started starts a balancer on cfg with no backends, shut down when the
// test ends.
func started(t *testing.T, cfg Config) *Balancer {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return b
}

// startBalancer starts a balancer over ws and waits until every worker
// marked healthy is a candidate.
func startBalancer(t *testing.T, cfg Config, ws ...*worker) *Balancer {
	t.Helper()
	b := started(t, cfg)
	bs := make([]Backend, len(ws))
	want := 0
	for i, w := range ws {
		bs[i] = w.backend()
		if w.healthy.Load() {
			want++
		}
	}
	b.SetBackends(bs)
	waitFor(t, "workers healthy", func() bool { return healthyCount(b) == want })
	return b
}

// healthyCount is the number of backends healthy and in the published
// pool (which follows the flag Stats reads a moment later).
func healthyCount(b *Balancer) int {
	n := 0
	for _, s := range b.Stats() {
		if s.Healthy && inPool(b, s.ID) {
			n++
		}
	}
	return n
}

func statsOf(t *testing.T, b *Balancer, id string) WorkerStats {
	t.Helper()
	for _, s := range b.Stats() {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no stats for %q", id)
	return WorkerStats{}
}

// waitFor polls cond with a generous deadline (busy 2-core CI) and logs how
// long it took.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", time.Since(start), what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
}

// testClient talks to the balancer over real keep-alive connections.
func testClient() *http.Client {
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
	}
}

// get GETs url and returns status and body.
func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func baseURL(b *Balancer) string { return "http://" + b.Addrs()[0] }

// freePorts returns the first of n consecutive loopback ports that nobody
// listens on, from this package's own range below the ephemeral ports.
func freePorts(t testing.TB, n int) int { return testutil.PortRange(t, 2000, 5000, n) }

// freeAddr returns a loopback address nobody listens on.
func freeAddr(t *testing.T) string { return "127.0.0.1:" + strconv.Itoa(freePorts(t, 1)) }

// gate blocks handlers until opened.
type gate struct {
	once sync.Once
	ch   chan struct{}
}

func newGate() *gate  { return &gate{ch: make(chan struct{})} }
func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }
func (g *gate) wait() { <-g.ch }

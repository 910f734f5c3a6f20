package balancer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
)

func TestValidate(t *testing.T) {
	ok := Config{Name: "web"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("zero config with a name: %v", err)
	}
	cases := []struct {
		name string
		mod  func(*Config)
		want error
	}{
		{"no name", func(c *Config) { c.Name = "" }, ErrMissingName},
		{"bad policy", func(c *Config) { c.Policy = "fastest" }, ErrUnknownPolicy},
		{"negative port", func(c *Config) { c.Port = -1 }, ErrInvalidPort},
		{"port too high", func(c *Config) { c.Port = 70000 }, ErrInvalidPort},
		{"listeners past 65535", func(c *Config) { c.Port, c.Listeners = 65535, 2 }, ErrInvalidPort},
		{"negative listeners", func(c *Config) { c.Listeners = -2 }, ErrInvalidListeners},
		{"bind hostname", func(c *Config) { c.BindAddr = "example.com" }, ErrInvalidBindAddr},
		{"retry_on unknown", func(c *Config) { c.RetryOn = []string{"4xx"} }, ErrInvalidRetry},
		{"budget above 1", func(c *Config) { c.RetryBudget = 1.5 }, ErrInvalidRetry},
		{"budget negative", func(c *Config) { c.RetryBudget = -0.1 }, ErrInvalidRetry},
		{"health path", func(c *Config) { c.Health.Path = "healthz" }, ErrInvalidHealthCheck},
		{"timeout over interval", func(c *Config) { c.Health.Interval, c.Health.Timeout = time.Second, 2*time.Second }, ErrInvalidHealthCheck},
		{"negative fall", func(c *Config) { c.Health.Fall = -1 }, ErrInvalidHealthCheck},
		{"eject base over max", func(c *Config) { c.EjectBase, c.EjectMax = time.Minute, time.Second }, ErrInvalidEjection},
		{"negative dial timeout", func(c *Config) { c.DialTimeout = -time.Second }, ErrInvalidTransport},
		{"local path", func(c *Config) { c.Local = map[string]http.Handler{"stats": http.NotFoundHandler()} }, ErrInvalidLocalPath},
		{"local nil handler", func(c *Config) { c.Local = map[string]http.Handler{"/stats": nil} }, ErrInvalidLocalPath},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			err := c.Validate()
			if !errors.Is(err, tc.want) {
				t.Fatalf("Validate() = %v, want %v", err, tc.want)
			}
			if _, err := New(c); !errors.Is(err, tc.want) {
				t.Fatalf("New() = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestRoundRobinExactAcrossListeners sends 10,000 sequential requests,
// alternating between two listeners that share one pool.
func TestRoundRobinExactAcrossListeners(t *testing.T) {
	ws := []*worker{newWorker(t, "a", nil), newWorker(t, "b", nil), newWorker(t, "c", nil)}
	cfg := testConfig()
	cfg.Listeners = 2
	cfg.Health.Interval, cfg.Health.Timeout = 2*time.Second, time.Second // no flapping mid-run
	b := startBalancer(t, cfg, ws...)
	addrs := b.Addrs()
	if len(addrs) != 2 {
		t.Fatalf("Addrs() = %v, want 2 listeners", addrs)
	}
	c := testClient()
	const n = 10000
	for i := range n {
		code, _ := get(t, c, "http://"+addrs[i%2]+"/api/v1/hello")
		if code != http.StatusOK {
			t.Fatalf("request %d: status %d", i, code)
		}
	}
	var total uint64
	for _, w := range ws {
		if h := w.hits.Load(); h != 3333 && h != 3334 {
			t.Errorf("worker %s got %d requests, want 3333 or 3334", w.id, h)
		}
		s := statsOf(t, b, w.id)
		if int64(s.Success) != w.hits.Load() || s.Failed != 0 {
			t.Errorf("worker %s: stats success=%d failed=%d, worker saw %d", w.id, s.Success, s.Failed, w.hits.Load())
		}
		total += s.Success + s.Failed
	}
	if total != n {
		t.Errorf("stats count %d attempts, want %d", total, n)
	}
}

func TestLeastRequestsPrefersIdleWorker(t *testing.T) {
	g := newGate()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			g.wait()
		}
		_, _ = io.WriteString(w, "ok")
	})
	ws := []*worker{newWorker(t, "a", h), newWorker(t, "b", h)}
	cfg := testConfig()
	cfg.Policy = PolicyLeastRequests
	b := startBalancer(t, cfg, ws...)
	c := testClient()

	done := make(chan int, 1)
	go func() {
		resp, err := c.Get(baseURL(b) + "/block")
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	defer g.open()
	waitFor(t, "one request in flight", func() bool { return b.InFlight() == 1 })
	busy, idle := ws[0], ws[1]
	if statsOf(t, b, "b").InFlight == 1 {
		busy, idle = idle, busy
	}
	before := idle.hits.Load()
	for range 20 {
		if code, _ := get(t, c, baseURL(b)+"/fast"); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
	}
	if got := idle.hits.Load() - before; got != 20 {
		t.Fatalf("idle worker %s got %d of 20 requests while %s was busy", idle.id, got, busy.id)
	}
	g.open()
	if code := <-done; code != http.StatusOK {
		t.Fatalf("blocked request: status %d", code)
	}
}

// TestRandomPoliciesSpreadAndSkipUnhealthy checks random and p2c over real
// workers: every healthy one is used about equally, the unhealthy never.
func TestRandomPoliciesSpreadAndSkipUnhealthy(t *testing.T) {
	for _, p := range []string{PolicyRandom, PolicyP2C} {
		t.Run(p, func(t *testing.T) {
			ws := []*worker{newWorker(t, "a", nil), newWorker(t, "b", nil), newWorker(t, "c", nil), newWorker(t, "sick", nil)}
			ws[3].healthy.Store(false)
			cfg := testConfig()
			cfg.Policy = p
			b := startBalancer(t, cfg, ws...)
			waitFor(t, "sick worker checked", func() bool { return ws[3].checks.Load() >= 1 })
			c := testClient()
			const n = 1500
			for range n {
				if code, _ := get(t, c, baseURL(b)+"/"); code != http.StatusOK {
					t.Fatalf("status %d", code)
				}
			}
			if h := ws[3].hits.Load(); h != 0 {
				t.Fatalf("unhealthy worker got %d requests", h)
			}
			counts := []int{int(ws[0].hits.Load()), int(ws[1].hits.Load()), int(ws[2].hits.Load())}
			// 2 degrees of freedom: P(X² > 25) is below 1e-5.
			if x2 := chiSquare(counts); x2 > 25 {
				t.Fatalf("counts %v: chi-square %.1f > 25", counts, x2)
			}
			t.Logf("counts %v", counts)
		})
	}
}

func TestNoHealthyWorkersAnswers503JSON(t *testing.T) {
	sick := newWorker(t, "sick", nil)
	sick.healthy.Store(false)
	b := startBalancer(t, testConfig(), sick)
	c := testClient()

	check := func(when string) {
		t.Helper()
		resp, err := c.Get(baseURL(b) + "/api/v1/hello")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s: status %d, want 503", when, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", when, ct)
		}
		if got, want := strings.TrimSpace(string(body)), `{"error":"no healthy workers","balancer":"web"}`; got != want {
			t.Fatalf("%s: body %s, want %s", when, got, want)
		}
	}
	waitFor(t, "sick worker checked", func() bool { return sick.checks.Load() >= 1 })
	check("one unhealthy worker")
	b.SetBackends(nil)
	check("no workers")
	if h := sick.hits.Load(); h != 0 {
		t.Fatalf("unhealthy worker got %d requests", h)
	}
}

func TestStartPortTakenBindsNothing(t *testing.T) {
	// Hold the third of three free ports, and ask for 3 listeners from the first.
	first := freePorts(t, 3)
	taken, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(first+2))
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	cfg := testConfig()
	cfg.Port, cfg.Listeners = first, 3
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Start(context.Background())
	want := "127.0.0.1:" + strconv.Itoa(first+2)
	if !errors.Is(err, ErrListen) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Start() = %v, want ErrListen naming %s", err, want)
	}
	t.Logf("Start: %v", err)
	for _, p := range []int{first, first + 1} {
		if !portFree(p) {
			t.Errorf("port %d still bound after failed Start", p)
		}
	}
	if a := b.Addrs(); len(a) != 0 {
		t.Errorf("Addrs() = %v after failed Start", a)
	}
}

func portFree(port int) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func TestStartTwiceAndAfterShutdown(t *testing.T) {
	b, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); !errors.Is(err, ErrAlreadyStarted) {
		t.Fatalf("second Start = %v, want ErrAlreadyStarted", err)
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Shutdown = %v, want ErrClosed", err)
	}
}

func TestWaitIdleWaitsForInFlightRequestOfRemovedWorker(t *testing.T) {
	g := newGate()
	defer g.open()
	w := newWorker(t, "a", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		g.wait()
		_, _ = io.WriteString(rw, "done")
	}))
	b := startBalancer(t, testConfig(), w)
	c := testClient()

	reqDone := make(chan string, 1)
	go func() {
		resp, err := c.Get(baseURL(b) + "/slow")
		if err != nil {
			reqDone <- err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		reqDone <- fmt.Sprintf("%d %s", resp.StatusCode, body)
	}()
	waitFor(t, "request in flight", func() bool { return b.InFlight() == 1 })

	b.SetBackends(nil)
	if code, _ := get(t, c, baseURL(b)+"/new"); code != http.StatusServiceUnavailable {
		t.Fatalf("new request after removal: status %d, want 503", code)
	}

	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err := b.WaitIdle(short, "a")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitIdle with a request in flight = %v, want deadline exceeded", err)
	}

	idle := make(chan error, 1)
	var released sync.WaitGroup
	released.Add(1)
	go func() {
		err := b.WaitIdle(context.Background(), "a")
		released.Wait() // WaitIdle must not return before the gate opens
		idle <- err
	}()
	select {
	case err := <-idle:
		t.Fatalf("WaitIdle returned %v before the request finished", err)
	case <-time.After(100 * time.Millisecond):
	}
	g.open()
	released.Done()
	if err := <-idle; err != nil {
		t.Fatalf("WaitIdle: %v", err)
	}
	if got := <-reqDone; got != "200 done" {
		t.Fatalf("in-flight request got %q, want 200 done", got)
	}
	if err := b.WaitIdle(context.Background(), "nobody"); !errors.Is(err, ErrUnknownBackend) {
		t.Fatalf("WaitIdle(unknown) = %v", err)
	}
	if s := statsOf(t, b, "a"); !s.Removed || s.Success != 1 {
		t.Fatalf("removed worker stats %+v, want removed with 1 success", s)
	}
}

func TestMarkDownTakesWorkerOutAtOnce(t *testing.T) {
	ws := []*worker{newWorker(t, "a", nil), newWorker(t, "b", nil)}
	cfg := testConfig()
	cfg.Health.Interval, cfg.Health.Timeout = time.Hour, time.Second // only the first check runs
	b := startBalancer(t, cfg, ws...)
	b.MarkDown("a")
	c := testClient()
	for range 10 {
		get(t, c, baseURL(b)+"/")
	}
	if h := ws[0].hits.Load(); h != 0 {
		t.Fatalf("marked-down worker got %d requests", h)
	}
	if h := ws[1].hits.Load(); h != 10 {
		t.Fatalf("remaining worker got %d of 10 requests", h)
	}
}

func TestShutdownDrainsInFlightRequests(t *testing.T) {
	g := newGate()
	defer g.open()
	w := newWorker(t, "a", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		g.wait()
		_, _ = io.WriteString(rw, "done")
	}))
	b, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.SetBackends([]Backend{w.backend()})
	waitFor(t, "worker healthy", func() bool { return healthyCount(b) == 1 })
	addr := b.Addrs()[0]

	reqDone := make(chan int, 1)
	go func() {
		resp, err := testClient().Get("http://" + addr + "/slow")
		if err != nil {
			reqDone <- 0
			return
		}
		resp.Body.Close()
		reqDone <- resp.StatusCode
	}()
	waitFor(t, "request in flight", func() bool { return b.InFlight() == 1 })

	shut := make(chan error, 1)
	go func() { shut <- b.Shutdown(context.Background()) }()
	waitFor(t, "listener closed", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	g.open()
	if code := <-reqDone; code != http.StatusOK {
		t.Fatalf("in-flight request: status %d, want 200", code)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestShutdownDeadlineCutsDrainShort(t *testing.T) {
	g := newGate()
	defer g.open()
	w := newWorker(t, "a", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { g.wait() }))
	cfg := testConfig()
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.SetBackends([]Backend{w.backend()})
	waitFor(t, "worker healthy", func() bool { return healthyCount(b) == 1 })
	go func() {
		if resp, err := testClient().Get(baseURL(b) + "/hang"); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, "request in flight", func() bool { return b.InFlight() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := b.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
}

func TestLocalHandlersAreNotProxiedNorCounted(t *testing.T) {
	w := newWorker(t, "a", nil)
	cfg := testConfig()
	cfg.Listeners = 2
	cfg.Local = map[string]http.Handler{
		"/worker/stats": http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(rw, "local")
		}),
	}
	b := startBalancer(t, cfg, w)
	c := testClient()
	for _, a := range b.Addrs() {
		if code, body := get(t, c, "http://"+a+"/worker/stats"); code != 200 || body != "local" {
			t.Fatalf("%s/worker/stats = %d %q", a, code, body)
		}
	}
	if code, body := get(t, c, baseURL(b)+"/worker/stats/x"); code != 200 || body != "ok a" {
		t.Fatalf("/worker/stats/x = %d %q, want proxied", code, body)
	}
	s := statsOf(t, b, "a")
	if s.Success+s.Failed != 1 || w.hits.Load() != 1 {
		t.Fatalf("counted %d attempts, worker saw %d; want 1 and 1", s.Success+s.Failed, w.hits.Load())
	}
}

// TestRemovedBackendsThatNeverServedAreForgotten pins unbounded growth: the
// balancer kept every backend ever seen, so a crash-looping group (a new
// worker id every few seconds) grew it, and InFlight walked them all,
// for ever. A removed backend that served keeps its counts (only them).
func TestRemovedBackendsThatNeverServedAreForgotten(t *testing.T) {
	w := newWorker(t, "served", nil)
	b := startBalancer(t, testConfig(), w)
	get(t, testClient(), baseURL(b)+"/")
	dead := Backend{Address: "127.0.0.1:1"}
	for i := range 100 {
		dead.ID = fmt.Sprintf("crashloop-%d", i)
		b.SetBackends([]Backend{w.backend(), dead})
	}
	b.SetBackends(nil)
	stats := b.Stats()
	if len(stats) != 1 || stats[0].ID != "served" || stats[0].Success != 1 || !stats[0].Removed {
		t.Fatalf("stats after 100 crash-looping workers and the served one removed: %+v; want only the served one, removed, with its 1 attempt", stats)
	}
	if err := b.WaitIdle(context.Background(), "crashloop-7"); !errors.Is(err, ErrUnknownBackend) {
		t.Errorf("WaitIdle on a forgotten backend: %v, want ErrUnknownBackend", err)
	}
	if n := len(b.backends.Load().all); n != 0 {
		t.Errorf("%d backends kept after every one was removed and idle", n)
	}
	// Back again under the same id: its counts go on from the old ones, in
	// one entry (and one /metrics series).
	b.SetBackends([]Backend{w.backend()})
	waitFor(t, "the worker back in the pool", func() bool { return len(*b.pool.Load()) == 1 })
	get(t, testClient(), baseURL(b)+"/")
	if stats := b.Stats(); len(stats) != 1 || stats[0].Success != 2 || stats[0].Removed {
		t.Errorf("stats after the served worker came back and served again: %+v; want one entry with 2 attempts", stats)
	}
	if problems, err := promtestutil.CollectAndLint(b.Collector()); err != nil || len(problems) > 0 {
		t.Errorf("metrics after the worker came back: %v %v", err, problems)
	}
}

// TestMovedBackendDropsItsOldConnections pins a bug: a worker ID moved to a
// new address (another process) kept sending requests to the old one: the
// connection of a request in flight at the move went back into the pool
// and was reused for good, while health checks tested the new address.
func TestMovedBackendDropsItsOldConnections(t *testing.T) {
	release := make(chan struct{})
	old := newWorker(t, "w", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.WriteString(rw, "old")
	}))
	moved := newWorker(t, "w", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(rw, "new")
	}))
	b := startBalancer(t, testConfig(), old)
	c := testClient()
	done := make(chan string, 1)
	go func() {
		resp, err := c.Get(baseURL(b) + "/slow")
		if err != nil {
			done <- err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		done <- string(body)
	}()
	waitFor(t, "the slow request in flight", func() bool { return b.InFlight() == 1 })
	b.SetBackends([]Backend{moved.backend()})
	waitFor(t, "the moved worker healthy", func() bool { return healthyCount(b) == 1 })
	close(release)
	if got := <-done; got != "old" {
		t.Fatalf("the request in flight at the move got %q, want the old worker's answer", got)
	}
	for i := range 5 {
		resp, err := c.Get(baseURL(b) + "/x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if string(body) != "new" {
			t.Errorf("request %d after the move answered by %q, want the new address's", i, body)
		}
	}
}

// TestOldIdleConnectionsAreClosedUnderSteadyTraffic pins a leak: the pool
// reuses its newest connection first and checked IdleConnTimeout only on
// the one it took, so after a burst the older ones sat idle for good (as
// CLOSE_WAIT sockets once the worker closed them) while traffic went on.
func TestOldIdleConnectionsAreClosedUnderSteadyTraffic(t *testing.T) {
	var open atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/burst" {
			<-release
		}
		_, _ = io.WriteString(rw, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	cfg := testConfig()
	cfg.Health.Interval = -1 // health checks open connections of their own
	cfg.IdleConnTimeout = 300 * time.Millisecond
	b := started(t, cfg)
	b.SetBackends([]Backend{{ID: "w", Address: strings.TrimPrefix(srv.URL, "http://")}})
	c := testClient()
	get := func(path string) {
		resp, err := c.Get(baseURL(b) + path)
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { get("/burst") })
	}
	waitFor(t, "4 requests in flight", func() bool { return b.InFlight() == 4 })
	close(release)
	wg.Wait()
	t.Logf("after the burst: %d worker connections open", open.Load())
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		get("/steady")
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, "the burst's idle connections closed", func() bool { return open.Load() <= 2 })
}

package balancer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// killableWorker is a worker whose server can be killed abruptly: its
// listener and every connection, active ones included, close at once, as
// when the process is SIGKILLed.
type killableWorker struct {
	id   string
	addr string
	srv  *http.Server
	hits atomic.Int64
}

func newKillableWorker(t *testing.T, id string) *killableWorker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &killableWorker{id: id, addr: ln.Addr().String()}
	k.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			k.hits.Add(1)
		}
		_, _ = io.WriteString(w, "ok "+id)
	})}
	go func() { _ = k.srv.Serve(ln) }()
	t.Cleanup(func() { _ = k.srv.Close() })
	return k
}

func (k *killableWorker) kill() { _ = k.srv.Close() }

// TestWorkerCrashCausesNoClientErrors kills one of three workers in the
// middle of a steady GET load.
func TestWorkerCrashCausesNoClientErrors(t *testing.T) {
	ks := []*killableWorker{newKillableWorker(t, "a"), newKillableWorker(t, "b"), newKillableWorker(t, "c")}
	cfg := testConfig()
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	var bs []Backend
	for _, k := range ks {
		bs = append(bs, Backend{ID: k.id, Address: k.addr})
	}
	b.SetBackends(bs)
	waitFor(t, "workers healthy", func() bool { return healthyCount(b) == 3 })

	c := testClient()
	url := baseURL(b) + "/api/v1/hello"
	jobs := make(chan struct{})
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range jobs {
				sent.Add(1)
				resp, err := c.Get(url)
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "ok ") {
						err = fmt.Errorf("status %d body %q", resp.StatusCode, body)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	victim := ks[1]
	var before WorkerStats
	tick := time.NewTicker(5 * time.Millisecond) // ~200 requests per second
	start := time.Now()
	killed := false
	for time.Since(start) < 2*time.Second {
		<-tick.C
		if !killed && time.Since(start) >= time.Second {
			before = statsOf(t, b, victim.id)
			victim.kill()
			killed = true
		}
		jobs <- struct{}{}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()

	after := statsOf(t, b, victim.id)
	failedAfter := after.Failed - before.Failed
	t.Logf("sent %d requests, %d client errors; victim: %d in flight at kill, %d failed attempts after, healthy=%v; retries %d",
		sent.Load(), failed.Load(), before.InFlight, failedAfter, after.Healthy, b.retries.Load())
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d client-visible errors, first: %v", n, firstErr.Load())
	}
	// One failed attempt ejects the worker; requests already in flight to
	// it when it died fail too (and are retried).
	if limit := 1 + uint64(before.InFlight); failedAfter > limit {
		t.Fatalf("victim had %d failed attempts after it died, want at most %d", failedAfter, limit)
	}
	if failedAfter == 0 {
		t.Fatalf("victim had no failed attempt after it died: it was not used, the test proves nothing")
	}
	if after.Healthy {
		t.Fatalf("dead worker still counted healthy")
	}
}

func fiveHundred(hits *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits != nil && r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			if string(body) == "payload" {
				hits.Add(1)
			}
		}
		w.WriteHeader(http.StatusInternalServerError)
	})
}

func TestRetryOn5xxForGET(t *testing.T) {
	bad := newWorker(t, "bad", fiveHundred(nil))
	good := newWorker(t, "good", nil)
	cfg := testConfig()
	cfg.RetryOn = []string{RetryOn5xx}
	cfg.Eject5xx = -1 // keep the bad worker in the pool
	b := startBalancer(t, cfg, bad, good)
	c := testClient()
	for i := range 20 {
		if code, body := get(t, c, baseURL(b)+"/"); code != http.StatusOK || body != "ok good" {
			t.Fatalf("GET %d = %d %q, want the 500 retried on the good worker", i, code, body)
		}
	}
	if bad.hits.Load() != 10 || good.hits.Load() != 20 {
		t.Fatalf("bad saw %d, good saw %d; want 10 and 20", bad.hits.Load(), good.hits.Load())
	}
	if s := statsOf(t, b, "bad"); s.Failed != 10 || s.Success != 0 {
		t.Fatalf("bad worker stats %+v, want 10 failed", s)
	}
}

func TestNo5xxRetryForPOSTWithBody(t *testing.T) {
	var badBodies, goodBodies atomic.Int64
	bad := newWorker(t, "bad", fiveHundred(&badBodies))
	good := newWorker(t, "good", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if string(body) == "payload" {
			goodBodies.Add(1)
		}
	}))
	cfg := testConfig()
	cfg.RetryOn = []string{RetryOn5xx}
	cfg.Eject5xx = -1
	b := startBalancer(t, cfg, bad, good)
	c := testClient()
	var fives int64
	for range 20 {
		resp, err := c.Post(baseURL(b)+"/", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusInternalServerError {
			fives++
		}
	}
	if badBodies.Load() == 0 || fives != badBodies.Load() {
		t.Fatalf("bad worker got %d bodies, client saw %d 500s; want equal and > 0", badBodies.Load(), fives)
	}
	if total := badBodies.Load() + goodBodies.Load(); total != 20 {
		t.Fatalf("workers received %d bodies for 20 POSTs: a body was replayed", total)
	}
}

func TestNo5xxRetryWithoutRetryOn(t *testing.T) {
	bad := newWorker(t, "bad", fiveHundred(nil))
	cfg := testConfig()
	cfg.Eject5xx = -1
	b := startBalancer(t, cfg, bad, newWorker(t, "good", nil))
	c := testClient()
	fives := 0
	for range 10 {
		if code, _ := get(t, c, baseURL(b)+"/"); code == http.StatusInternalServerError {
			fives++
		}
	}
	if fives != 5 {
		t.Fatalf("client saw %d 500s of 10, want 5 (no retry_on)", fives)
	}
}

// TestRetryPOSTWhoseConnectionFailed: a dial failure means the body was
// never sent, so even a POST goes to another worker, body intact.
func TestRetryPOSTWhoseConnectionFailed(t *testing.T) {
	var bodies atomic.Int64
	good := newWorker(t, "good", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if string(body) == "payload" {
			bodies.Add(1)
		}
	}))
	cfg := testConfig()
	cfg.Health.Interval = -1 // no active checks: the dead worker starts healthy
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	b.SetBackends([]Backend{{ID: "dead", Address: freeAddr(t)}, good.backend()})
	c := testClient()
	for i := range 10 {
		resp, err := c.Post(baseURL(b)+"/", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %d: status %d", i, resp.StatusCode)
		}
	}
	if bodies.Load() != 10 {
		t.Fatalf("good worker received %d intact bodies, want 10", bodies.Load())
	}
	if s := statsOf(t, b, "dead"); s.Failed != 1 || s.Healthy {
		t.Fatalf("dead worker stats %+v, want 1 failed attempt and ejected", s)
	}
}

// TestNoRetryAfterBodySent: a worker that read the body and then dropped
// the connection may have acted on it; the POST is not replayed, while an
// idempotent GET without a body is.
func TestNoRetryAfterBodySent(t *testing.T) {
	var dropped atomic.Int64
	dropper := newWorker(t, "dropper", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		dropped.Add(1)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	var goodPosts atomic.Int64
	good := newWorker(t, "good", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			goodPosts.Add(1)
		}
		_, _ = io.WriteString(w, "ok good")
	}))
	cfg := testConfig()
	cfg.EjectAfterConnFailures = -1 // keep the dropper in the pool
	b := startBalancer(t, cfg, dropper, good)
	c := testClient()

	var gateway int64
	for range 10 {
		resp, err := c.Post(baseURL(b)+"/", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusBadGateway {
			gateway++
		}
	}
	if dropped.Load() != 5 || gateway != 5 || goodPosts.Load() != 5 {
		t.Fatalf("dropper got %d POSTs, good %d, client saw %d 502s; want 5, 5, 5",
			dropped.Load(), goodPosts.Load(), gateway)
	}
	for i := range 10 {
		if code, body := get(t, c, baseURL(b)+"/"); code != http.StatusOK || body != "ok good" {
			t.Fatalf("GET %d = %d %q, want retried on the good worker", i, code, body)
		}
	}
}

// TestRetryBudgetStopsRetryStorm: with every worker failing, retries are
// capped by the budget instead of doubling the load.
func TestRetryBudgetStopsRetryStorm(t *testing.T) {
	ws := []*worker{newWorker(t, "a", fiveHundred(nil)), newWorker(t, "b", fiveHundred(nil))}
	cfg := testConfig()
	cfg.RetryOn = []string{RetryOn5xx}
	cfg.Eject5xx = -1
	cfg.RetryBudget = 0.05
	cfg.RetryMinPerSec = -1
	b := startBalancer(t, cfg, ws...)
	c := testClient()
	const n = 200
	for range n {
		get(t, c, baseURL(b)+"/")
	}
	attempts := ws[0].hits.Load() + ws[1].hits.Load()
	t.Logf("%d requests, %d attempts, %d retries, %d denied", n, attempts, b.retries.Load(), b.budgetDeny.Load())
	if r := b.retries.Load(); r > n*5/100 || r == 0 {
		t.Fatalf("%d retries for %d requests, want 1..%d (5%% budget)", r, n, n*5/100)
	}
	if attempts != n+int64(b.retries.Load()) {
		t.Fatalf("%d attempts, want %d requests + %d retries", attempts, n, b.retries.Load())
	}
}

// TestPassiveEjectionNeverEmptiesPool: when every worker is ejected, the
// balancer keeps sending to them rather than answering 503.
func TestPassiveEjectionNeverEmptiesPool(t *testing.T) {
	ws := []*worker{newWorker(t, "a", fiveHundred(nil)), newWorker(t, "b", fiveHundred(nil))}
	cfg := testConfig()
	cfg.Eject5xx = 1
	b := startBalancer(t, cfg, ws...)
	c := testClient()
	for i := range 10 {
		if code, _ := get(t, c, baseURL(b)+"/"); code != http.StatusInternalServerError {
			t.Fatalf("request %d: status %d, want the workers' 500", i, code)
		}
	}
	if a, bb := statsOf(t, b, "a"), statsOf(t, b, "b"); a.Healthy || bb.Healthy {
		t.Fatalf("workers not ejected: %+v %+v", a, bb)
	}
}

func TestEjectionExpires(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	flaky := newWorker(t, "flaky", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	cfg := testConfig()
	cfg.Eject5xx = 2
	// Long enough that the 4 requests below surely fall inside the ejection
	// on a busy machine.
	cfg.EjectBase = 1500 * time.Millisecond
	b := startBalancer(t, cfg, flaky, newWorker(t, "good", nil))
	c := testClient()
	for range 4 {
		get(t, c, baseURL(b)+"/")
	}
	if statsOf(t, b, "flaky").Healthy {
		t.Fatal("flaky worker not ejected after 2 consecutive 5xx")
	}
	failing.Store(false)
	hits := flaky.hits.Load()
	for range 4 {
		get(t, c, baseURL(b)+"/")
	}
	if flaky.hits.Load() != hits {
		t.Fatal("ejected worker got traffic")
	}
	waitFor(t, "ejection over", func() bool { return statsOf(t, b, "flaky").Healthy })
	// The pool is rebuilt by the ejection's timer, a moment after the
	// period ends: wait for the first request to reach the worker again,
	// then round robin must share evenly.
	waitFor(t, "traffic back on the worker", func() bool {
		get(t, c, baseURL(b)+"/")
		return flaky.hits.Load() > hits
	})
	hits = flaky.hits.Load()
	for range 4 {
		get(t, c, baseURL(b)+"/")
	}
	if flaky.hits.Load() != hits+2 {
		t.Fatalf("worker back from ejection got %d of 4 requests, want 2", flaky.hits.Load()-hits)
	}
}

func TestForwardingAndHopByHopHeaders(t *testing.T) {
	var got atomic.Pointer[http.Request]
	echo := newWorker(t, "echo", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Clone(context.Background()))
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "secret")
		w.Header().Set("X-Kept", "yes")
		_, _ = io.WriteString(w, "ok")
	}))
	for _, trust := range []bool{false, true} {
		t.Run(fmt.Sprintf("trust=%v", trust), func(t *testing.T) {
			cfg := testConfig()
			cfg.TrustForwardedHeaders = trust
			b := startBalancer(t, cfg, echo)
			req, _ := http.NewRequest(http.MethodGet, baseURL(b)+"/h?q=1", nil)
			req.Host = "app.example"
			req.Header.Set("X-Forwarded-For", "203.0.113.9")
			req.Header.Set("Connection", "X-Custom-Hop")
			req.Header.Set("X-Custom-Hop", "1")
			req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
			req.Header.Set("Via", "1.0 upstream")
			resp, err := testClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			in := got.Load()
			wantXFF := "127.0.0.1"
			if trust {
				wantXFF = "203.0.113.9, 127.0.0.1"
			}
			for h, want := range map[string]string{
				"X-Forwarded-For":   wantXFF,
				"X-Forwarded-Proto": "http",
				"X-Forwarded-Host":  "app.example",
				"Via":               "1.0 upstream, 1.1 golb",
			} {
				if v := strings.Join(in.Header.Values(h), ", "); v != want {
					t.Errorf("worker saw %s %q, want %q", h, v, want)
				}
			}
			if in.Host != "app.example" || in.URL.RawQuery != "q=1" {
				t.Errorf("worker saw host %q query %q", in.Host, in.URL.RawQuery)
			}
			for _, h := range []string{"X-Custom-Hop", "Proxy-Authorization"} {
				if v := in.Header.Get(h); v != "" {
					t.Errorf("hop-by-hop %s reached the worker: %q", h, v)
				}
			}
			if v := resp.Header.Get("X-Resp-Hop"); v != "" {
				t.Errorf("hop-by-hop X-Resp-Hop reached the client: %q", v)
			}
			if resp.Header.Get("X-Kept") != "yes" || resp.Header.Get("Via") != "1.1 golb" {
				t.Errorf("client saw X-Kept %q Via %q", resp.Header.Get("X-Kept"), resp.Header.Get("Via"))
			}
		})
	}
}

func TestStreamedResponseArrivesInChunks(t *testing.T) {
	next := make(chan struct{})
	stream := newWorker(t, "stream", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		for i := range 3 {
			if i > 0 {
				select {
				case <-next: // the client has read the previous chunk
				case <-r.Context().Done():
					return
				}
			}
			fmt.Fprintf(w, "chunk %d\n", i)
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}))
	b := startBalancer(t, testConfig(), stream)
	resp, err := testClient().Get(baseURL(b) + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		// The worker writes chunk i only after we read chunk i-1: a
		// proxy that buffered the answer would deadlock here.
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading chunk %d: %v", i, err)
		}
		if want := fmt.Sprintf("chunk %d\n", i); line != want {
			t.Fatalf("got %q, want %q", line, want)
		}
		if i < 2 {
			next <- struct{}{}
		}
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("after 3 chunks: %v, want EOF", err)
	}
}

// TestHungWorkerAnswers504AtResponseHeaderTimeout pins the hung-worker
// defect: a worker that accepts a request and never answers (a SIGSTOPped
// process) held the client for the whole default 60 s. The client gets a 504
// with the JSON body once ResponseHeaderTimeout passes, the attempt counts
// as failed, and the worker is not ejected (a slow worker is not a dead
// one). The worker's handler returns only when the balancer gives up on it
// or after the client has its answer, so a balancer that waited for the
// worker would fail this test on the client's own timeout.
func TestHungWorkerAnswers504AtResponseHeaderTimeout(t *testing.T) {
	answered := newGate()
	defer answered.open()
	hung := newWorker(t, "hung", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-answered.ch:
		case <-r.Context().Done(): // the balancer closed the connection
		}
	}))
	cfg := testConfig()
	cfg.ResponseHeaderTimeout = 300 * time.Millisecond
	b := startBalancer(t, cfg, hung)

	start := time.Now()
	resp, err := testClient().Get(baseURL(b) + "/api/v1/hello")
	if err != nil {
		t.Fatalf("GET through a hung worker: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	answered.open()
	t.Logf("answered %d after %v", resp.StatusCode, took.Round(time.Millisecond))

	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504", resp.StatusCode)
	}
	if got, want := strings.TrimSpace(string(body)), `{"error":"worker timed out","balancer":"web"}`; got != want {
		t.Errorf("body %s, want %s", got, want)
	}
	if took < cfg.ResponseHeaderTimeout {
		t.Errorf("answered after %v, before the %v timeout", took, cfg.ResponseHeaderTimeout)
	}
	s := statsOf(t, b, "hung")
	if s.Failed != 1 || s.Success != 0 || hung.hits.Load() != 1 {
		t.Errorf("counted %d failed, %d succeeded, worker saw %d requests; want 1, 0, 1", s.Failed, s.Success, hung.hits.Load())
	}
	if !s.Healthy {
		t.Error("a worker that timed out once was ejected")
	}
}

// TestClientGivingUpIsNotAWorkerFailure pins a defect: a request the client
// abandoned before the worker answered was counted as the worker's failed
// attempt, in /worker/stats and /metrics alike.
func TestClientGivingUpIsNotAWorkerFailure(t *testing.T) {
	slow := newWorker(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "late")
	}))
	b := startBalancer(t, testConfig(), slow)
	impatient := &http.Client{Timeout: 100 * time.Millisecond}
	for range 3 {
		if resp, err := impatient.Get(baseURL(b) + "/api/v1/hello"); err == nil {
			resp.Body.Close()
			t.Fatalf("the impatient client got an answer: %d", resp.StatusCode)
		}
	}
	waitFor(t, "the abandoned attempts to end", func() bool { return statsOf(t, b, "slow").InFlight == 0 })
	if s := statsOf(t, b, "slow"); s.Failed != 0 || s.Success != 0 {
		t.Fatalf("after 3 requests the client gave up on: %d failed, %d successful attempts; want none counted", s.Failed, s.Success)
	}
	if s := statsOf(t, b, "slow"); !s.Healthy {
		t.Errorf("the worker is no longer healthy: %+v", s)
	}
}

// TestBusyBalancerWaitsWithoutBuffers runs requests with the balancer in
// its many-connections mode, where a connection waits for the client's
// next request and for the worker's answer before taking a read buffer:
// fast and slow answers, keep-alive and a client that gives up all behave
// as in the normal mode.
func TestBusyBalancerWaitsWithoutBuffers(t *testing.T) {
	old := busyConns.Swap(0)
	t.Cleanup(func() { busyConns.Store(old) })
	slow := newWorker(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-time.After(300 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		_, _ = io.WriteString(w, "ok "+r.URL.Path)
	}))
	b := startBalancer(t, testConfig(), slow)
	c := testClient()
	for _, p := range []string{"/fast", "/slow", "/fast", "/slow"} {
		if code, body := get(t, c, baseURL(b)+p); code != http.StatusOK || body != "ok "+p {
			t.Fatalf("GET %s: %d %q", p, code, body)
		}
	}
	impatient := &http.Client{Timeout: 100 * time.Millisecond}
	if resp, err := impatient.Get(baseURL(b) + "/slow"); err == nil {
		resp.Body.Close()
		t.Fatal("the impatient client got an answer")
	}
	waitFor(t, "the abandoned attempt to end", func() bool { return statsOf(t, b, "slow").InFlight == 0 })
	if s := statsOf(t, b, "slow"); s.Success != 4 || s.Failed != 0 {
		t.Fatalf("counts %+v, want 4 successful attempts and the abandoned one not counted", s)
	}
}

// TestStalledBodyIsDroppedWhenItsClientLeaves pins a bug: a worker that
// sent its head and part of its body, then stalled without closing, held
// the request for ever after its client hung up (the relay waited with no
// deadline and never looked at the client): in flight stayed 1, so
// WaitIdle and a drain ran to their deadlines.
func TestStalledBodyIsDroppedWhenItsClientLeaves(t *testing.T) {
	stall := make(chan struct{})
	w := newWorker(t, "w", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(rw, "ten bytes!")
		rw.(http.Flusher).Flush()
		<-stall
	}))
	t.Cleanup(func() { close(stall) }) // before the worker's Close, which waits for it
	b := startBalancer(t, testConfig(), w)
	conn, err := net.Dial("tcp", b.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(conn, "GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	part := make([]byte, 10)
	if _, err := io.ReadFull(resp.Body, part); err != nil {
		t.Fatalf("reading the first 10 bytes: %v", err)
	}
	left := time.Now()
	_ = conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitIdle(ctx, "w"); err != nil {
		t.Fatalf("the worker stays busy after its client left: %v", err)
	}
	t.Logf("the stalled attempt ended %v after its client left", time.Since(left).Round(time.Millisecond))
}

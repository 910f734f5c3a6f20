package balancer

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// holdConfig is testConfig with holding on.
func holdConfig(max int, timeout time.Duration, onHold func()) Config {
	cfg := testConfig()
	cfg.Hold = Hold{Max: max, Timeout: timeout, OnHold: onHold}
	return cfg
}

type result struct {
	status     int
	body       string
	retryAfter string
	err        error
	took       time.Duration
}

func do(c *http.Client, req *http.Request) result {
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return result{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, body: string(body), retryAfter: resp.Header.Get("Retry-After"), err: err, took: time.Since(start)}
}

// TestHeldRequestsGoOutWhenAWorkerIsReady: requests (one with a body) that
// arrive at an empty pool wait, OnHold fires at once, and all are
// answered 200 by the first worker to pass its health check.
func TestHeldRequestsGoOutWhenAWorkerIsReady(t *testing.T) {
	var holds atomic.Int64
	b := startBalancer(t, holdConfig(100, 20*time.Second, func() { holds.Add(1) }))
	w := newWorker(t, "w1", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(rw, "ok "+string(body))
	}))
	c := testClient()
	const n = 20
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var req *http.Request
			if i == 0 {
				req, _ = http.NewRequest("POST", baseURL(b)+"/x", strings.NewReader("held body"))
			} else {
				req, _ = http.NewRequest("GET", baseURL(b)+"/x", nil)
			}
			results[i] = do(c, req)
		})
	}
	waitFor(t, "20 requests held", func() bool { return b.Held() == n })
	if holds.Load() < n {
		t.Errorf("OnHold called %d times, want %d", holds.Load(), n)
	}
	added := time.Now()
	b.SetBackends([]Backend{w.backend()})
	wg.Wait()
	for i, r := range results {
		if r.err != nil || r.status != 200 {
			t.Errorf("request %d: %d %q %v", i, r.status, r.body, r.err)
		}
	}
	if got := results[0].body; got != "ok held body" {
		t.Errorf("the held POST's worker saw %q, want its body", got)
	}
	t.Logf("held requests answered %s after the worker was added", time.Since(added).Round(time.Millisecond))
	if b.Held() != 0 {
		t.Errorf("Held() = %d after all were answered", b.Held())
	}
	if s := statsOf(t, b, "w1"); s.LatencySum > 5*time.Second {
		t.Errorf("the worker was charged %s of latency: the hold is not its time", s.LatencySum)
	}
}

// TestHoldBounds: with Max 3, the fourth request is answered 503 at once,
// and the three held ones 503 after Timeout, each with Retry-After and a
// JSON reason.
func TestHoldBounds(t *testing.T) {
	timeout := 700 * time.Millisecond
	b := startBalancer(t, holdConfig(3, timeout, nil))
	c := testClient()
	results := make([]result, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", baseURL(b)+"/x", nil)
			results[i] = do(c, req)
		})
	}
	waitFor(t, "3 held", func() bool { return b.Held() == 3 })
	req, _ := http.NewRequest("GET", baseURL(b)+"/x", nil)
	over := do(c, req)
	if over.status != 503 || over.retryAfter == "" || !strings.Contains(over.body, "hold_max") {
		t.Errorf("request over hold_max: %d Retry-After %q %q", over.status, over.retryAfter, over.body)
	}
	if over.took > timeout {
		t.Errorf("request over hold_max took %s: it must not wait", over.took)
	}
	wg.Wait()
	for i, r := range results {
		if r.status != 503 || r.retryAfter == "" || !strings.Contains(r.body, "hold_timeout") {
			t.Errorf("held request %d: %d Retry-After %q %q %v", i, r.status, r.retryAfter, r.body, r.err)
		}
		if r.took < timeout {
			t.Errorf("held request %d answered after %s, before hold_timeout %s", i, r.took, timeout)
		}
	}
	t.Logf("over hold_max answered in %s; held ones after %s", over.took.Round(time.Millisecond), results[0].took.Round(time.Millisecond))
	if to, ref := b.HoldTimeouts(); to != 3 || ref != 1 {
		t.Errorf("HoldTimeouts() = %d timeouts, %d refused; want 3, 1", to, ref)
	}
}

// TestHeldRequestsAnsweredAtShutdown: Shutdown answers held requests 503
// with a reason, never a reset connection.
func TestHeldRequestsAnsweredAtShutdown(t *testing.T) {
	b, err := New(holdConfig(10, time.Minute, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := testClient()
	results := make([]result, 5)
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", baseURL(b)+"/x", nil)
			results[i] = do(c, req)
		})
	}
	waitFor(t, "5 held", func() bool { return b.Held() == 5 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	wg.Wait()
	for i, r := range results {
		if r.err != nil || r.status != 503 || !strings.Contains(r.body, "shutting down") {
			t.Errorf("held request %d at shutdown: %d %q %v", i, r.status, r.body, r.err)
		}
	}
}

// TestHeldClientGoneFreesItsPlace: a client that hangs up while held is
// no longer counted.
func TestHeldClientGoneFreesItsPlace(t *testing.T) {
	b := startBalancer(t, holdConfig(10, time.Minute, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", baseURL(b)+"/x", nil)
		_, err := testClient().Do(req)
		done <- err
	}()
	waitFor(t, "1 held", func() bool { return b.Held() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("client error %v", err)
	}
	waitFor(t, "the place freed", func() bool { return b.Held() == 0 })
}

func TestHoldOffAnswers503AtOnce(t *testing.T) {
	b := startBalancer(t, testConfig())
	status, body := get(t, testClient(), baseURL(b)+"/x")
	if status != 503 || !strings.Contains(body, "no healthy workers") {
		t.Errorf("%d %q", status, body)
	}
	if b.Held() != 0 {
		t.Errorf("Held() = %d with holding off", b.Held())
	}
}

func TestHoldValidate(t *testing.T) {
	cfg := holdConfig(-1, 0, nil)
	if _, err := New(cfg); !errors.Is(err, ErrInvalidHold) {
		t.Errorf("Max -1: %v, want ErrInvalidHold", err)
	}
}

// holdN sends n GETs to b in the background; wait returns their results.
func holdN(b *Balancer, n int) (wait func() []result) {
	c := testClient()
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", baseURL(b)+"/x", nil)
			results[i] = do(c, req)
		})
	}
	return func() []result { wg.Wait(); return results }
}

// TestSetHoldTurnsHoldingOn: a balancer started without holding holds
// requests once SetHold turns it on (OnHold fires), and they are served by
// the first ready worker; Config().Hold is the new one.
func TestSetHoldTurnsHoldingOn(t *testing.T) {
	b := startBalancer(t, testConfig())
	if status, _ := get(t, testClient(), baseURL(b)+"/x"); status != 503 {
		t.Fatalf("before SetHold: %d, want 503 at once", status)
	}
	var holds atomic.Int64
	if err := b.SetHold(Hold{Max: 10, Timeout: 20 * time.Second, OnHold: func() { holds.Add(1) }}); err != nil {
		t.Fatal(err)
	}
	if got := b.Config().Hold; got.Max != 10 || got.Timeout != 20*time.Second {
		t.Errorf("Config().Hold = %+v", got)
	}
	wait := holdN(b, 4)
	waitFor(t, "4 held", func() bool { return b.Held() == 4 })
	w := newWorker(t, "w1", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(rw, "ok") }))
	b.SetBackends([]Backend{w.backend()})
	for i, r := range wait() {
		if r.err != nil || r.status != 200 {
			t.Errorf("request %d: %d %q %v", i, r.status, r.body, r.err)
		}
	}
	if holds.Load() != 4 {
		t.Errorf("OnHold called %d times, want 4", holds.Load())
	}
}

// TestSetHoldOffReleasesHeldRequests: turning holding off answers the
// requests held with no ready worker 503 at once, with a reason, as
// Shutdown does; the next request is answered 503 without waiting.
func TestSetHoldOffReleasesHeldRequests(t *testing.T) {
	b := startBalancer(t, holdConfig(10, time.Minute, nil))
	wait := holdN(b, 3)
	waitFor(t, "3 held", func() bool { return b.Held() == 3 })
	start := time.Now()
	if err := b.SetHold(Hold{}); err != nil {
		t.Fatal(err)
	}
	for i, r := range wait() {
		if r.err != nil || r.status != 503 || r.retryAfter == "" || !strings.Contains(r.body, "turned off") {
			t.Errorf("held request %d: %d Retry-After %q %q %v", i, r.status, r.retryAfter, r.body, r.err)
		}
	}
	t.Logf("held requests answered %v after holding was turned off", time.Since(start).Round(time.Millisecond))
	// A held request leaves the count once its answer is written.
	waitFor(t, "none held", func() bool { return b.Held() == 0 })
	if status, body := get(t, testClient(), baseURL(b)+"/x"); status != 503 || !strings.Contains(body, "no healthy workers") {
		t.Errorf("after SetHold off: %d %q", status, body)
	}
}

// TestSetHoldNewTimeoutCountsFromTheStart: a held request takes the new
// Timeout, counted from when it began to wait, not from SetHold.
func TestSetHoldNewTimeoutCountsFromTheStart(t *testing.T) {
	b := startBalancer(t, holdConfig(10, time.Minute, nil))
	wait := holdN(b, 2)
	waitFor(t, "2 held", func() bool { return b.Held() == 2 })
	time.Sleep(1500 * time.Millisecond)
	if err := b.SetHold(Hold{Max: 10, Timeout: 1600 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	for i, r := range wait() {
		if r.status != 503 || !strings.Contains(r.body, "1.6s (hold_timeout)") {
			t.Errorf("held request %d: %d %q %v", i, r.status, r.body, r.err)
		}
		// 1.6s from the start, not 1.5s + 1.6s; with a busy machine's margin.
		if r.took < 1600*time.Millisecond || r.took > 2700*time.Millisecond {
			t.Errorf("held request %d answered after %v, want about 1.6s", i, r.took)
		}
		t.Logf("held request %d answered after %v", i, r.took.Round(time.Millisecond))
	}
	if to, _ := b.HoldTimeouts(); to != 2 {
		t.Errorf("timeouts = %d, want 2", to)
	}
	if err := b.SetHold(Hold{Max: -1}); !errors.Is(err, ErrInvalidHold) {
		t.Errorf("SetHold(Max -1) = %v, want ErrInvalidHold", err)
	}
	if b.Config().Hold.Max != 10 {
		t.Errorf("an invalid SetHold changed Hold to %+v", b.Config().Hold)
	}
}

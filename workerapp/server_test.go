package workerapp

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

func serveRecorded(h http.Handler, method, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

func TestHandlerRoutes(t *testing.T) {
	s := NewWithLogger(Config{Port: 1, WorkerID: `w"1`}, quietLogger(t)) // a quote must stay valid JSON
	h := s.Handler()
	tests := []struct {
		method, path string
		status       int
		field, value string // a field of the JSON body and its expected value ("" = any non-empty)
		allow        string
	}{
		{"GET", "/api/v1/hello", 200, "message", `hello from container: w"1`, ""},
		{"HEAD", "/api/v1/hello", 200, "", "", ""},
		{"GET", "/healthz", 200, "status", "ok", ""},
		{"GET", "/", 404, "error", "not found: /", ""},
		{"GET", "/api/v1/hello/", 404, "error", "", ""},
		{"GET", "/worker/stats", 404, "error", "", ""},
		{"POST", "/api/v1/hello", 405, "error", "", "GET, HEAD"},
		{"DELETE", "/healthz", 405, "error", "", "GET, HEAD"},
	}
	for _, tt := range tests {
		rec := serveRecorded(h, tt.method, tt.path)
		if rec.Code != tt.status {
			t.Errorf("%s %s: status %d, want %d", tt.method, tt.path, rec.Code, tt.status)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", tt.method, tt.path, ct)
		}
		if got := rec.Header().Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, got, tt.allow)
		}
		if tt.field == "" {
			continue
		}
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Errorf("%s %s: body %q is not a JSON object: %v", tt.method, tt.path, rec.Body, err)
			continue
		}
		if got := body[tt.field]; got == "" || (tt.value != "" && got != tt.value) {
			t.Errorf("%s %s: %s = %q, want %q", tt.method, tt.path, tt.field, got, tt.value)
		}
	}
	// The hello body is exactly the seed's shape.
	rec := serveRecorded(h, "GET", PathHello)
	if got, want := rec.Body.String(), `{"message":"hello from container: w\"1"}`; got != want {
		t.Errorf("hello body %s, want %s", got, want)
	}
}

func TestHelloFailureIsJSON500(t *testing.T) {
	s := NewWithLogger(Config{Port: 1, FailureRate: 1}, quietLogger(t))
	rec := serveRecorded(s.Handler(), "GET", PathHello)
	var body map[string]string
	if rec.Code != 500 || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body["error"] == "" {
		t.Errorf("failure answer: %d %q, want 500 with a JSON error", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("failure Content-Type %q", ct)
	}
}

func TestHealthzAnswers503WhenDraining(t *testing.T) {
	s := NewWithLogger(Config{Port: 1}, quietLogger(t))
	if rec := serveRecorded(s.Handler(), "GET", PathHealthz); rec.Code != 200 {
		t.Fatalf("healthz before draining: %d", rec.Code)
	}
	s.draining.Store(true)
	rec := serveRecorded(s.Handler(), "GET", PathHealthz)
	if rec.Code != http.StatusServiceUnavailable || rec.Body.String() != `{"status":"draining"}` {
		t.Errorf("healthz while draining: %d %s, want 503", rec.Code, rec.Body)
	}
	// Hello still answers while draining: in-flight and grace-period requests complete.
	if rec := serveRecorded(s.Handler(), "GET", PathHello); rec.Code != 200 {
		t.Errorf("hello while draining: %d", rec.Code)
	}
}

// A client that goes away stops the delay: the handler returns at once, writes nothing.
func TestHelloStopsSleepingWhenClientGoesAway(t *testing.T) {
	s := NewWithLogger(Config{Port: 1, AvgDelay: time.Hour}, quietLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest("GET", PathHello, nil).WithContext(ctx)
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() { s.Handler().ServeHTTP(rec, req); close(done) }()
	waitFor(t, "hello in flight", 10*time.Second, func() bool { return s.inflight.Load() == 1 })
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("handler still sleeping 10s after the request was cancelled")
	}
	if rec.Body.Len() != 0 {
		t.Errorf("cancelled request wrote %q", rec.Body)
	}
	if n := s.inflight.Load(); n != 0 {
		t.Errorf("in-flight count %d after the handler returned", n)
	}
}

func TestRunDrainsInFlightRequest(t *testing.T) {
	t.Parallel()
	// avg 3s: the request sleeps at least 1.5s, ample time to see the listener close first.
	s := NewWithLogger(Config{Port: freePort(t), WorkerID: "drain-1", AvgDelay: 3 * time.Second}, quietLogger(t))
	r := startRun(t, s)

	slow := getAsync(r.base + PathHello)
	waitFor(t, "slow request in flight", 10*time.Second, func() bool { return s.inflight.Load() == 1 })
	r.cancel()

	// Draining: /healthz says 503 and new connections are refused, while the slow
	// request is still being served.
	waitFor(t, "listener closed", 10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", r.addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	if rec := serveRecorded(s.Handler(), "GET", PathHealthz); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("healthz while draining: %d, want 503", rec.Code)
	}
	if n := s.inflight.Load(); n != 1 {
		t.Errorf("in-flight count %d when the listener closed, want 1 (slow request finished too early?)", n)
	}

	res := <-slow
	if res.err != nil || res.status != 200 || !strings.Contains(res.body, "hello from container: drain-1") {
		t.Errorf("in-flight request during drain: status %d body %q err %v, want 200", res.status, res.body, res.err)
	}
	if err := r.wait(t, 20*time.Second); err != nil {
		t.Errorf("Run after a clean drain: %v, want nil", err)
	}
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatalf("port not released after Run returned: %v", err)
	}
	ln.Close()
}

// With an accept grace the worker keeps serving new connections, /healthz 503, so that
// a balancer's health check sees it draining before the listener closes.
func TestRunAcceptGraceServesHealthz503(t *testing.T) {
	t.Parallel()
	s := NewWithLogger(Config{Port: freePort(t), AcceptGrace: 3 * time.Second}, quietLogger(t))
	r := startRun(t, s)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	r.cancel()
	waitFor(t, "healthz 503 over the listener", 10*time.Second, func() bool {
		resp, err := client.Get(r.base + PathHealthz)
		if err != nil {
			t.Fatalf("healthz during the accept grace: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	status, msg, err := getJSON(client, r.base+PathHello)
	if err != nil || status != 200 || msg["message"] == "" {
		t.Errorf("hello during the accept grace: %d %v %v, want 200", status, msg, err)
	}
	if err := r.wait(t, 20*time.Second); err != nil {
		t.Errorf("Run after the grace: %v, want nil", err)
	}
}

func TestRunDrainTimeoutCutsRequests(t *testing.T) {
	t.Parallel()
	s := NewWithLogger(Config{Port: freePort(t), AvgDelay: time.Hour, DrainTimeout: 300 * time.Millisecond}, quietLogger(t))
	r := startRun(t, s)
	stuck := getAsync(r.base + PathHello)
	waitFor(t, "request in flight", 10*time.Second, func() bool { return s.inflight.Load() == 1 })
	r.cancel()
	err := r.wait(t, 20*time.Second)
	if !errors.Is(err, ErrDrainTimeout) {
		t.Errorf("Run with a request outliving the drain: %v, want ErrDrainTimeout", err)
	}
	if res := <-stuck; res.err == nil {
		t.Errorf("cut-off request got an answer: %d %q", res.status, res.body)
	}
	// The handler noticed the closed connection and stopped sleeping.
	waitFor(t, "handler returned", 10*time.Second, func() bool { return s.inflight.Load() == 0 })
}

func TestRunPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	s := NewWithLogger(Config{Port: port}, quietLogger(t))
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("Run on a busy port: %v, want EADDRINUSE", err)
		}
		if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
			t.Errorf("error %v does not name the address %s", err, busy.Addr())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run on a busy port still running after 10s")
	}
}

func TestRunRejectsBadConfigAndSecondCall(t *testing.T) {
	if err := New(Config{Port: 1, FailureRate: 2}).Run(context.Background()); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Run with rate 2: %v, want ErrInvalidConfig", err)
	}
	s := NewWithLogger(Config{Port: freePort(t)}, quietLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Errorf("Run with a cancelled ctx: %v, want nil", err)
	}
	if err := s.Run(context.Background()); !errors.Is(err, ErrAlreadyStarted) {
		t.Errorf("second Run: %v, want ErrAlreadyStarted", err)
	}
}

package balancer

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// busyForTest puts the balancers of a test in their many-connections mode.
func busyForTest(t *testing.T) {
	old := busyConns.Swap(-1)
	t.Cleanup(func() { busyConns.Store(old) })
}

// stacks is every goroutine's stack trace.
func stacks() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestSlowAnswerWaitsOnAFreshGoroutine checks that a busy balancer's
// request whose answer is late waits on a goroutine of its own, with
// none of the proxy path's frames on its stack (suspend.go), and that
// the request and the connection then go on as usual: the answer
// relayed, the next request on the same connection served, each attempt
// counted once.
func TestSlowAnswerWaitsOnAFreshGoroutine(t *testing.T) {
	busyForTest(t)
	gate := newGate()
	w := newWorker(t, "w", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			gate.wait()
		}
		_, _ = io.WriteString(rw, "ok "+r.URL.Path)
	}))
	t.Cleanup(gate.open)
	b := startBalancer(t, testConfig(), w)
	conn, err := net.Dial("tcp", b.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	_, _ = io.WriteString(conn, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "the attempt to wait suspended", func() bool {
		s := stacks()
		return strings.Contains(s, "(*clientConn).awaitAnswer") && !strings.Contains(s, "(*clientConn).responseHead")
	})
	gate.open()
	for i, path := range []string{"/slow", "/fast"} {
		if i > 0 {
			_, _ = io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok "+path {
			t.Fatalf("GET %s: %d %q", path, resp.StatusCode, body)
		}
	}
	if s := statsOf(t, b, "w"); s.Success != 2 || s.Failed != 0 || s.InFlight != 0 {
		t.Fatalf("stats %+v, want 2 successful attempts", s)
	}
}

// TestSuspendedAttemptIsRetriedElsewhere checks that a suspended attempt
// whose worker then breaks the connection is retried on the other worker,
// from the goroutine that resumed it, and that the broken attempt is
// the first worker's failure.
func TestSuspendedAttemptIsRetriedElsewhere(t *testing.T) {
	busyForTest(t)
	breaks := newWorker(t, "breaks", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		time.Sleep(150 * time.Millisecond)
		conn, _, err := rw.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	good := newWorker(t, "good", nil)
	cfg := testConfig()
	cfg.EjectAfterConnFailures = -1 // a break must not eject "breaks" before the test looks
	b := startBalancer(t, cfg, breaks, good)
	c := testClient()
	for i := 0; breaks.hits.Load() == 0; i++ {
		if i == 10 {
			t.Fatal("10 requests, none tried on the worker that breaks")
		}
		if code, body := get(t, c, baseURL(b)+"/x"); code != 200 || body != "ok good" {
			t.Fatalf("GET /x: %d %q, want 200 from the good worker", code, body)
		}
	}
	if s := statsOf(t, b, "breaks"); s.Failed == 0 || s.Success != 0 {
		t.Fatalf("the worker that broke its answers: %+v, want its attempts failed", s)
	}
}

// TestKeptAliveConnectionIdlesOnAFreshGoroutine checks that a busy
// balancer's connection waiting for its next request does so on a
// goroutine of its own, outside readHead, and then serves it; and that
// the idle timeout still closes it.
func TestKeptAliveConnectionIdlesOnAFreshGoroutine(t *testing.T) {
	busyForTest(t)
	w := newWorker(t, "w", nil)
	cfg := testConfig()
	cfg.IdleTimeout = time.Second
	b := startBalancer(t, cfg, w)
	conn, err := net.Dial("tcp", b.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i := 0; i < 3; i++ {
		_, _ = io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok w" {
			t.Fatalf("request %d: %d %q", i+1, resp.StatusCode, body)
		}
		waitFor(t, "the connection to idle suspended", func() bool {
			s := stacks()
			return strings.Contains(s, "(*clientConn).awaitRequest") && !strings.Contains(s, "(*clientConn).readHead")
		})
	}
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the idle timeout: read %d bytes, %v; want the connection closed", n, err)
	}
	t.Logf("closed %s after its last answer (idle timeout 1s)", time.Since(start).Round(10*time.Millisecond))
	if s := statsOf(t, b, "w"); s.Success != 3 {
		t.Fatalf("stats %+v, want 3 successful attempts", s)
	}
}

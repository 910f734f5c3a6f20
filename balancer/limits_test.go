package balancer

// Tests of the process-wide limits on what clients can make golb hold:
// client connections, and what happens when file descriptors run out.
// Not parallel: they lower package-wide limits.

import (
	"net/http"
	"syscall"
	"testing"
	"time"
)

// settledClientConns waits for the client connections of earlier tests to
// finish closing and returns how many remain.
func settledClientConns(t *testing.T) int64 {
	t.Helper()
	prev := clientConns.Load()
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		n := clientConns.Load()
		if n == prev {
			return n
		}
		prev = n
	}
	return prev
}

// TestClientConnectionsBeyondTheLimitWait pins descriptor exhaustion by
// clients: golb accepted every connection, so a client opening thousands
// could leave it no descriptor to dial a worker (each such dial failure
// was charged to the worker and ejected it), open the stats database or
// serve the admin API. Past maxClientConns a listener accepts no more
// until one closes; the next connection waits in the kernel's backlog and
// is served then.
func TestClientConnectionsBeyondTheLimitWait(t *testing.T) {
	w, _ := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	old := maxClientConns.Load()
	defer maxClientConns.Store(old)
	maxClientConns.Store(settledClientConns(t) + 2)

	idle1, idle2 := dialH1(t, b), dialH1(t, b)
	waitFor(t, "two connections accepted", func() bool { return clientConns.Load() >= maxClientConns.Load() })
	third := dialH1(t, b) // the kernel completes the handshake; golb does not accept it yet
	third.send("GET /third HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = third.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := third.br.Peek(1); err == nil {
		t.Fatalf("a connection over the limit was served at once: %q", n)
	}
	_ = idle1.c.Close()
	start := time.Now()
	if resp, got := third.read(http.MethodGet); resp.StatusCode != http.StatusOK || got != echoOf("a", "/third", "") {
		t.Errorf("the waiting connection, once a slot freed: %d %q", resp.StatusCode, got)
	}
	t.Logf("served %v after a slot freed", time.Since(start).Round(time.Millisecond))
	_ = idle2.c.Close()
}

// TestOutOfDescriptorsIsNotTheWorkersFailure pins an ejection: a dial that
// failed because golb itself had no file descriptor left (EMFILE) counted
// as the worker's connection failure, so every worker was ejected at
// once. It is golb's own 503; the worker is neither charged nor ejected.
func TestOutOfDescriptorsIsNotTheWorkersFailure(t *testing.T) {
	w, _ := newH1Worker(t, "a")
	cfg := safetyConfig()
	cfg.Health.Interval = -1 // health checks open connections of their own
	cfg.EjectAfterConnFailures = 1
	b := startBalancer(t, cfg, w)
	base := settledClientConns(t)
	conn := dialH1(t, b) // no pooled worker connection yet: the request must dial
	waitFor(t, "the connection accepted", func() bool { return clientConns.Load() > base })

	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	tight := lim
	tight.Cur = 0 // no new descriptor (the limit bounds their numbers), open ones work
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &tight); err != nil {
		t.Fatal(err)
	}
	conn.send("GET /starved HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, got := conn.read(http.MethodGet)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Logf("with no descriptor to spare: %d %q", resp.StatusCode, got)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a dial without descriptors: %d, want golb's own 503", resp.StatusCode)
	}
	if s := statsOf(t, b, "a"); s.Failed != 0 || !s.Healthy {
		t.Errorf("worker charged for golb's lack of descriptors: %d failed, healthy=%v", s.Failed, s.Healthy)
	}
	fresh := dialH1(t, b)
	fresh.send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := fresh.read(http.MethodGet); resp.StatusCode != http.StatusOK {
		t.Errorf("after descriptors came back: %d, want 200 from the worker still in the pool", resp.StatusCode)
	}
}

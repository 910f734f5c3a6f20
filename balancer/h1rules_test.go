//go:build linux

package balancer

// The HTTP/1.1 engine against the smaller rules of RFC 9110 and RFC 9112
// (found by a review, 2026-12-02): each test is named for a defect and
// says in one comment what went wrong. Raw clients and workers, as in
// h1hostile_test.go and h1hostile_worker_test.go. Linux only: one test
// sets socket options with syscall.

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// headRecorder is a worker that keeps the raw bytes of every request it is
// sent (head and body, as they came on the wire) other than its health
// checks, and answers each with 200 "ok".
type headRecorder struct {
	ln   net.Listener
	mu   sync.Mutex
	reqs []string
}

func newHeadRecorder(t *testing.T) *headRecorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &headRecorder{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.serve(c)
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return r
}

func (r *headRecorder) serve(c net.Conn) {
	defer c.Close()
	var raw bytes.Buffer
	// golb and the health checker send one request at a time on a
	// connection, so what the tee saw since the last answer is one request.
	br := bufio.NewReader(io.TeeReader(c, &raw))
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		if req.URL.Path != "/healthz" {
			r.mu.Lock()
			r.reqs = append(r.reqs, raw.String())
			r.mu.Unlock()
		}
		raw.Reset()
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
	}
}

// only returns the one request the worker was sent, failing otherwise.
func (r *headRecorder) only(t *testing.T) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) != 1 {
		t.Fatalf("the worker saw %d requests, want 1: %q", len(r.reqs), r.reqs)
	}
	return r.reqs[0]
}

// startRecorder starts a balancer over rec and waits until it is healthy.
func startRecorder(t *testing.T, rec *headRecorder) *Balancer {
	t.Helper()
	b := started(t, safetyConfig())
	b.SetBackends([]Backend{{ID: "rec", Address: rec.ln.Addr().String()}})
	waitFor(t, "the recording worker healthy", func() bool { return healthyCount(b) == 1 })
	return b
}

// readRawHead reads one response's status line and header section as
// they came, leaving the body unread.
func readRawHead(t *testing.T, conn *h1Conn) (string, textproto.MIMEHeader) {
	t.Helper()
	_ = conn.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	tp := textproto.NewReader(conn.br)
	line, err := tp.ReadLine()
	if err != nil {
		t.Fatalf("reading the status line: %v", err)
	}
	hdr, err := tp.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("reading the header section after %q: %v", line, err)
	}
	return line, hdr
}

// TestH1RuleHTTP10UpgradeIsIgnored: an HTTP/1.0 request's Upgrade reaches
// the worker (golb rewrites the request to HTTP/1.1) and its 101 is relayed
// to the HTTP/1.0 client, which RFC 9110 §7.8 (a server MUST ignore
// Upgrade in an HTTP/1.0 request) and §15.2 (no 1xx to an HTTP/1.0
// client) forbid.
func TestH1RuleHTTP10UpgradeIsIgnored(t *testing.T) {
	t.Parallel()
	w := newWorker(t, "a", upgradeEcho("srv:hello\n"))
	b := startBalancer(t, safetyConfig(), w)
	conn := dialH1(t, b)
	conn.send("GET /ws HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	_ = conn.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(conn.br, &http.Request{Method: http.MethodGet})
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		t.Errorf("an HTTP/1.0 client got %s and a tunnel; want its Upgrade ignored (the worker's answer to a plain GET, here 400)", resp.Status)
	}
}

// TestH1RuleNoContentLengthOn204: a worker's 204 that names a
// Content-Length reaches the client with it (responseHead keeps the length
// of every bodiless answer of status >= 200), where RFC 9110 §8.6 says a
// server MUST NOT send Content-Length in a 204; a client or cache that
// trusts it waits for a body that never comes.
func TestH1RuleNoContentLengthOn204(t *testing.T) {
	t.Parallel()
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		_, _ = bw.WriteString("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")
		return true
	})
	b := startRaw(t, safetyConfig(), rw)
	conn := dialH1(t, b)
	conn.send("GET /nc HTTP/1.1\r\nHost: x\r\n\r\n")
	line, hdr := readRawHead(t, conn)
	if !strings.HasPrefix(line, "HTTP/1.1 204") {
		t.Fatalf("status line %q, want the worker's 204", line)
	}
	if cl := hdr.Values("Content-Length"); len(cl) != 0 {
		t.Errorf("a 204 reached the client with Content-Length %q, want none", cl)
	}
}

// TestH1RuleZeroContentLengthReachesTheWorker: a POST with
// "Content-Length: 0" reaches the worker with no Content-Length at all
// (ParseRequest turns it into "no body" and requestHead frames only
// bodies), though RFC 9110 §8.6 says a request with a method that defines
// content SHOULD carry it; servers that require it (HTTP.sys, many API
// front ends) answer 411 Length Required.
func TestH1RuleZeroContentLengthReachesTheWorker(t *testing.T) {
	t.Parallel()
	rec := newHeadRecorder(t)
	b := startRecorder(t, rec)
	conn := dialH1(t, b)
	conn.send("POST /empty HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	if resp, body := conn.read(http.MethodPost); resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("got %d %q, want the worker's 200 ok", resp.StatusCode, body)
	}
	if req := rec.only(t); !strings.Contains(strings.ToLower(req), "\r\ncontent-length: 0\r\n") {
		t.Errorf("the worker got the POST without its Content-Length: 0:\n%s", req)
	}
}

// TestH1RuleFragmentInTargetRefused: a request-target whose path carries a
// fragment ("http://h.example/p#frag", "/p#frag") is forwarded as it came
// and the connection goes on; the README promises 400 for an absolute
// target with a fragment (only "http://h#frag", where the '#' lands in the
// Host check, is refused), and RFC 9112 §3.2 allows no '#' in any
// request-target form.
func TestH1RuleFragmentInTargetRefused(t *testing.T) {
	t.Parallel()
	runRejects(t, safetyConfig, []h1Reject{
		{name: "absolute-form-path", req: "GET http://h.example/p#frag HTTP/1.1\r\nHost: x\r\n\r\n"},
		{name: "origin-form", req: "GET /p#frag HTTP/1.1\r\nHost: x\r\n\r\n"},
	})
}

// TestH1RuleUnderscoreForwardedHeadersAreNotPassedOn: the client's own
// X-Forwarded-For is dropped, but "X_Forwarded_For" (and _Host, _Proto)
// reach the worker as they came; CGI-style servers (PHP, WSGI, Rack) map
// both spellings to HTTP_X_FORWARDED_FOR, so a client forges the address
// golb vouches for (nginx drops such names by default for this reason).
func TestH1RuleUnderscoreForwardedHeadersAreNotPassedOn(t *testing.T) {
	t.Parallel()
	rec := newHeadRecorder(t)
	b := startRecorder(t, rec)
	conn := dialH1(t, b)
	conn.send("GET /u HTTP/1.1\r\nHost: x\r\nX_Forwarded_For: 6.6.6.6\r\nX_Forwarded_Host: evil.example\r\nX_Forwarded_Proto: https\r\n\r\n")
	if resp, _ := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	req := rec.only(t)
	for _, forged := range []string{"6.6.6.6", "evil.example", "X_Forwarded_Proto"} {
		if strings.Contains(req, forged) {
			t.Errorf("the worker got the client's forged %q:\n%s", forged, req)
		}
	}
}

// TestH1RuleTrailerFieldIsKept: golb relays trailer sections both ways
// but drops the Trailer header field that announces them (hopByHop lists
// it; RFC 9110 §7.6.1 does not, and §6.6.2 says a sender SHOULD send it
// with trailers), so a recipient that looks for announced trailers, or
// must know of them before the body, finds none.
func TestH1RuleTrailerFieldIsKept(t *testing.T) {
	t.Parallel()
	t.Run("response", func(t *testing.T) {
		t.Parallel()
		rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nTrailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n")
			return true
		})
		b := startRaw(t, safetyConfig(), rw)
		conn := dialH1(t, b)
		conn.send("GET /t HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, hdr := readRawHead(t, conn); hdr.Get("Trailer") != "X-Checksum" {
			t.Errorf("the answer's head has Trailer %q, want the worker's X-Checksum (header %v)", hdr.Get("Trailer"), hdr)
		}
	})
	t.Run("request", func(t *testing.T) {
		t.Parallel()
		rec := newHeadRecorder(t)
		b := startRecorder(t, rec)
		conn := dialH1(t, b)
		conn.send("POST /t HTTP/1.1\r\nHost: x\r\nTrailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n")
		if resp, _ := conn.read(http.MethodPost); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want 200", resp.StatusCode)
		}
		req := rec.only(t)
		head, _, _ := strings.Cut(req, "\r\n\r\n")
		if !strings.Contains(req, "X-Checksum: abc") {
			t.Fatalf("the trailer itself did not reach the worker:\n%s", req)
		}
		if !strings.Contains(head, "\r\nTrailer: X-Checksum") {
			t.Errorf("the worker got the trailer but not the Trailer field announcing it:\n%s", req)
		}
	})
}

// TestH1RuleTunnelEndsWhenItsClientResets: once an upgraded connection's
// client is gone (a reset), splice half-closes the worker's side and then
// waits, with no deadline, for the worker to close: a worker that keeps
// its side open holds the tunnel's goroutines, both sockets and the
// in-flight count (so a drain, WaitIdle) for as long as it likes.
func TestH1RuleTunnelEndsWhenItsClientResets(t *testing.T) {
	t.Parallel()
	stop := make(chan struct{})
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		_, _ = bw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = bw.Flush()
		<-stop // ignores golb's FIN: keeps its side open, sends nothing
		return false
	})
	b := startRaw(t, safetyConfig(), rw)
	t.Cleanup(func() { close(stop) }) // before the balancer's Shutdown (cleanups run last first)
	conn := dialH1(t, b)
	conn.send("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if resp, _ := conn.read(http.MethodGet); resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("got %d, want 101", resp.StatusCode)
	}
	if n := b.InFlight(); n != 1 {
		t.Fatalf("in flight with the tunnel open: %d, want 1", n)
	}
	_ = conn.c.(*net.TCPConn).SetLinger(0)
	_ = conn.c.Close() // a reset: the client is gone for good
	deadline := time.Now().Add(5 * time.Second)
	for b.InFlight() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := b.InFlight(); n != 0 {
		t.Errorf("5s after the client reset its upgraded connection the tunnel is still open (in flight %d), want it torn down", n)
	}
}

// TestH1RuleWorkerResetDuringHeadWriteIsNotTheClients408: with a streamed
// body, a worker that resets the connection while golb still writes the
// request head is taken for a worker giving up on a slow body (attempt
// reads r.bodyStart, which sendBody has not set yet: the zero time, "over
// 1 s ago"): the client gets 408 "request body not received in time", it
// is counted a client error, and the worker is neither charged nor
// ejected.
func TestH1RuleWorkerResetDuringHeadWriteIsNotTheClients408(t *testing.T) {
	t.Parallel()
	// A worker that advertises a small MSS and receive buffer and reads
	// nothing: golb's send buffer fills within a 200 KiB head, and the
	// write of the head waits until the worker resets.
	lc := net.ListenConfig{Control: func(network, address string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 536); serr == nil {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				time.Sleep(300 * time.Millisecond)
				_ = c.(*net.TCPConn).SetLinger(0)
				_ = c.Close()
			}()
		}
	}()
	cfg := safetyConfig()
	cfg.MaxHeaderBytes = 256 << 10
	cfg.Health.Interval = -1 // healthy at once: the worker answers nothing
	cfg.EjectAfterConnFailures = -1
	b := started(t, cfg)
	b.SetBackends([]Backend{{ID: "rst", Address: ln.Addr().String()}})
	waitFor(t, "the worker a candidate", func() bool { return healthyCount(b) == 1 })

	conn := dialH1(t, b)
	conn.send("POST /up HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 200<<10) + "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	resp := conn.closedOrAnswered(time.Now().Add(10 * time.Second))
	waitFor(t, "no request in flight", func() bool { return b.InFlight() == 0 })
	s := statsOf(t, b, "rst")
	status := 0 // the connection closed without an answer
	if resp != nil {
		status = resp.StatusCode
	}
	t.Logf("answer %d; worker failed %d; client errors %d", status, s.Failed, b.clientErrors.Load())
	if status == http.StatusRequestTimeout {
		t.Errorf("a client that sent its whole body at once got 408 for the worker's reset, want 502")
	}
	if s.Failed != 1 || b.clientErrors.Load() != 0 {
		t.Errorf("worker charged %d failed attempts, client errors %d; want 1 and 0 (the worker reset the connection)", s.Failed, b.clientErrors.Load())
	}
}

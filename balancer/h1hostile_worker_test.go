package balancer

// Hostile-worker probes: a worker's answer is untrusted input too. Bad
// status lines, CL+TE, 1xx floods, bytes after the body: none may reach a
// client as something else, or desynchronise a pooled connection.

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawWorker is a TCP worker that answers in exact bytes: health checks
// with 200, every other request with what answer writes. It counts the
// connections that carried a proxied request.
type rawWorker struct {
	id       string
	ln       net.Listener
	conns    atomic.Int64 // connections whose first request was proxied
	requests atomic.Int64
	// answer writes the response to req (its body not yet read) and
	// reports whether to keep serving the connection.
	answer func(req *http.Request, c net.Conn, bw *bufio.Writer) bool
}

func newRawWorker(t *testing.T, id string, answer func(req *http.Request, c net.Conn, bw *bufio.Writer) bool) *rawWorker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rw := &rawWorker{id: id, ln: ln, answer: answer}
	done := make(chan struct{})
	var live atomic.Int64
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			live.Add(1)
			go func() {
				defer live.Add(-1)
				rw.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	return rw
}

func (rw *rawWorker) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	bw := bufio.NewWriter(c)
	for first := true; ; first = false {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.URL.Path == "/healthz" {
			_, _ = io.Copy(io.Discard, req.Body)
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			if bw.Flush() != nil {
				return
			}
			continue
		}
		if first {
			rw.conns.Add(1)
		}
		rw.requests.Add(1)
		keep := rw.answer(req, c, bw)
		if bw.Flush() != nil || !keep {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
	}
}

func (rw *rawWorker) backend() Backend { return Backend{ID: rw.id, Address: rw.ln.Addr().String()} }

// startRaw starts a balancer over raw workers, all healthy.
func startRaw(t *testing.T, cfg Config, rws ...*rawWorker) *Balancer {
	t.Helper()
	b := started(t, cfg)
	bs := make([]Backend, len(rws))
	for i, rw := range rws {
		bs[i] = rw.backend()
	}
	b.SetBackends(bs)
	waitFor(t, "raw workers healthy", func() bool { return healthyCount(b) == len(rws) })
	return b
}

// TestHostileWorkerBytesAfterBodyNeverReachTheNextClient pins a response
// desync: a worker that writes more than its Content-Length, a moment
// after the body, leaves those bytes on a connection golb has pooled; the
// next request on it reads them as its answer. Here they are a whole
// forged response, which a second client received as its own.
func TestHostileWorkerBytesAfterBodyNeverReachTheNextClient(t *testing.T) {
	t.Parallel()
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		if req.URL.Path == "/first" {
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
			_ = bw.Flush()
			time.Sleep(50 * time.Millisecond)
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
			return true
		}
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
		return true
	})
	b := startRaw(t, safetyConfig(), rw)
	one := dialH1(t, b)
	one.send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, got := one.read(http.MethodGet); resp.StatusCode != http.StatusOK || got != "first" {
		t.Fatalf("first: %d %q", resp.StatusCode, got)
	}
	time.Sleep(200 * time.Millisecond) // the forged bytes reach the pooled connection
	two := dialH1(t, b)
	two.send("GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, got := two.read(http.MethodGet); got != "real" {
		t.Errorf("second client got %d %q, want the worker's answer to it, %q", resp.StatusCode, got, "real")
	}
}

// TestHostileWorkerHeadAnswerWithBodyDesyncs is the same desync through a
// HEAD: a worker that sends a body after a HEAD answer (its framing says
// there is none), the body arriving after the head.
func TestHostileWorkerHeadAnswerWithBodyDesyncs(t *testing.T) {
	t.Parallel()
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		if req.Method == http.MethodHead {
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 37\r\n\r\n")
			_ = bw.Flush()
			time.Sleep(50 * time.Millisecond)
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			return true
		}
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
		return true
	})
	b := startRaw(t, safetyConfig(), rw)
	conn := dialH1(t, b)
	conn.send("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := conn.read(http.MethodHead); resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD: %d", resp.StatusCode)
	}
	time.Sleep(200 * time.Millisecond)
	conn.send("GET /g HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, got := conn.read(http.MethodGet); got != "real" {
		t.Errorf("GET after HEAD: %d %q, want %q", resp.StatusCode, got, "real")
	}
}

// TestHostileWorkerBytesAfterBodyInSameReadCloseTheConnection: extra bytes
// that arrive with the body are seen (putConn) and the connection is not
// pooled: the next request goes on a new one and gets its own answer.
func TestHostileWorkerBytesAfterBodyInSameReadCloseTheConnection(t *testing.T) {
	t.Parallel()
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		if req.URL.Path == "/first" {
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
			return true
		}
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
		return true
	})
	b := startRaw(t, safetyConfig(), rw)
	conn := dialH1(t, b)
	for _, c := range []struct{ path, want string }{{"/first", "first"}, {"/second", "real"}, {"/third", "real"}} {
		conn.send("GET " + c.path + " HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, got := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK || got != c.want {
			t.Errorf("%s: %d %q, want 200 %q", c.path, resp.StatusCode, got, c.want)
		}
	}
	if n := rw.conns.Load(); n != 2 {
		t.Errorf("%d worker connections, want 2 (the one with extra bytes is not reused)", n)
	}
}

// TestHostileWorkerMalformedAnswersAre502: a worker's broken status line
// or ambiguous framing is its own failed attempt, answered 502 (the
// worker is charged, the client is not blamed), and the connection to it
// is not reused.
func TestHostileWorkerMalformedAnswersAre502(t *testing.T) {
	t.Parallel()
	for name, answer := range map[string]string{
		"cl-and-te":           "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"cl-twice":            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
		"cl-negative":         "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
		"status-glued":        "HTTP/1.1 200OK\r\nContent-Length: 0\r\n\r\n",
		"status-2-digits":     "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
		"status-4-digits":     "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
		"status-below-100":    "HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
		"version-junk":        "HTTX/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"version-2":           "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
		"http-0.9":            "hello, no head at all\r\n\r\n",
		"reason-ctl":          "HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n",
		"bare-lf":             "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
		"obs-fold":            "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
		"te-chunked-not-last": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
		"switching-unasked":   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
				_, _ = bw.WriteString(answer)
				return true
			})
			b := startRaw(t, safetyConfig(), rw)
			conn := dialH1(t, b)
			conn.send("GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp, got := conn.read(http.MethodGet); resp.StatusCode != http.StatusBadGateway {
				t.Errorf("%d %q, want 502", resp.StatusCode, abbrev(got))
			}
			waitFor(t, "the attempt counted", func() bool { s := statsOf(t, b, "w"); return s.InFlight == 0 && s.Failed == 1 })
			if b.clientErrors.Load() != 0 {
				t.Errorf("%d client errors counted for a worker's fault", b.clientErrors.Load())
			}
		})
	}
}

// TestHostileWorkerBrokenBodyClosesTheClient: once the head went out, a
// worker whose body breaks off (closed early, bad chunk framing) can only
// be reported by closing the client connection: the client must see a
// truncated body and a close, never a next answer on the same connection.
// A break found before anything was flushed to the client was a bare
// close too; it is a 502.
func TestHostileWorkerBrokenBodyClosesTheClient(t *testing.T) {
	t.Parallel()
	for name, answer := range map[string]string{
		"closed-mid-length":  "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
		"closed-mid-chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
		"bad-chunk-size":     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
		"chunk-data-overrun": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
		"bad-trailer":        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nNoColon\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
				_, _ = bw.WriteString(answer)
				_ = bw.Flush()
				time.Sleep(20 * time.Millisecond)
				return false
			})
			b := startRaw(t, safetyConfig(), rw)
			conn := dialH1(t, b)
			conn.send("GET /x HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
			_ = conn.c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(conn.br, &http.Request{Method: http.MethodGet})
			switch {
			case err != nil:
				// A break before golb flushed anything is a 502.
				t.Errorf("no head, the connection closed: %v", err)
			case resp.StatusCode == http.StatusBadGateway:
				t.Logf("the break came before anything was flushed: 502")
				_, _ = io.Copy(io.Discard, resp.Body)
			default:
				if body, err := io.ReadAll(resp.Body); err == nil {
					t.Errorf("the broken body %q ended cleanly, want an error (truncation)", body)
				}
			}
			conn.expectClosed()
			waitFor(t, "the attempt counted", func() bool { s := statsOf(t, b, "w"); return s.InFlight == 0 && s.Failed >= 1 })
		})
	}
}

// TestHostileWorkerInterimAnswers: a 103 Early Hints reaches an HTTP/1.1
// client before the final answer and is dropped for an HTTP/1.0 one; a
// worker's own 100 Continue is dropped; the connection stays in step.
func TestHostileWorkerInterimAnswers(t *testing.T) {
	t.Parallel()
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		_, _ = bw.WriteString("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
		_ = bw.Flush()
		time.Sleep(10 * time.Millisecond)
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
		return true
	})
	b := startRaw(t, safetyConfig(), rw)
	conn := dialH1(t, b)
	conn.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := conn.read(http.MethodGet); resp.StatusCode != http.StatusEarlyHints || resp.Header.Get("Link") == "" {
		t.Errorf("first answer %d Link %q, want 103 with the Link", resp.StatusCode, resp.Header.Get("Link"))
	}
	if resp, got := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK || got != "final" {
		t.Errorf("second answer %d %q, want 200 final", resp.StatusCode, got)
	}
	conn.send("GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if resp, got := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK || got != "final" {
		t.Errorf("HTTP/1.0 client: %d %q, want only the final 200", resp.StatusCode, got)
	}
}

// TestHostileWorkerHeadAnswerChunked: a HEAD answer that announces
// Transfer-Encoding: chunked has no body (RFC 9112 §6.3): nothing is
// waited for and the connection serves the next request in step.
func TestHostileWorkerHeadAnswerChunked(t *testing.T) {
	t.Parallel()
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		if req.Method == http.MethodHead {
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
			return true
		}
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
		return true
	})
	b := startRaw(t, safetyConfig(), rw)
	conn := dialH1(t, b)
	conn.send("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /g HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, got := conn.read(http.MethodHead); resp.StatusCode != http.StatusOK || got != "" {
		t.Errorf("HEAD: %d %q", resp.StatusCode, got)
	}
	if resp, got := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK || got != "real" {
		t.Errorf("GET after HEAD: %d %q, want 200 real", resp.StatusCode, got)
	}
}

// TestHostileWorkerHTTP10ChunkedIsNotReused pins a bug: an HTTP/1.0
// answer with Transfer-Encoding (and Connection: keep-alive) had its
// connection pooled, where RFC 9112 §6.1 says its framing is to be treated
// as faulty and the connection closed after it.
func TestHostileWorkerHTTP10ChunkedIsNotReused(t *testing.T) {
	t.Parallel()
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		_, _ = bw.WriteString("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
		return true
	})
	b := startRaw(t, safetyConfig(), rw)
	conn := dialH1(t, b)
	for range 2 {
		conn.send("GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, got := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK || got != "hello" {
			t.Errorf("%d %q, want 200 hello", resp.StatusCode, got)
		}
	}
	if n := rw.conns.Load(); n != 2 {
		t.Errorf("%d worker connections for two answers, want 2 (none reused)", n)
	}
}

// TestHostileWorkerAnswersBeforeTheBody: a worker that answers (and
// closes) before reading a large body gets its answer to the client, with
// the client connection closed (its body's end is unknown), and is not
// charged.
func TestHostileWorkerAnswersBeforeTheBody(t *testing.T) {
	t.Parallel()
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		_, _ = bw.WriteString("HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig")
		return false
	})
	b := startRaw(t, safetyConfig(), rw)
	conn := dialH1(t, b)
	conn.send("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 8388608\r\n\r\n")
	go func() {
		buf := bytes.Repeat([]byte("u"), 64<<10)
		for range 128 {
			_ = conn.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.c.Write(buf); err != nil {
				return
			}
		}
	}()
	resp := conn.closedOrAnswered(time.Now().Add(10 * time.Second))
	if resp == nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("got %v, want the worker's 413", resp)
	} else if !resp.Close {
		t.Errorf("the 413 keeps the connection, whose body was not read")
	}
	waitFor(t, "the attempt counted", func() bool { return statsOf(t, b, "w").InFlight == 0 })
	if s := statsOf(t, b, "w"); s.Failed != 0 || !s.Healthy {
		t.Errorf("worker charged: %+v", s)
	}
}

// TestHostileWorkerTransferCodingIsKept pins a bug: a worker's answer with
// Transfer-Encoding: gzip, chunked reached the client de-chunked with the
// whole Transfer-Encoding field dropped (hopByHop), so the client took the
// gzip bytes for the content. The codings other than chunked describe the
// bytes golb relays and must go with them (or the answer be refused).
func TestHostileWorkerTransferCodingIsKept(t *testing.T) {
	t.Parallel()
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		if req.URL.Path == "/close" {
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b\x08\x00")
			return false
		}
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\n\x1f\x8b\x08\x00\r\n0\r\n\r\n")
		return true
	})
	b := startRaw(t, safetyConfig(), rw)
	for _, tc := range []struct{ req, wantTE, wantEnd string }{
		{"GET /z HTTP/1.1\r\nHost: x\r\n\r\n", "Transfer-Encoding: gzip, chunked\r\n", "\r\n4\r\n\x1f\x8b\x08\x00\r\n0\r\n\r\n"},
		{"GET /close HTTP/1.1\r\nHost: x\r\n\r\n", "Transfer-Encoding: gzip\r\n", "\r\n\r\n\x1f\x8b\x08\x00"},
	} {
		conn := dialH1(t, b)
		conn.send(tc.req)
		var got []byte
		_ = conn.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for !bytes.HasSuffix(got, []byte(tc.wantEnd)) {
			var buf [512]byte
			n, err := conn.br.Read(buf[:])
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		t.Logf("%q", got)
		if !bytes.Contains(got, []byte(tc.wantTE)) || !bytes.HasSuffix(got, []byte(tc.wantEnd)) {
			t.Errorf("%s: got %q, want the field %q and the coded body", strings.Fields(tc.req)[1], got, tc.wantTE)
		}
	}
	// An HTTP/1.0 client cannot be told of a transfer coding: 502.
	conn := dialH1(t, b)
	conn.send("GET /z HTTP/1.0\r\n\r\n")
	if resp, _ := conn.read(http.MethodGet); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("HTTP/1.0 client: %d, want 502", resp.StatusCode)
	}
}

// TestHostileEndlessInterimAnswersRefused: a worker could send 1xx answers
// one after another until response_timeout, each relayed to the client;
// past maxInterim the answer is malformed (502), charged to the worker.
func TestHostileEndlessInterimAnswersRefused(t *testing.T) {
	t.Parallel()
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		n := maxInterim
		if req.URL.Path == "/many" {
			n = maxInterim + 1
		}
		for range n {
			_, _ = bw.WriteString("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
		}
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	b := startRaw(t, safetyConfig(), rw)
	for path, want := range map[string]int{"/few": http.StatusOK, "/many": http.StatusBadGateway} {
		conn := dialH1(t, b)
		conn.send("GET " + path + " HTTP/1.0\r\n\r\n") // 1.0: the 103s are not relayed
		if resp, _ := conn.read(http.MethodGet); resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// TestHostilePartialAnswerOnPooledConnIsNotResent pins a replay: a POST on
// a pooled connection whose worker wrote part of an answer and closed was
// sent again on a new connection (the check for "bytes heard" looked at a
// buffer closeConn had just reset), outside the retry budget: the worker
// ran it twice. A non-idempotent request that may have reached its worker
// is never sent again; a GET whose connection closed unheard still is.
func TestHostilePartialAnswerOnPooledConnIsNotResent(t *testing.T) {
	t.Parallel()
	var posts, gets atomic.Int64
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		switch {
		case req.URL.Path == "/warm":
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return true
		case req.Method == http.MethodPost:
			if posts.Add(1) == 1 {
				_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Le")
				return false
			}
		case req.URL.Path == "/get" && gets.Add(1) == 1:
			return false // closes, having said nothing
		}
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nsent")
		return true
	})
	b := startRaw(t, safetyConfig(), rw)
	for _, tc := range []struct {
		req   string
		want  int
		count *atomic.Int64
		seen  int64
	}{
		{"POST /once HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", http.StatusBadGateway, &posts, 1},
		{"GET /get HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusOK, &gets, 2},
	} {
		conn := dialH1(t, b)
		conn.send("GET /warm HTTP/1.1\r\nHost: x\r\n\r\n") // a connection for the pool
		if resp, _ := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK {
			t.Fatalf("warm: %d", resp.StatusCode)
		}
		conn.send(tc.req)
		resp, _ := conn.read(http.MethodGet)
		line := strings.SplitN(tc.req, "\r\n", 2)[0]
		t.Logf("%s: %d, the worker saw it %d times", line, resp.StatusCode, tc.count.Load())
		if resp.StatusCode != tc.want || tc.count.Load() != tc.seen {
			t.Errorf("%s: %d and seen %d times, want %d and %d", line, resp.StatusCode, tc.count.Load(), tc.want, tc.seen)
		}
	}
}

// TestWorkerGivingUpOnASlowBodyIsNotCharged pins a way for clients to
// eject healthy workers: a body trickled slower than the worker's own
// read timeout (but within golb's body limits) made the worker drop the
// connection, which golb counted as the worker's connection failure and
// ejected it. Workers give up on slow uploads as a matter of course (Go's
// ReadTimeout, nginx's client_body_timeout): it is the client's 408, and
// the worker stays healthy, uncharged and in the pool.
func TestWorkerGivingUpOnASlowBodyIsNotCharged(t *testing.T) {
	t.Parallel()
	giveUp := slowBodyAfter + 500*time.Millisecond
	rw := newRawWorker(t, "a", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		_ = c.SetReadDeadline(time.Now().Add(giveUp))
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return false // close, no answer
		}
		_ = c.SetReadDeadline(time.Time{})
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	cfg := safetyConfig()
	cfg.EjectAfterConnFailures = 1
	b := startRaw(t, cfg, rw)
	conn := dialH1(t, b)
	start := time.Now()
	done := slowBody(conn, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
		strings.Split(strings.Repeat("s", 100), ""), 100*time.Millisecond)
	defer close(done)
	resp := conn.closedOrAnswered(start.Add(giveUp + closeMargin))
	t.Logf("the worker gave up after %v; golb answered %v", time.Since(start).Round(time.Millisecond), resp != nil)
	if resp == nil || resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("answer %v, want 408", resp)
	}
	waitFor(t, "no request in flight", func() bool { return b.InFlight() == 0 })
	if s := statsOf(t, b, "a"); s.Failed != 0 || !s.Healthy {
		t.Errorf("worker charged for the client's slow body: %d failed attempts, healthy=%v", s.Failed, s.Healthy)
	}
	if code, _ := get(t, testClient(), baseURL(b)+"/after"); code != http.StatusOK {
		t.Errorf("a request after the slow body: %d, want 200 from the worker still in the pool", code)
	}
}

// TestWorkerDroppingAFastBodyIsCharged is the other side of the rule
// above: a worker that drops the connection while a prompt client's body
// is on its way has failed, and is charged and ejected.
func TestWorkerDroppingAFastBodyIsCharged(t *testing.T) {
	t.Parallel()
	rw := newRawWorker(t, "a", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		return false // reads the head, drops the connection
	})
	cfg := safetyConfig()
	cfg.EjectAfterConnFailures = 1
	b := startRaw(t, cfg, rw)
	conn := dialH1(t, b)
	conn.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
	go func() {
		_ = conn.trySend(strings.Repeat("f", 1000000))
	}()
	resp := conn.closedOrAnswered(time.Now().Add(10 * time.Second))
	if resp == nil || resp.StatusCode != http.StatusBadGateway {
		t.Errorf("answer %v, want 502", resp)
	}
	waitFor(t, "no request in flight", func() bool { return b.InFlight() == 0 })
	if s := statsOf(t, b, "a"); s.Failed != 1 || s.Healthy {
		t.Errorf("worker that dropped a prompt body: %d failed attempts, healthy=%v; want 1 and ejected", s.Failed, s.Healthy)
	}
}

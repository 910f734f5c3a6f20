//go:build linux

package balancer

// A second hostile review of the HTTP/1.1 engine (2026-12-02), after the
// one h1rules_test.go pins: each failing test is named for a defect and
// says it in one comment; the passing ones pin behaviour no other test
// covers. Raw clients, raw workers and a real balancer, as in
// h1hostile_test.go and h1rules_test.go (whose headRecorder this uses;
// both are Linux only: TCP_INFO here).

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestH1ReviewAbsoluteOptionsLosesAsteriskForm: "OPTIONS
// http://h.example:8001 HTTP/1.1" (absolute form, empty path, no query)
// reaches the worker as "OPTIONS /", a request about the root resource;
// RFC 9112 §3.2.4 says the last proxy MUST send it as "OPTIONS *", a
// request about the server.
func TestH1ReviewAbsoluteOptionsLosesAsteriskForm(t *testing.T) {
	t.Parallel()
	rec := newHeadRecorder(t)
	b := startRecorder(t, rec)
	conn := dialH1(t, b)
	conn.send("OPTIONS http://h.example:8001 HTTP/1.1\r\nHost: h.example:8001\r\n\r\n")
	if resp, _ := conn.read(http.MethodOptions); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want the worker's 200", resp.StatusCode)
	}
	req := rec.only(t)
	line, _, _ := strings.Cut(req, "\r\n")
	if line != "OPTIONS * HTTP/1.1" || !strings.Contains(req, "\r\nHost: h.example:8001\r\n") {
		t.Errorf("the worker got request line %q, want \"OPTIONS * HTTP/1.1\" with Host h.example:8001:\n%s", line, req)
	}
}

// TestH1ReviewLocalPathIgnoresExpect100: a request for one of golb's own
// paths (/worker/stats) with "Expect: 100-continue" and a body gets
// neither a 100 Continue nor a final answer: serveLocal waits for the body
// the client is holding back, until the body timeout answers 408. RFC 9110
// §10.1.1: a server MUST either answer at once or send 100 Continue.
func TestH1ReviewLocalPathIgnoresExpect100(t *testing.T) {
	t.Parallel()
	cfg := safetyConfig()
	cfg.Local = map[string]http.Handler{"/worker/stats": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "{}")
	})}
	b := started(t, cfg)
	conn := dialH1(t, b)
	conn.send("POST /worker/stats HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	// The body timeout is 10 s: 5 s is plenty for a 100 or a final answer.
	_ = conn.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(conn.br, &http.Request{Method: http.MethodPost})
	if err != nil {
		t.Fatalf("no 100 Continue and no answer 5s after a head with Expect: 100-continue (the client waits for one before its body): %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusContinue {
		conn.send("hello")
		resp, _ = conn.read(http.MethodPost)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d, want the local handler's 200", resp.StatusCode)
	}
}

// TestH1ReviewAnswersCarryNoDate: no answer golb sends has a Date field:
// neither a worker's answer that came without one (RFC 9110 §6.6.1: a
// recipient with a clock that forwards a response without Date MUST add
// one), nor golb's own 4xx and 2xx answers (an origin server with a clock
// MUST send Date in every 2xx, 3xx and 4xx).
func TestH1ReviewAnswersCarryNoDate(t *testing.T) {
	t.Parallel()
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	cfg := safetyConfig()
	cfg.Local = map[string]http.Handler{"/worker/stats": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "{}")
	})}
	b := startRaw(t, cfg, rw)
	for _, tc := range []struct{ what, req string }{
		{"a worker's answer without Date", "GET /fwd HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"golb's own 400", "GET /bad HTTP/1.1\r\nHost: a b\r\n\r\n"},
		{"golb's /worker/stats", "GET /worker/stats HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		conn := dialH1(t, b)
		conn.send(tc.req)
		line, hdr := readRawHead(t, conn)
		if _, err := http.ParseTime(hdr.Get("Date")); err != nil {
			t.Errorf("%s (%q) reached the client with Date %q, want an HTTP-date", tc.what, line, hdr.Get("Date"))
		}
	}
}

// TestH1ReviewWorkerStallingAPromptBodyIsBlamedOnTheClient: a worker that
// stops reading a large upload the client has ready (golb is blocked
// writing to the worker, not waiting for the client) and resets the
// connection after slowBodyAfter is taken for a worker giving up on a
// slow client: the client is answered 408 "request body not received in
// time" and counted a client error, and the worker is not charged. The
// rule (attempt, time.Since(r.bodyStart) >= slowBodyAfter) looks only at
// the time since the body began, so a worker that dies during any upload
// longer than a second is never charged nor ejected.
func TestH1ReviewWorkerStallingAPromptBodyIsBlamedOnTheClient(t *testing.T) {
	t.Parallel()
	rw := newRawWorker(t, "a", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		time.Sleep(slowBodyAfter + 500*time.Millisecond) // reads nothing of the body
		_ = c.(*net.TCPConn).SetLinger(0)
		return false // a reset
	})
	b := startRaw(t, safetyConfig(), rw)
	conn := dialH1(t, b)
	const size = 64 << 20 // far more than the sockets between client, golb and worker hold
	conn.send(fmt.Sprintf("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size))
	go func() { // the whole body, as fast as golb takes it
		piece := strings.Repeat("u", 64<<10)
		for range size / len(piece) {
			if conn.trySend(piece) != nil {
				return
			}
		}
	}()
	resp := conn.closedOrAnswered(time.Now().Add(15 * time.Second))
	waitFor(t, "no request in flight", func() bool { return b.InFlight() == 0 })
	status := 0 // closed without an answer
	if resp != nil {
		status = resp.StatusCode
	}
	s := statsOf(t, b, "a")
	if status != http.StatusBadGateway || s.Failed != 1 || b.clientErrors.Load() != 0 {
		t.Errorf("answer %d, worker failed attempts %d, client errors %d; want 502, 1 and 0 (the client sent its body as fast as the worker read it)",
			status, s.Failed, b.clientErrors.Load())
	}
}

// TestH1ReviewChunkedBodyIsWrittenAChunkAtATime: sendBody writes each
// chunk of a chunked request body to the worker with a write of its own
// (and the connection has TCP_NODELAY), so a client that sends 1-byte
// chunks ("1\r\nx\r\n", 6 bytes each) makes golb do one syscall, and send
// about one TCP segment, per 6 bytes it reads: 96 KiB of such a body cost
// 16,384 writes and reached the worker in some 1,500 segments, where the
// same bytes read in 8 KiB reads need a few dozen. A cheap way to load
// golb's CPU and a worker's network stack.
func TestH1ReviewChunkedBodyIsWrittenAChunkAtATime(t *testing.T) {
	t.Parallel()
	segs := make(chan uint32, 1)
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		n, _ := io.Copy(io.Discard, req.Body)
		var in uint32
		if rc, err := c.(*net.TCPConn).SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) {
				if ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
					in = ti.Segs_in
				}
			})
		}
		segs <- in
		body := fmt.Sprint(n)
		fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		return true
	})
	b := startRaw(t, safetyConfig(), rw)
	conn := dialH1(t, b)
	const chunks = 16 << 10
	var sb strings.Builder
	sb.WriteString("POST /tiny HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	for range chunks {
		sb.WriteString("1\r\nx\r\n")
	}
	sb.WriteString("0\r\n\r\n")
	conn.send(sb.String())
	if resp, body := conn.read(http.MethodPost); resp.StatusCode != http.StatusOK || body != fmt.Sprint(chunks) {
		t.Fatalf("got %d %q, want 200 %d", resp.StatusCode, body, chunks)
	}
	// The worker's connection carried its request head and the body; a
	// fresh one (a streamed body is never sent on a pooled connection).
	if n := <-segs; n > 400 {
		t.Errorf("a %d-byte chunked body of 1-byte chunks reached the worker in %d TCP segments, want it coalesced (under 400)", 6*chunks, n)
	}
}

// TestH1ReviewConnectionCannotNominateGolbsOwnFields (passing): fields a
// client nominates in Connection are dropped (RFC 9110 §7.6.1), but the
// ones golb writes itself are not the client's to remove: naming Host,
// Content-Length, Transfer-Encoding or X-Forwarded-For leaves the worker
// with golb's Host, framing and X-Forwarded-For, and the body in step.
func TestH1ReviewConnectionCannotNominateGolbsOwnFields(t *testing.T) {
	t.Parallel()
	rec := newHeadRecorder(t)
	b := startRecorder(t, rec)
	conn := dialH1(t, b)
	conn.send("POST /n HTTP/1.1\r\nHost: h.example\r\n" +
		"Connection: Host, Content-Length, Transfer-Encoding, X-Forwarded-For, X-Forwarded-Host, Via, X-Hop\r\n" +
		"X-Forwarded-For: 6.6.6.6\r\nVia: 1.1 front\r\nX-Hop: 1\r\nContent-Length: 5\r\n\r\nhello" +
		"GET /next HTTP/1.1\r\nHost: h.example\r\n\r\n")
	for range 2 {
		if resp, body := conn.read(http.MethodPost); resp.StatusCode != http.StatusOK || body != "ok" {
			t.Fatalf("got %d %q, want the worker's 200 ok", resp.StatusCode, body)
		}
	}
	waitFor(t, "both requests recorded", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.reqs) == 2 })
	rec.mu.Lock()
	first, second := rec.reqs[0], rec.reqs[1]
	rec.mu.Unlock()
	for _, want := range []string{"\r\nHost: h.example\r\n", "\r\nContent-Length: 5\r\n", "\r\nX-Forwarded-For: 127.0.0.1\r\n",
		"\r\nX-Forwarded-Host: h.example\r\n", "\r\nVia: 1.1 golb\r\n", "\r\n\r\nhello"} {
		if !strings.Contains(first, want) {
			t.Errorf("the worker's request lacks %q:\n%s", want, first)
		}
	}
	for _, gone := range []string{"6.6.6.6", "front", "X-Hop"} {
		if strings.Contains(first, gone) {
			t.Errorf("the worker's request has the nominated %q:\n%s", gone, first)
		}
	}
	if !strings.HasPrefix(second, "GET /next HTTP/1.1\r\n") {
		t.Errorf("the pipelined request reached the worker as %q", abbrev(second))
	}
}

// TestH1ReviewRepeatedResponseFieldsKeptApart (passing): a worker's
// repeated Set-Cookie lines (whose values hold commas, so they cannot be
// joined into one list, RFC 9110 §5.3) reach the client as separate field
// lines, in order, values intact.
func TestH1ReviewRepeatedResponseFieldsKeptApart(t *testing.T) {
	t.Parallel()
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT\r\n" +
			"X-Other: 1\r\nSet-Cookie: b=2; Path=/\r\nSet-Cookie: c=3\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	b := startRaw(t, safetyConfig(), rw)
	conn := dialH1(t, b)
	conn.send("GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
	_, hdr := readRawHead(t, conn)
	got := hdr.Values("Set-Cookie")
	want := []string{"a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT", "b=2; Path=/", "c=3"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Set-Cookie lines %q, want %q", got, want)
	}
}

// TestH1ReviewPipelinedRequestBehindA502IsServed (passing): golb's own
// 502 for a request with no body (its worker reset the connection) keeps
// the client connection, whose framing is intact: the request pipelined
// behind it is served next, in order, neither dropped nor mixed up.
func TestH1ReviewPipelinedRequestBehindA502IsServed(t *testing.T) {
	t.Parallel()
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		if req.URL.Path == "/rst" {
			_ = c.(*net.TCPConn).SetLinger(0)
			return false
		}
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nafter")
		return true
	})
	cfg := safetyConfig()
	cfg.Retries = 0
	b := startRaw(t, cfg, rw)
	conn := dialH1(t, b)
	conn.send("GET /rst HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := conn.read(http.MethodGet); resp.StatusCode != http.StatusBadGateway || resp.Close {
		t.Errorf("first answer %d (close %v), want golb's 502 keeping the connection", resp.StatusCode, resp.Close)
	}
	if resp, body := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK || body != "after" {
		t.Errorf("pipelined answer %d %q, want 200 after", resp.StatusCode, body)
	}
}

// TestH1ReviewClientForwardingHeadersBesideXFFPassThrough: golb replaces a
// client's X-Forwarded-For, -Host and -Proto (and their underscore
// spellings), but X-Real-Ip, X-Forwarded-Port, X-Forwarded-Server and
// X-Forwarded-Prefix reach the worker as the client forged them. Traefik,
// whose behaviour Config.TrustForwardedHeaders promises ("a client's
// forwarding headers are replaced, since anyone can forge them"), strips
// all of these from an untrusted client and sets X-Real-Ip itself; and
// common worker middleware trusts them (go-chi's RealIP takes X-Real-Ip
// before X-Forwarded-For; gin's and echo's ClientIP fall back to it).
func TestH1ReviewClientForwardingHeadersBesideXFFPassThrough(t *testing.T) {
	t.Parallel()
	rec := newHeadRecorder(t)
	b := startRecorder(t, rec)
	conn := dialH1(t, b)
	conn.send("GET /ip HTTP/1.1\r\nHost: x\r\nX-Real-Ip: 6.6.6.6\r\nX-Forwarded-Port: 6666\r\n" +
		"X-Forwarded-Server: evil.example\r\nX-Forwarded-Prefix: /admin\r\n\r\n")
	if resp, _ := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	req := rec.only(t)
	var passed []string
	for _, forged := range []string{"X-Real-Ip: 6.6.6.6", "X-Forwarded-Port: 6666", "X-Forwarded-Server: evil.example", "X-Forwarded-Prefix: /admin"} {
		if strings.Contains(req, forged) {
			passed = append(passed, forged)
		}
	}
	if len(passed) > 0 {
		t.Errorf("the worker got the client's forged %q:\n%s", passed, req)
	}
}

// TestTrustedForwardingHeadersPassOn: with TrustForwardedHeaders (a
// trusted proxy in front), the client's X-Forwarded-For is extended, its
// X-Forwarded-Host and -Proto stand in for golb's own (a TLS front end's
// "https" is kept, not overwritten with "http": a redirect loop), and
// X-Real-Ip passes on; an underscore spelling is still dropped.
func TestTrustedForwardingHeadersPassOn(t *testing.T) {
	t.Parallel()
	rec := newHeadRecorder(t)
	cfg := safetyConfig()
	cfg.TrustForwardedHeaders = true
	b := started(t, cfg)
	b.SetBackends([]Backend{{ID: "rec", Address: rec.ln.Addr().String()}})
	waitFor(t, "the recording worker healthy", func() bool { return healthyCount(b) == 1 })
	conn := dialH1(t, b)
	conn.send("GET /ip HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n" +
		"X-Forwarded-Host: front.example\r\nX-Real-Ip: 192.0.2.7\r\nX_Forwarded_Port: 1\r\n\r\n")
	if resp, _ := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	req := rec.only(t)
	for _, want := range []string{"X-Forwarded-For: 192.0.2.7, 127.0.0.1\r\n", "X-Forwarded-Proto: https\r\n",
		"X-Forwarded-Host: front.example\r\n", "X-Real-Ip: 192.0.2.7\r\n"} {
		if strings.Count(req, want) != 1 {
			t.Errorf("the worker did not get %q once:\n%s", want, req)
		}
	}
	for _, not := range []string{"X-Forwarded-Proto: http\r\n", "X-Forwarded-Host: x\r\n", "X_Forwarded_Port"} {
		if strings.Contains(req, not) {
			t.Errorf("the worker got %q:\n%s", not, req)
		}
	}
}

// TestH1ReviewH2CUpgradeIsNotPassedOn pins "h2c smuggling": a client's
// Upgrade: h2c, passed on, let a worker that takes it turn the connection
// into HTTP/2 that golb spliced blind, its requests neither balanced nor
// checked nor counted. The request goes on as a plain one, without the
// Upgrade and its HTTP2-Settings.
func TestH1ReviewH2CUpgradeIsNotPassedOn(t *testing.T) {
	t.Parallel()
	rec := newHeadRecorder(t)
	b := startRecorder(t, rec)
	conn := dialH1(t, b)
	conn.send("GET /h2 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n" +
		"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
	if resp, _ := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want the worker's 200 to a plain request", resp.StatusCode)
	}
	req := strings.ToLower(rec.only(t))
	for _, not := range []string{"upgrade", "http2-settings"} {
		if strings.Contains(req, not) {
			t.Errorf("the worker got %q:\n%s", not, req)
		}
	}
}

// TestH1ReviewChunkedAnswerToHTTP10KeepAliveClient (passing): a worker's
// chunked answer (with a trailer) to an HTTP/1.0 client that asked for
// keep-alive reaches it de-chunked, with neither Transfer-Encoding nor
// Trailer's fields in the body, delimited by golb closing the connection
// (RFC 9112 §6.1: no transfer coding to an HTTP/1.0 recipient), and says
// Connection: close.
func TestH1ReviewChunkedAnswerToHTTP10KeepAliveClient(t *testing.T) {
	t.Parallel()
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\nX-Sum: 1\r\n\r\n")
		return true
	})
	b := startRaw(t, safetyConfig(), rw)
	conn := dialH1(t, b)
	conn.send("GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	_, hdr := readRawHead(t, conn)
	if te := hdr.Values("Transfer-Encoding"); len(te) != 0 || !strings.EqualFold(hdr.Get("Connection"), "close") {
		t.Errorf("head to an HTTP/1.0 client: Transfer-Encoding %q, Connection %q; want none and close", te, hdr.Get("Connection"))
	}
	_ = conn.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	body, err := io.ReadAll(conn.br)
	if err != nil && !isClosed(err) {
		t.Fatalf("reading the body to the close: %v", err)
	}
	if string(body) != "hello world" {
		t.Errorf("body %q, want \"hello world\" ended by the close", body)
	}
}

// TestH1ReviewMaxForwardsIgnored: an OPTIONS (or TRACE) request's
// Max-Forwards is passed on as it came: with 0 the request still reaches
// a worker, and with 3 the worker sees 3. RFC 9110 §7.6.2: an
// intermediary MUST decrement it before forwarding, and with 0 MUST NOT
// forward the request but answer it as its final recipient.
func TestH1ReviewMaxForwardsIgnored(t *testing.T) {
	t.Parallel()
	t.Run("zero", func(t *testing.T) {
		t.Parallel()
		rec := newHeadRecorder(t)
		b := startRecorder(t, rec)
		conn := dialH1(t, b)
		conn.send("OPTIONS * HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\n\r\n")
		resp, _ := conn.read(http.MethodOptions)
		rec.mu.Lock()
		reqs := append([]string(nil), rec.reqs...)
		rec.mu.Unlock()
		if len(reqs) != 0 {
			t.Errorf("OPTIONS with Max-Forwards: 0 was forwarded (the client got %d from the worker), want golb to answer it:\n%s", resp.StatusCode, reqs[0])
		}
	})
	t.Run("decremented", func(t *testing.T) {
		t.Parallel()
		rec := newHeadRecorder(t)
		b := startRecorder(t, rec)
		conn := dialH1(t, b)
		conn.send("OPTIONS /o HTTP/1.1\r\nHost: x\r\nMax-Forwards: 3\r\n\r\n")
		if resp, _ := conn.read(http.MethodOptions); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want the worker's 200", resp.StatusCode)
		}
		if req := rec.only(t); !strings.Contains(req, "\r\nMax-Forwards: 2\r\n") {
			t.Errorf("the worker got Max-Forwards other than 2 for the client's 3:\n%s", req)
		}
	})
}

// TestH1ReviewConnectionPooledWithTheBodyHalfSent: a worker that answers
// a large upload early (no Connection: close) and then reads nothing for
// a while makes golb's write of the body stall until its stall bound
// (IdleTimeout) fails it; golb relays the early answer, closing the
// client, but relay decides reuse from the answer alone (not
// r.bodyLeft), so the worker connection goes back to the pool in the
// middle of the request body, its socket full of the body's unsent
// bytes. The next client's request is sent on it: here it waits behind
// them, its write stalls and it gets 504 (charged to the worker); once
// the socket drains, the worker, still owed the rest of the body, reads
// that request as body bytes (with a body tail the uploader sized, the
// rest of the victim's bytes parse as a request of their own: a desync).
// A connection whose request was not sent whole is never reusable.
func TestH1ReviewConnectionPooledWithTheBodyHalfSent(t *testing.T) {
	t.Parallel()
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		if req.URL.Path == "/up" {
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
			_ = bw.Flush()
			time.Sleep(5 * time.Second) // reads nothing meanwhile (golb's write stalls past IdleTimeout)
			// Then, as net/http does, the rest of the body before the
			// next request on the connection.
			_, _ = io.Copy(io.Discard, req.Body)
			return true
		}
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
		return true
	})
	cfg := safetyConfig()
	cfg.IdleTimeout = time.Second // the stall bound of a write to a worker
	cfg.ResponseHeaderTimeout = 5 * time.Second
	b := startRaw(t, cfg, rw)

	up := dialH1(t, b)
	const size = 64 << 20 // far more than the sockets between golb and the worker hold
	up.send(fmt.Sprintf("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size))
	go func() {
		piece := strings.Repeat("u", 64<<10)
		for range size / len(piece) {
			if up.trySend(piece) != nil {
				return
			}
		}
	}()
	if resp := up.closedOrAnswered(time.Now().Add(10 * time.Second)); resp == nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the upload got %v, want the worker's early 200", resp)
	}
	waitFor(t, "the upload's attempt over", func() bool { return b.InFlight() == 0 })

	victim := dialH1(t, b)
	victim.send("GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := victim.read(http.MethodGet); resp.StatusCode != http.StatusOK || body != "second" {
		t.Errorf("the next client got %d %q with %d worker connection(s) used, want 200 \"second\" on a second one: it was sent on the connection whose upload body was cut off",
			resp.StatusCode, abbrev(body), rw.conns.Load())
	}
}

// TestH1ReviewOversizedWorkerHeadIs502 (passing): a worker's answer head
// larger than the response head limit (max_header_bytes, at least 64 KiB)
// is refused with 502 and charged to the worker, not relayed in part nor
// waited on; the client connection, whose request was whole, serves the
// next request.
func TestH1ReviewOversizedWorkerHeadIs502(t *testing.T) {
	t.Parallel()
	rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
		if req.URL.Path == "/big" {
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 70<<10) + "\r\nContent-Length: 2\r\n\r\nok")
			return true
		}
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nsmall")
		return true
	})
	cfg := safetyConfig()
	cfg.Retries = 0
	b := startRaw(t, cfg, rw)
	conn := dialH1(t, b)
	conn.send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := conn.read(http.MethodGet); resp.StatusCode != http.StatusBadGateway || strings.Contains(body, "bbbb") {
		t.Errorf("a 70 KiB answer head: %d %q, want golb's 502", resp.StatusCode, abbrev(body))
	}
	conn.send("GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK || body != "small" {
		t.Errorf("next request: %d %q, want 200 small", resp.StatusCode, body)
	}
	waitFor(t, "the attempts counted", func() bool { return statsOf(t, b, "w").InFlight == 0 })
	if s := statsOf(t, b, "w"); s.Failed != 1 || b.clientErrors.Load() != 0 {
		t.Errorf("worker failed attempts %d, client errors %d; want 1 and 0", s.Failed, b.clientErrors.Load())
	}
	if n := rw.conns.Load(); n != 2 {
		t.Errorf("%d worker connections, want 2 (the one with the oversized head not reused)", n)
	}
}

// TestH1ReviewErrorAnswerToAClientStillSendingIsNotReset pins a lost
// answer: golb answered a request it would not read to its end (here a
// broken chunked body, with more of it on the way) and closed with the
// client's bytes unread, which makes the close a reset. A client still
// sending then fails its write ("connection reset", as curl reports it)
// before it reads the answer, and some stacks (Windows') drop an answer
// not yet read. golb now lingers: it half-closes, drops what still comes
// for up to a second, and closes with a FIN.
func TestH1ReviewErrorAnswerToAClientStillSendingIsNotReset(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	conn := dialH1(t, b)
	conn.send("POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + strings.Repeat("x", 64<<10))
	resp, _ := conn.read(http.MethodPost)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
	time.Sleep(50 * time.Millisecond) // a reset, if golb sent one, has arrived
	if err := conn.trySend("more of the body"); err != nil {
		t.Errorf("the client's write after the answer: %v; want it taken (golb lingers), not a reset", err)
	}
	_ = conn.c.SetReadDeadline(time.Now().Add(closeMargin))
	n, err := conn.br.Read(make([]byte, 64))
	if n != 0 || err != io.EOF {
		t.Errorf("after the answer: read %d bytes, %v; want a clean end (EOF)", n, err)
	}
}

// TestH1ReviewTrailerFramingFieldsAreDropped pins framing and routing
// fields smuggled in a trailer: a client's (or worker's) trailer section
// was passed on as it came, Content-Length, Host, Transfer-Encoding and
// X-Forwarded-For included, which a recipient that merges trailers into
// the header section (RFC 9110 §6.5.1 forbids it; some do) takes for the
// message's own. They are dropped both ways; other trailer fields pass.
func TestH1ReviewTrailerFramingFieldsAreDropped(t *testing.T) {
	t.Parallel()
	const forged = "Content-Length: 99\r\nHost: evil.example\r\nTransfer-Encoding: gzip\r\nX-Forwarded-For: 6.6.6.6\r\nSet-Cookie: s=1\r\n"
	t.Run("request", func(t *testing.T) {
		t.Parallel()
		rec := newHeadRecorder(t)
		b := startRecorder(t, rec)
		conn := dialH1(t, b)
		conn.send("POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 7\r\n" + forged + "\r\n")
		if resp, _ := conn.read(http.MethodPost); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want the worker's 200", resp.StatusCode)
		}
		req := rec.only(t)
		_, trailer, _ := strings.Cut(req, "\r\n0\r\n")
		if trailer != "X-Sum: 7\r\n\r\n" {
			t.Errorf("the worker got the trailer section %q, want only X-Sum:\n%s", trailer, req)
		}
	})
	t.Run("response", func(t *testing.T) {
		t.Parallel()
		rw := newRawWorker(t, "w", func(req *http.Request, c net.Conn, bw *bufio.Writer) bool {
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 7\r\n" + forged + "\r\n")
			return true
		})
		b := startRaw(t, safetyConfig(), rw)
		c, err := net.Dial("tcp", b.Addrs()[0])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, "GET /t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		raw, _ := io.ReadAll(c)
		_, trailer, _ := strings.Cut(string(raw), "\r\n0\r\n")
		if trailer != "X-Sum: 7\r\n\r\n" {
			t.Errorf("the client got the trailer section %q, want only X-Sum:\n%s", trailer, raw)
		}
	})
}

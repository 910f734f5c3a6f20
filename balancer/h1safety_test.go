package balancer

// HTTP/1.1 safety tests: raw bytes over net.Dial to a balancer listener,
// real httptest workers behind it. They pin the framing rules of RFC 9112
// (§2.2 line endings, §5 header fields, §6 message body length, §7.1
// chunked coding) and the slow-client timeouts, whatever engine parses the
// bytes. Correctness cases (bodies, keep-alive, upgrades) are in
// h1body_test.go.

import (
	"bufio"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// safetyConfig is testConfig with the HTTP/1.1 limits spelled out at their
// documented defaults; each test tightens the one it pins.
func safetyConfig() Config {
	cfg := testConfig()
	cfg.MaxHeaderBytes = 64 << 10
	cfg.HeaderReadTimeout = 10 * time.Second
	cfg.IdleTimeout = 120 * time.Second
	cfg.BodyReadTimeout = 10 * time.Second
	cfg.BodyMinRate = 1024
	return cfg
}

// closeMargin is how long after its deadline a timeout may take to close a
// connection on a busy 2-core -race machine; also how long a test waits to
// see a connection closed after a final response.
const closeMargin = 3 * time.Second

// smuggled is pipelined behind every refused request: a worker that ever
// sees /smuggled was handed bytes the balancer should have dropped.
const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

// h1Recorder is a worker handler that reads the whole body and answers
// "ID REQUEST-URI LEN MD5", remembering every request-target it saw.
type h1Recorder struct {
	id   string
	mu   sync.Mutex
	uris []string
	host []string
}

func (rec *h1Recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	rec.uris = append(rec.uris, r.RequestURI)
	rec.host = append(rec.host, r.Host)
	rec.mu.Unlock()
	h := md5.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%s %s %d %x", rec.id, r.RequestURI, n, h.Sum(nil))
}

// saw counts the requests for uri.
func (rec *h1Recorder) saw(uri string) int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	n := 0
	for _, u := range rec.uris {
		if u == uri {
			n++
		}
	}
	return n
}

func (rec *h1Recorder) seen() ([]string, []string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.uris...), append([]string(nil), rec.host...)
}

// newH1Worker is a worker answering with an h1Recorder.
func newH1Worker(t *testing.T, id string) (*worker, *h1Recorder) {
	rec := &h1Recorder{id: id}
	return newWorker(t, id, rec), rec
}

// echoOf is what an h1Recorder answers for a body.
func echoOf(id, uri, body string) string {
	return fmt.Sprintf("%s %s %d %x", id, uri, len(body), md5.Sum([]byte(body)))
}

// h1Conn is a raw client connection to a balancer listener: tests write
// exact bytes and parse the answers with net/http's own response reader.
type h1Conn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialH1(t *testing.T, b *Balancer) *h1Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", b.Addrs()[0], 5*time.Second)
	if err != nil {
		t.Fatalf("dialing the balancer: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &h1Conn{t: t, c: c, br: bufio.NewReader(c)}
}

// send writes s in one write.
func (h *h1Conn) send(s string) {
	h.t.Helper()
	if err := h.trySend(s); err != nil {
		h.t.Fatalf("writing %q: %v", abbrev(s), err)
	}
}

// trySend writes s in one write and returns the error: the server may
// refuse to read all of it (an oversized head), which is no failure.
func (h *h1Conn) trySend(s string) error {
	_ = h.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := io.WriteString(h.c, s)
	return err
}

// read reads one response to a request with this method (HEAD has no
// body), body included.
func (h *h1Conn) read(method string) (*http.Response, string) {
	h.t.Helper()
	_ = h.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(h.br, &http.Request{Method: method})
	if err != nil {
		h.t.Fatalf("reading the response to %s: %v", method, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case err != nil && resp.Close && isClosed(err):
		// A close-delimited error body cut by a reset: the status is
		// what matters.
		h.t.Logf("%d body ended by %v", resp.StatusCode, err)
	case err != nil:
		h.t.Fatalf("reading the %d body: %v", resp.StatusCode, err)
	}
	return resp, string(body)
}

// expectClosed fails unless the server closes the connection (EOF or a
// reset) within closeMargin with nothing more to say.
func (h *h1Conn) expectClosed() {
	h.t.Helper()
	_ = h.c.SetReadDeadline(time.Now().Add(closeMargin))
	var buf [512]byte
	n, err := h.br.Read(buf[:])
	var ne net.Error
	switch {
	case n > 0:
		h.t.Errorf("the connection stayed open and sent more: %q", buf[:n])
	case isClosed(err):
	case errors.As(err, &ne) && ne.Timeout():
		h.t.Errorf("the connection is still open %v after the response", closeMargin)
	default:
		h.t.Errorf("waiting for the connection to close: %v", err)
	}
}

// closedOrAnswered waits until deadline for either a response (returned)
// or the connection closing without one (nil). A deadline passing fails.
func (h *h1Conn) closedOrAnswered(deadline time.Time) *http.Response {
	h.t.Helper()
	_ = h.c.SetReadDeadline(deadline)
	resp, err := http.ReadResponse(h.br, &http.Request{Method: http.MethodGet})
	var ne net.Error
	switch {
	case err == nil:
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	case isClosed(err) || errors.Is(err, io.ErrUnexpectedEOF):
		return nil
	case errors.As(err, &ne) && ne.Timeout():
		h.t.Fatalf("neither an answer nor a close by the deadline")
	default:
		h.t.Fatalf("reading: %v", err)
	}
	return nil
}

// trickle writes s one byte per gap until done or a write fails.
func (h *h1Conn) trickle(s string, gap time.Duration, done <-chan struct{}) {
	for i := range len(s) {
		_ = h.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := h.c.Write([]byte{s[i]}); err != nil {
			return
		}
		select {
		case <-done:
			return
		case <-time.After(gap):
		}
	}
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

func abbrev(s string) string {
	if len(s) > 120 {
		return fmt.Sprintf("%s…(%d bytes)", s[:120], len(s))
	}
	return s
}

// settle waits until no request is in flight, then shuts b down and closes
// the workers' servers, which waits for their handlers: after it, what the
// workers saw is final.
func settle(t *testing.T, b *Balancer, ws ...*worker) {
	t.Helper()
	waitFor(t, "no request in flight", func() bool { return b.InFlight() == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	for _, w := range ws {
		w.srv.Close()
	}
}

// notCharged fails unless every worker is healthy with no failed attempt,
// once nothing is in flight.
func notCharged(t *testing.T, b *Balancer, ws ...*worker) {
	t.Helper()
	waitFor(t, "no request in flight", func() bool { return b.InFlight() == 0 })
	for _, w := range ws {
		if s := statsOf(t, b, w.id); s.Failed != 0 || !s.Healthy {
			t.Errorf("worker %s charged for the client's fault: %d failed attempts, healthy=%v", w.id, s.Failed, s.Healthy)
		}
	}
}

// h1Reject is a request the balancer must refuse.
type h1Reject struct {
	name  string
	req   string
	codes []int // acceptable statuses; nil means 400
	// body: the head is sound and the body is not, so the head may reach
	// a worker before the body turns out bad. Otherwise nothing may.
	body bool
}

// runRejects sends each case with smuggled pipelined behind it, on its own
// balancer and worker, and checks one refusal, then a close, and that the
// worker saw no /smuggled, was not charged, and (for a bad head) saw
// nothing at all.
func runRejects(t *testing.T, cfg func() Config, cases []h1Reject) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w, rec := newH1Worker(t, "a")
			b := startBalancer(t, cfg(), w)
			conn := dialH1(t, b)
			if err := conn.trySend(c.req + smuggled); err != nil {
				t.Logf("write cut short (the server may stop reading): %v", err)
			}
			resp, body := conn.read(http.MethodGet)
			codes := c.codes
			if codes == nil {
				codes = []int{http.StatusBadRequest}
			}
			ok := false
			for _, code := range codes {
				ok = ok || resp.StatusCode == code
			}
			if !ok {
				t.Errorf("status %d (body %q), want one of %v", resp.StatusCode, abbrev(body), codes)
			}
			conn.expectClosed()
			notCharged(t, b, w)
			settle(t, b, w)
			if n := rec.saw("/smuggled"); n != 0 {
				t.Errorf("the worker received the smuggled request %d times", n)
			}
			if uris, _ := rec.seen(); !c.body && len(uris) != 0 {
				for i, u := range uris {
					uris[i] = abbrev(u)
				}
				t.Errorf("the refused request reached the worker: %q", uris)
			}
		})
	}
}

const chunkedHead = "POST /api/v1/hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

// TestH1BrokenChunkedBodyIsNotAWorkerFailure pins the headline defect: a
// client's chunked body with broken framing was charged to the worker as a
// failed attempt and ejected it; it is the client's error (400, closed) and
// every worker stays healthy and in the pool.
func TestH1BrokenChunkedBodyIsNotAWorkerFailure(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"no-crlf-after-data": "3\r\nabcXX0\r\n\r\n",
		"bare-lf-size-line":  "3\nabc\r\n0\r\n\r\n",
		"size-overflows":     "FFFFFFFFFFFFFFFFF1\r\nabc\r\n0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ws := make([]*worker, 3)
			for i := range ws {
				ws[i], _ = newH1Worker(t, fmt.Sprint("w", i))
			}
			b := startBalancer(t, safetyConfig(), ws...)
			for i := range 3 {
				conn := dialH1(t, b)
				conn.send(chunkedHead + body)
				if resp, got := conn.read(http.MethodPost); resp.StatusCode != http.StatusBadRequest {
					t.Errorf("bad request %d: status %d (body %q), want 400", i, resp.StatusCode, abbrev(got))
				}
				conn.expectClosed()
			}
			notCharged(t, b, ws...)
			// Round robin over three candidates: three requests, three workers.
			conn := dialH1(t, b)
			answered := map[string]bool{}
			for i := range 3 {
				conn.send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, got := conn.read(http.MethodGet)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("good request %d after the bad ones: status %d (body %q)", i, resp.StatusCode, got)
				}
				answered[strings.Fields(got)[0]] = true
			}
			if len(answered) != 3 {
				t.Errorf("three good requests reached %d workers (%v), want all 3 still in the pool", len(answered), answered)
			}
		})
	}
}

// TestH1SmugglingAttemptsAreRefused pins RFC 9112 §6: a request whose body
// length is ambiguous or whose framing is invalid is refused and its
// connection closed, so bytes behind it never reach a worker as a request.
func TestH1SmugglingAttemptsAreRefused(t *testing.T) {
	t.Parallel()
	post := "POST /api/v1/hello HTTP/1.1\r\nHost: x\r\n"
	notUnderstood := []int{http.StatusBadRequest, http.StatusNotImplemented}
	runRejects(t, safetyConfig, []h1Reject{
		{name: "cl-then-te", req: post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{name: "te-then-cl", req: post + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"},
		{name: "cl-twice-same", req: post + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"},
		{name: "cl-twice-different", req: post + "Content-Length: 3\r\nContent-Length: 30\r\n\r\nabc"},
		{name: "cl-list", req: post + "Content-Length: 5, 5\r\n\r\nhello"},
		{name: "cl-plus-sign", req: post + "Content-Length: +3\r\n\r\nabc"},
		{name: "cl-not-a-number", req: post + "Content-Length: 3x\r\n\r\nabc"},
		{name: "cl-space-before-colon", req: post + "Content-Length : 3\r\n\r\nabc"},
		{name: "te-chunked-not-last", req: post + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"},
		{name: "te-unknown-before-chunked", req: post + "Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", codes: notUnderstood},
		{name: "te-space-before-colon", req: post + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"},
		{name: "te-xchunked", req: post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", codes: notUnderstood},
		{name: "te-twice", req: post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"},
		{name: "bare-lf-head", req: "GET /api/v1/hello HTTP/1.1\nHost: x\n\n"},
		{name: "bare-cr-head", req: "GET /api/v1/hello HTTP/1.1\rHost: x\r\n\r\n"},
		{name: "chunk-size-not-hex", req: chunkedHead + "zz\r\nabc\r\n0\r\n\r\n", body: true},
		{name: "chunk-size-negative", req: chunkedHead + "-3\r\nabc\r\n0\r\n\r\n", body: true},
		{name: "chunk-size-17-digits", req: chunkedHead + "10000000000000000\r\nabc\r\n0\r\n\r\n", body: true},
	})
}

// TestH1TransferEncodingCaseAndWhitespaceAccepted pins the other side of
// the smuggling rules: a coding's name is case-insensitive and a field
// value may carry optional whitespace, so these bodies must arrive intact.
func TestH1TransferEncodingCaseAndWhitespaceAccepted(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	for _, te := range []string{"Chunked", "CHUNKED", " chunked", "\tchunked ", "chunked\t"} {
		conn := dialH1(t, b)
		conn.send("POST /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:" + te + "\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
		resp, body := conn.read(http.MethodPost)
		if want := echoOf("a", "/te", "hello"); resp.StatusCode != http.StatusOK || body != want {
			t.Errorf("Transfer-Encoding %q: %d %q, want 200 %q", te, resp.StatusCode, body, want)
		}
	}
}

// TestH1OversizedHeadAnswers431 pins MaxHeaderBytes: a request line or a
// header block over it is refused with 431 and the connection closed.
func TestH1OversizedHeadAnswers431(t *testing.T) {
	t.Parallel()
	small := func() Config {
		cfg := safetyConfig()
		cfg.MaxHeaderBytes = 4096
		return cfg
	}
	var pad strings.Builder
	for i := range 100 {
		fmt.Fprintf(&pad, "X-Pad-%02d: %s\r\n", i, strings.Repeat("p", 50))
	}
	tooLarge := []int{http.StatusRequestHeaderFieldsTooLarge}
	runRejects(t, small, []h1Reject{
		{name: "request-line", req: "GET /" + strings.Repeat("a", 5000) + " HTTP/1.1\r\nHost: x\r\n\r\n", codes: tooLarge},
		{name: "header-block", req: "GET / HTTP/1.1\r\nHost: x\r\n" + pad.String() + "\r\n", codes: tooLarge},
		{name: "one-header", req: "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 5000) + "\r\n\r\n", codes: tooLarge},
	})
}

// TestH1DefaultMaxHeaderBytesIs64KiB pins the default limit (net/http's
// is 1 MiB): a 70 KiB header is refused with 431, a 60 KiB one reaches
// the worker whole.
func TestH1DefaultMaxHeaderBytesIs64KiB(t *testing.T) {
	t.Parallel()
	var gotLen atomic.Int64
	w := newWorker(t, "a", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		gotLen.Store(int64(len(r.Header.Get("X-Big"))))
	}))
	b := startBalancer(t, testConfig(), w) // no MaxHeaderBytes: the default
	head := func(n int) string {
		return "GET /big HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", n) + "\r\n\r\n"
	}

	conn := dialH1(t, b)
	conn.send(head(60 << 10))
	if resp, body := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK || gotLen.Load() != 60<<10 {
		t.Errorf("60 KiB header: %d %q, worker saw %d bytes of it; want 200 and all %d", resp.StatusCode, abbrev(body), gotLen.Load(), 60<<10)
	}

	conn = dialH1(t, b)
	if err := conn.trySend(head(70 << 10)); err != nil {
		t.Logf("write cut short: %v", err)
	}
	if resp, body := conn.read(http.MethodGet); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("70 KiB header: %d %q, want 431", resp.StatusCode, abbrev(body))
	}
	conn.expectClosed()
	if n := w.hits.Load(); n != 1 {
		t.Errorf("the worker saw %d requests, want only the 60 KiB one", n)
	}
}

// TestH1MalformedHeaderLinesAnswer400 pins RFC 9112 §5: invalid field
// names, NUL in a value, a line without a colon and obs-fold continuation
// lines are refused with 400 and never forwarded.
func TestH1MalformedHeaderLinesAnswer400(t *testing.T) {
	t.Parallel()
	get := "GET /api/v1/hello HTTP/1.1\r\nHost: x\r\n"
	runRejects(t, safetyConfig, []h1Reject{
		{name: "space-in-name", req: get + "Bad Name: x\r\n\r\n"},
		{name: "nul-in-name", req: get + "Na\x00me: x\r\n\r\n"},
		{name: "nul-in-value", req: get + "X-Value: a\x00b\r\n\r\n"},
		{name: "empty-name", req: get + ": x\r\n\r\n"},
		{name: "no-colon", req: get + "NoColonHere\r\n\r\n"},
		{name: "obs-fold-space", req: get + "X-Folded: a\r\n b\r\n\r\n"},
		{name: "obs-fold-tab", req: get + "X-Folded: a\r\n\tb\r\n\r\n"},
		{name: "fold-after-request-line", req: "GET /api/v1/hello HTTP/1.1\r\n X-Lead: x\r\nHost: x\r\n\r\n"},
	})
}

// decoy listens where a request names a host: a proxy that forwarded
// there would show up as an accepted connection.
func decoy(t *testing.T) (string, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = c.Close()
		}
	}()
	return ln.Addr().String(), &accepted
}

// TestH1AbsoluteFormGoesToAWorker pins that the proxy is never an open
// proxy: an absolute-form request-target goes to a worker, in origin form
// with the target's authority as Host (RFC 9112 §3.2.2), never to the host
// it names.
func TestH1AbsoluteFormGoesToAWorker(t *testing.T) {
	t.Parallel()
	evil, accepted := decoy(t)
	w, rec := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	conn := dialH1(t, b)
	conn.send("GET http://" + evil + "/x?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n")
	resp, body := conn.read(http.MethodGet)
	if want := echoOf("a", "/x?q=1", ""); resp.StatusCode != http.StatusOK || body != want {
		t.Errorf("got %d %q, want the worker's 200 %q", resp.StatusCode, body, want)
	}
	settle(t, b, w)
	if uris, hosts := rec.seen(); len(hosts) != 1 || hosts[0] != evil {
		t.Errorf("the worker saw targets %q with Host %q, want one with Host %q", uris, hosts, evil)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the balancer connected %d times to the host named in the request", n)
	}
}

// TestH1ConnectIsRefused pins that CONNECT never opens a tunnel: 405,
// nothing reaches a worker, nothing reaches the named host.
func TestH1ConnectIsRefused(t *testing.T) {
	t.Parallel()
	evil, accepted := decoy(t)
	w, rec := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	conn := dialH1(t, b)
	conn.send("CONNECT " + evil + " HTTP/1.1\r\nHost: " + evil + "\r\n\r\n")
	if resp, body := conn.read(http.MethodConnect); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("CONNECT: %d %q, want 405", resp.StatusCode, abbrev(body))
	}
	settle(t, b, w)
	if uris, _ := rec.seen(); len(uris) != 0 || w.hits.Load() != 0 {
		t.Errorf("CONNECT reached the worker: %q", uris)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the balancer connected %d times to the CONNECT target", n)
	}
}

// TestH1SlowlorisHeadTimesOut pins HeaderReadTimeout as a bound on the
// whole head: a head trickled a byte every 100 ms (each read well within
// the timeout) is answered 408 or closed soon after the timeout.
func TestH1SlowlorisHeadTimesOut(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	cfg := safetyConfig()
	cfg.HeaderReadTimeout = 300 * time.Millisecond
	b := startBalancer(t, cfg, w)
	conn := dialH1(t, b)
	done := make(chan struct{})
	defer close(done)
	start := time.Now()
	go conn.trickle("GET /api/v1/hello HTTP/1.1\r\nHost: x\r\nX-Slow: "+strings.Repeat("s", 100), 100*time.Millisecond, done)
	resp := conn.closedOrAnswered(start.Add(cfg.HeaderReadTimeout + closeMargin))
	t.Logf("trickled head ended after %v (response: %v)", time.Since(start).Round(time.Millisecond), resp != nil)
	if resp != nil {
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("status %d, want 408", resp.StatusCode)
		}
		conn.expectClosed()
	}
	if n := w.hits.Load(); n != 0 {
		t.Errorf("the worker saw %d requests from an unfinished head", n)
	}
}

// TestH1FirstHeadGetsOneHeaderTimeout: a new connection's head had
// header_read_timeout to begin and then as long again once its first bytes
// came (the deadline was set anew when the head turned out unfinished), so
// a slowloris client held a connection for twice the timeout.
func TestH1FirstHeadGetsOneHeaderTimeout(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	cfg := safetyConfig()
	cfg.HeaderReadTimeout = 3 * time.Second
	b := startBalancer(t, cfg, w)
	conn := dialH1(t, b)
	start := time.Now()
	time.Sleep(cfg.HeaderReadTimeout - 200*time.Millisecond)
	conn.send("GET /api/v1/hello HTTP/1.1\r\n") // and nothing more
	// Ends at 3 s; it ended at 5.8 s before. 1.5 s of margin either way.
	resp := conn.closedOrAnswered(start.Add(cfg.HeaderReadTimeout + 1500*time.Millisecond))
	t.Logf("the head begun at %v ended after %v (response: %v)", cfg.HeaderReadTimeout-200*time.Millisecond,
		time.Since(start).Round(time.Millisecond), resp != nil)
	if resp != nil && resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("status %d, want 408", resp.StatusCode)
	}
}

// TestH1SilentConnectionIsClosed pins that a connection that never sends
// a byte is not held: it is closed (with a 408 or without) once the
// timeouts pass. Both are short, since whether the wait for a first byte
// is idle time or head time is the engine's choice.
func TestH1SilentConnectionIsClosed(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	cfg := safetyConfig()
	cfg.HeaderReadTimeout = 300 * time.Millisecond
	cfg.IdleTimeout = 300 * time.Millisecond
	b := startBalancer(t, cfg, w)
	conn := dialH1(t, b)
	start := time.Now()
	resp := conn.closedOrAnswered(start.Add(cfg.HeaderReadTimeout + closeMargin))
	t.Logf("silent connection ended after %v (response: %v)", time.Since(start).Round(time.Millisecond), resp != nil)
	if resp != nil {
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("status %d, want 408", resp.StatusCode)
		}
		conn.expectClosed()
	}
}

// TestH1IdleKeepAliveIsClosed pins IdleTimeout: a keep-alive connection
// serves requests back to back, then is closed once idle for IdleTimeout
// (not before, and not much after).
func TestH1IdleKeepAliveIsClosed(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	cfg := safetyConfig()
	cfg.IdleTimeout = 300 * time.Millisecond
	b := startBalancer(t, cfg, w)
	conn := dialH1(t, b)
	var sent time.Time
	for i := range 2 {
		sent = time.Now()
		conn.send(fmt.Sprintf("GET /idle/%d HTTP/1.1\r\nHost: x\r\n\r\n", i))
		if resp, body := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("request %d: %d %q close=%v, want a kept-alive 200", i, resp.StatusCode, body, resp.Close)
		}
	}
	_ = conn.c.SetReadDeadline(sent.Add(cfg.IdleTimeout + closeMargin))
	n, err := conn.br.Read(make([]byte, 64))
	idle := time.Since(sent)
	t.Logf("idle connection closed %v after the last request was sent (%v)", idle.Round(time.Millisecond), err)
	if n > 0 || !isClosed(err) {
		t.Fatalf("after %v idle: read %d bytes, %v; want the server to close it", idle, n, err)
	}
	if idle < cfg.IdleTimeout {
		t.Errorf("closed %v after the last request, before the %v IdleTimeout", idle, cfg.IdleTimeout)
	}
}

// slowBody sends head, then body one piece per gap; the returned channel
// stops it.
func slowBody(conn *h1Conn, head string, pieces []string, gap time.Duration) chan struct{} {
	conn.send(head)
	done := make(chan struct{})
	go func() {
		for _, p := range pieces {
			select {
			case <-done:
				return
			case <-time.After(gap):
			}
			_ = conn.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(conn.c, p); err != nil {
				return
			}
		}
	}()
	return done
}

// bodyTimedOut checks that a slow body got a 408 or a close before the
// deadline, and that the worker was not charged for it.
func bodyTimedOut(t *testing.T, b *Balancer, w *worker, conn *h1Conn, start time.Time, limit time.Duration) {
	t.Helper()
	resp := conn.closedOrAnswered(start.Add(limit))
	t.Logf("slow body ended after %v (response: %v)", time.Since(start).Round(time.Millisecond), resp != nil)
	if resp != nil {
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("status %d, want 408", resp.StatusCode)
		}
		conn.expectClosed()
	}
	notCharged(t, b, w)
}

// TestH1TrickledBodyTimesOut pins BodyMinRate: a body trickled a byte per
// 100 ms (never pausing as long as BodyReadTimeout) is cut with 408 soon
// after the grace period, and the worker is not charged.
func TestH1TrickledBodyTimesOut(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	cfg := safetyConfig()
	cfg.BodyReadTimeout = 300 * time.Millisecond
	cfg.BodyMinRate = 1024
	b := startBalancer(t, cfg, w)
	conn := dialH1(t, b)
	start := time.Now()
	done := slowBody(conn, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
		strings.Split(strings.Repeat("t", 1000), ""), 100*time.Millisecond)
	defer close(done)
	bodyTimedOut(t, b, w, conn, start, cfg.BodyReadTimeout+closeMargin)
}

// TestH1StalledBodyTimesOut pins BodyReadTimeout as the longest pause
// between body reads (rate check off): a body that stops is cut with 408.
func TestH1StalledBodyTimesOut(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	cfg := safetyConfig()
	cfg.BodyReadTimeout = 300 * time.Millisecond
	cfg.BodyMinRate = 0
	b := startBalancer(t, cfg, w)
	conn := dialH1(t, b)
	start := time.Now()
	conn.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
	bodyTimedOut(t, b, w, conn, start, cfg.BodyReadTimeout+closeMargin)
}

// TestH1SlowSteadyBodyPassesWithMinRateOff pins that BodyReadTimeout bounds
// each pause, not the whole body: with BodyMinRate off, a body sent a byte
// per 100 ms for 2 s (over six timeouts in all) arrives whole.
func TestH1SlowSteadyBodyPassesWithMinRateOff(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	cfg := safetyConfig()
	cfg.BodyReadTimeout = 300 * time.Millisecond
	cfg.BodyMinRate = 0
	b := startBalancer(t, cfg, w)
	conn := dialH1(t, b)
	body := "abcdefghijklmnopqrst"
	done := slowBody(conn, "POST /steady HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n",
		strings.Split(body, ""), 100*time.Millisecond)
	defer close(done)
	if resp, got := conn.read(http.MethodPost); resp.StatusCode != http.StatusOK || got != echoOf("a", "/steady", body) {
		t.Errorf("got %d %q, want 200 %q", resp.StatusCode, got, echoOf("a", "/steady", body))
	}
}

// TestH1BodyAboveMinRatePasses pins that the rate check spares a client
// above BodyMinRate: 4 KiB per 50 ms (about 80 times the 1 KiB/s floor)
// for 2 s arrives whole.
func TestH1BodyAboveMinRatePasses(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	cfg := safetyConfig()
	cfg.BodyReadTimeout = 300 * time.Millisecond
	cfg.BodyMinRate = 1024
	b := startBalancer(t, cfg, w)
	conn := dialH1(t, b)
	pieces := make([]string, 40)
	for i := range pieces {
		pieces[i] = strings.Repeat(string(rune('a'+i%26)), 4096)
	}
	body := strings.Join(pieces, "")
	done := slowBody(conn, fmt.Sprintf("POST /rate HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body)),
		pieces, 50*time.Millisecond)
	defer close(done)
	if resp, got := conn.read(http.MethodPost); resp.StatusCode != http.StatusOK || got != echoOf("a", "/rate", body) {
		t.Errorf("got %d %q, want 200 %q", resp.StatusCode, got, echoOf("a", "/rate", body))
	}
}

// TestH1PipelinedRequestsAnsweredInOrder pins pipelining: requests written
// together on one connection, a body among them, are answered in order.
func TestH1PipelinedRequestsAnsweredInOrder(t *testing.T) {
	t.Parallel()
	w, rec := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	conn := dialH1(t, b)
	conn.send("GET /p1 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /p2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
		"GET /p3 HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{echoOf("a", "/p1", ""), echoOf("a", "/p2", "hello"), echoOf("a", "/p3", "")} {
		if resp, got := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK || got != want {
			t.Errorf("got %d %q, want 200 %q", resp.StatusCode, got, want)
		}
	}
	if uris, _ := rec.seen(); strings.Join(uris, " ") != "/p1 /p2 /p3" {
		t.Errorf("the worker saw %q, want /p1 /p2 /p3 in order", uris)
	}
}

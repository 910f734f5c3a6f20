package balancer

// Hostile-client probes: raw bytes from a client that tries the corners of
// RFC 9112 the safety tests leave out (request-line and header oddities,
// chunk extensions and trailers, leading blank lines, HTTP/1.0 rules).
// Hostile workers are in h1hostile_worker_test.go.

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golb/golb/balancer/h1"
)

// TestHostileRequestLinesRefused: request lines a strict parser refuses
// (RFC 9112 §3: single SP separators, "HTTP/1.x" exactly, a token method)
// and targets that are neither origin, absolute nor asterisk form.
func TestHostileRequestLinesRefused(t *testing.T) {
	t.Parallel()
	h := "\r\nHost: x\r\n\r\n"
	versions := []int{http.StatusHTTPVersionNotSupported}
	runRejects(t, safetyConfig, []h1Reject{
		{name: "double-space", req: "GET  /x HTTP/1.1" + h},
		{name: "space-before-version-twice", req: "GET /x  HTTP/1.1" + h},
		{name: "tab-separator", req: "GET\t/x HTTP/1.1" + h},
		{name: "leading-space", req: " GET /x HTTP/1.1" + h},
		{name: "trailing-space", req: "GET /x HTTP/1.1 " + h},
		{name: "no-version", req: "GET /x" + h},
		{name: "http-0.9", req: "GET /x\r\n\r\n"},
		{name: "version-junk", req: "GET /x HTTP/1.1x" + h},
		{name: "version-then-word", req: "GET /x HTTP/1.1 junk" + h},
		{name: "version-lowercase", req: "GET /x http/1.1" + h},
		{name: "version-two-digit-minor", req: "GET /x HTTP/1.10" + h},
		{name: "version-2", req: "GET /x HTTP/2.0" + h, codes: versions},
		{name: "method-not-token", req: "G(T /x HTTP/1.1" + h},
		{name: "target-del", req: "GET /a\x7fb HTTP/1.1" + h},
		{name: "target-cr", req: "GET /a\rb HTTP/1.1" + h},
		{name: "target-relative", req: "GET x HTTP/1.1" + h},
		{name: "target-asterisk-not-options", req: "GET * HTTP/1.1" + h},
		{name: "target-ftp-scheme", req: "GET ftp://x/ HTTP/1.1" + h},
		{name: "target-empty-authority", req: "GET http:///x HTTP/1.1" + h},
		{name: "no-host-1.1", req: "GET /x HTTP/1.1\r\n\r\n"},
		{name: "two-hosts", req: "GET /x HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"},
		{name: "two-hosts-1.0", req: "GET /x HTTP/1.0\r\nHost: x\r\nHost: y\r\n\r\n"},
		{name: "host-space-before-colon", req: "GET /x HTTP/1.1\r\nHost : x\r\n\r\n"},
	})
}

// TestHostileHeaderFramingRefused: Content-Length and Transfer-Encoding
// values that name no single length (RFC 9112 §6), and field lines that
// are no field lines.
func TestHostileHeaderFramingRefused(t *testing.T) {
	t.Parallel()
	post := "POST /x HTTP/1.1\r\nHost: x\r\n"
	runRejects(t, safetyConfig, []h1Reject{
		{name: "cl-empty", req: post + "Content-Length:\r\n\r\n"},
		{name: "cl-negative", req: post + "Content-Length: -1\r\n\r\n"},
		{name: "cl-19-digits", req: post + "Content-Length: 9999999999999999999\r\n\r\nabc"},
		{name: "cl-hex", req: post + "Content-Length: 0x3\r\n\r\nabc"},
		{name: "cl-comma-same", req: post + "Content-Length: 3,3\r\n\r\nabc"},
		{name: "cl-inner-space", req: post + "Content-Length: 1 2\r\n\r\nabc"},
		{name: "cl-and-te-zero", req: post + "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{name: "te-empty", req: post + "Transfer-Encoding:\r\n\r\n"},
		{name: "te-chunked-twice-one-line", req: post + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"},
		{name: "te-parameter", req: post + "Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n"},
		{name: "te-in-http-1.0", req: "POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{name: "te-vertical-tab", req: post + "Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n"},
		{name: "name-trailing-tab", req: post + "X-A\t: y\r\n\r\n"},
		{name: "name-obs-text", req: post + "X-\xe9: y\r\n\r\n"},
		{name: "value-bare-cr", req: post + "X-A: a\rb\r\n\r\n"},
	})
}

// TestHostileChunkFramingRefused: chunk-size lines and trailers a strict
// decoder refuses (RFC 9112 §7.1), the head being sound so it may reach a
// worker before the body turns out bad.
func TestHostileChunkFramingRefused(t *testing.T) {
	t.Parallel()
	runRejects(t, safetyConfig, []h1Reject{
		{name: "size-0x-prefix", req: chunkedHead + "0x5\r\nhello\r\n0\r\n\r\n", body: true},
		{name: "size-leading-space", req: chunkedHead + " 5\r\nhello\r\n0\r\n\r\n", body: true},
		{name: "size-trailing-junk", req: chunkedHead + "5x\r\nhello\r\n0\r\n\r\n", body: true},
		{name: "size-empty", req: chunkedHead + "\r\nhello\r\n0\r\n\r\n", body: true},
		{name: "ext-ctl", req: chunkedHead + "5;a=\x01\r\nhello\r\n0\r\n\r\n", body: true},
		{name: "ext-5KiB-split", req: chunkedHead + "5;" + strings.Repeat("e", 5<<10) + "\r\nhello\r\n0\r\n\r\n", body: true},
		{name: "data-longer-than-size", req: chunkedHead + "3\r\nhello\r\n0\r\n\r\n", body: true},
		{name: "trailer-obs-fold", req: chunkedHead + "0\r\nX-T: a\r\n b\r\n\r\n", body: true},
		{name: "trailer-no-colon", req: chunkedHead + "0\r\nNoColon\r\n\r\n", body: true},
		{name: "trailer-bare-lf", req: chunkedHead + "0\r\nX-T: a\n\r\n", body: true},
	})
}

// TestHostileChunkExtensionLineOverLimitRefused pins a bug: a chunk-size
// line longer than its 4 KiB bound was accepted whenever it arrived whole
// in one read (the bound was checked only while the line was incomplete).
func TestHostileChunkExtensionLineOverLimitRefused(t *testing.T) {
	t.Parallel()
	line := []byte("5;" + strings.Repeat("e", 6<<10) + "\r\nhello\r\n0\r\n\r\n")
	var rd h1.Reader
	rd.Reset(bytes.NewReader(line))
	for rd.Len() < len(line) {
		if _, err := rd.Fill(2 * h1.BufSize); err != nil {
			t.Fatalf("filling: %v", err)
		}
	}
	var ch h1.Chunked
	_, _, err := ch.Step(&rd)
	if he, ok := err.(*h1.Error); !ok || he.Status != http.StatusBadRequest {
		t.Errorf("a whole 6 KiB chunk-size line: %v, want a 400 *h1.Error", err)
	}
}

// TestHostileChunkedOdditiesAccepted: chunked bodies that are valid (or
// harmlessly lenient, golb re-frames every chunk) arrive intact.
func TestHostileChunkedOdditiesAccepted(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	for name, body := range map[string]string{
		"uppercase-hex":  "A\r\nhellohello\r\n0\r\n\r\n",
		"leading-zeros":  "0005\r\nhello\r\n0000\r\n\r\n",
		"ext":            "5;name=value;flag\r\nhello\r\n0;last\r\n\r\n",
		"ext-bws":        "5 ;name=\"quoted; value\"\r\nhello\r\n0\r\n\r\n",
		"ext-1KiB":       "5;" + strings.Repeat("e", 1<<10) + "\r\nhello\r\n0\r\n\r\n",
		"trailer":        "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: d\r\n\r\n",
		"empty-body":     "0\r\n\r\n",
		"size-then-tabs": "5\t\t;e\r\nhello\r\n0\r\n\r\n",
	} {
		conn := dialH1(t, b)
		want := "hello"
		switch name {
		case "uppercase-hex":
			want = "hellohello"
		case "empty-body":
			want = ""
		}
		conn.send(chunkedHead + body)
		resp, got := conn.read(http.MethodPost)
		if w := echoOf("a", "/api/v1/hello", want); resp.StatusCode != http.StatusOK || got != w {
			t.Errorf("%s: %d %q, want 200 %q", name, resp.StatusCode, got, w)
		}
	}
	// The CRLF after chunk data split across two reads.
	conn := dialH1(t, b)
	conn.send(chunkedHead + "5\r\nhello\r")
	time.Sleep(20 * time.Millisecond)
	conn.send("\n0\r\n\r\n")
	if resp, got := conn.read(http.MethodPost); resp.StatusCode != http.StatusOK || got != echoOf("a", "/api/v1/hello", "hello") {
		t.Errorf("split CRLF: %d %q", resp.StatusCode, got)
	}
}

// TestHostileLeadingBlankLinesAreLinear pins a bug: ScanHead re-checked
// every byte before each leading blank line (RFC 9112 §2.2 lets a server
// skip them), so a head of 64 KiB of CRLFs cost half a second of CPU, a
// cheap way for a client to burn the proxy's cores. 256 KiB of them,
// arriving a KiB per read, now scan in linear time (quadratic took
// minutes).
func TestHostileLeadingBlankLinesAreLinear(t *testing.T) {
	t.Parallel()
	blank := bytes.Repeat([]byte("\r\n"), 128<<10)
	buf := append(blank, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
	resume := 0
	for n := 1 << 10; ; n = min(n+1<<10, len(buf)) {
		end, next, err := h1.ScanHead(buf[:n], resume)
		if err != nil {
			t.Fatalf("at %d bytes: %v", n, err)
		}
		if end > 0 {
			if end != len(buf) {
				t.Errorf("head ends at %d, want %d", end, len(buf))
			}
			break
		}
		if n == len(buf) {
			t.Fatal("no end of head found")
		}
		resume = next
	}
	// Blank lines after a non-blank one end the head, also when resumed.
	for _, c := range []struct {
		in   string
		from int
		end  int
	}{
		{"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 0, 22},
		{"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 2, 22},
		{"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 4, 22},
		{"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 20, 22},
		{"GET / HTTP/1.1\r\nA: b\r\n\r\n", 22, 24},
		{"\r\n", 0, 0},
		{"\r\n\r\n", 2, 0},
	} {
		if end, _, err := h1.ScanHead([]byte(c.in), c.from); err != nil || end != c.end {
			t.Errorf("ScanHead(%q, %d) = %d, %v; want %d", c.in, c.from, end, err, c.end)
		}
	}
}

func BenchmarkHostileLeadingBlankLines(b *testing.B) {
	buf := append(bytes.Repeat([]byte("\r\n"), 32<<10), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		resume := 0
		for n := 1 << 10; ; n = min(n+1<<10, len(buf)) {
			end, next, _ := h1.ScanHead(buf[:n], resume)
			if end > 0 {
				break
			}
			resume = next
		}
	}
}

// TestHostileLeadingBlankLinesSkipped: a few CRLFs before a request line
// are ignored (RFC 9112 §2.2), also between pipelined requests.
func TestHostileLeadingBlankLinesSkipped(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	conn := dialH1(t, b)
	conn.send("\r\n\r\nGET /one HTTP/1.1\r\nHost: x\r\n\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{echoOf("a", "/one", ""), echoOf("a", "/two", "")} {
		if resp, got := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK || got != want {
			t.Errorf("got %d %q, want 200 %q", resp.StatusCode, got, want)
		}
	}
}

// TestHostileExpect100IgnoredForHTTP10 pins a bug: golb answered an
// HTTP/1.0 request's Expect: 100-continue with "HTTP/1.1 100 Continue",
// which an HTTP/1.0 client reads as the final answer (RFC 9110 §10.1.1: a
// server MUST ignore that expectation in an HTTP/1.0 request).
func TestHostileExpect100IgnoredForHTTP10(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	conn := dialH1(t, b)
	conn.send("POST /e HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	time.Sleep(50 * time.Millisecond) // the body comes later: golb streams it
	conn.send("hello")
	if resp, got := conn.read(http.MethodPost); resp.StatusCode != http.StatusOK || got != echoOf("a", "/e", "hello") {
		t.Errorf("first answer %d %q, want the final 200 (no 100 to an HTTP/1.0 client)", resp.StatusCode, got)
	}
	conn.expectClosed()
}

// TestHostileHTTP10KeepAlive: an HTTP/1.0 request is answered and closed
// unless it asks for keep-alive, and then the answer says keep-alive and
// the connection serves another request.
func TestHostileHTTP10KeepAlive(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	conn := dialH1(t, b)
	for _, p := range []string{"/k1", "/k2"} {
		conn.send("GET " + p + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		resp, got := conn.read(http.MethodGet)
		if resp.StatusCode != http.StatusOK || got != echoOf("a", p, "") || !strings.EqualFold(resp.Header.Get("Connection"), "keep-alive") {
			t.Errorf("%s: %d %q Connection %q, want 200 keep-alive", p, resp.StatusCode, got, resp.Header.Get("Connection"))
		}
	}
	conn.send("GET /k3 HTTP/1.0\r\n\r\n")
	if resp, _ := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK {
		t.Errorf("/k3: %d", resp.StatusCode)
	}
	conn.expectClosed()
}

// TestHostileHTTP12IsServedAsHTTP11: a higher minor version of HTTP/1
// SHOULD be processed as the highest one implemented (RFC 9110 §2.5);
// golb answered 505.
func TestHostileHTTP12IsServedAsHTTP11(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	conn := dialH1(t, b)
	conn.send("GET /v HTTP/1.2\r\nHost: x\r\n\r\n")
	if resp, _ := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK || resp.Close {
		t.Errorf("HTTP/1.2: %d (close %v), want 200 on a kept connection", resp.StatusCode, resp.Close)
	}
}

// TestHostileInvalidHostRefused: an invalid Host, or an absolute-form
// target's authority with userinfo or a fragment, reached the worker as
// it came; RFC 9112 §3.2 puts the 400 on the server that receives it.
// The absolute form's authority replaces Host; neither case is charged to
// the worker.
func TestHostileInvalidHostRefused(t *testing.T) {
	t.Parallel()
	w, rec := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	for _, tc := range []struct {
		req  string
		want int
	}{
		{"GET http://user:pw@h.example/u HTTP/1.1\r\nHost: other\r\n\r\n", 400},
		{"GET /s HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"GET /c HTTP/1.1\r\nHost: a, b\r\n\r\n", 400},
		{"GET /f HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
		{"GET http://h.example#frag HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"GET /at HTTP/1.1\r\nHost: a@b\r\n\r\n", 400},
		{"GET /ok HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 200},
		{"GET http://h.example:81/abs HTTP/1.1\r\nHost: other\r\n\r\n", 200},
		{"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 200},
		{"get /lower HTTP/1.1\r\nHost: x\r\n\r\n", 200},
		// An absolute target's host was checked for its bytes alone: no
		// name, a port that is no number, or an invalid Host beside it
		// (RFC 9112 §3.2) reached the worker.
		{"GET http://:80/noname HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"GET http://h.example:abc/port HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"GET http://h.example/beside HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"GET /p HTTP/1.1\r\nHost: h.example:8o\r\n\r\n", 400},
	} {
		conn := dialH1(t, b)
		conn.send(tc.req)
		resp, body := conn.read(http.MethodGet)
		line := strings.SplitN(tc.req, "\r\n", 3)[:2]
		t.Logf("%q: %d %q", line, resp.StatusCode, abbrev(body))
		if resp.StatusCode != tc.want {
			t.Errorf("%q: %d, want %d", line, resp.StatusCode, tc.want)
		}
	}
	notCharged(t, b, w)
	uris, hosts := rec.seen()
	t.Logf("the worker saw targets %q with hosts %q", uris, hosts)
	if !slices.Contains(hosts, "h.example:81") || slices.ContainsFunc(hosts, func(h string) bool { return strings.ContainsAny(h, " /@#") }) {
		t.Errorf("the worker saw hosts %q", hosts)
	}
}

// TestHostileTooManyFieldsRefused: a head of 15,000 empty fields was
// parsed whole, and its field list kept for the connection's life; more
// than h1.MaxFields fields are now answered 431, and no worker sees them.
func TestHostileTooManyFieldsRefused(t *testing.T) {
	t.Parallel()
	var seen atomic.Int64
	w := newWorker(t, "a", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		seen.Add(1)
	}))
	b := startBalancer(t, safetyConfig(), w)
	for _, tc := range []struct {
		fields int
		want   int
	}{{h1.MaxFields - 1, http.StatusOK}, {h1.MaxFields + 1, http.StatusRequestHeaderFieldsTooLarge}, {(60 << 10) / len("a:\r\n"), http.StatusRequestHeaderFieldsTooLarge}} {
		conn := dialH1(t, b)
		before := seen.Load()
		// Host is one field: fields-1 more make fields.
		conn.send("GET /many HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("a:\r\n", tc.fields-1) + "\r\n")
		resp, _ := conn.read(http.MethodGet)
		t.Logf("%d fields: %d", tc.fields, resp.StatusCode)
		if resp.StatusCode != tc.want {
			t.Errorf("%d fields: status %d, want %d", tc.fields, resp.StatusCode, tc.want)
		}
		if got := seen.Load() - before; tc.want != http.StatusOK && got != 0 {
			t.Errorf("%d fields: the worker saw the request", tc.fields)
		}
	}
	if s := statsOf(t, b, "a"); s.Failed != 0 {
		t.Errorf("worker charged: %+v", s)
	}
}

// TestHostileLargeTrailerAnswered pins a bug: a request trailer section
// larger than the 8 KiB body buffer but within MaxHeaderBytes (the bound
// sendBody gave the decoder) made Fill fail with ErrBufferFull, which
// clientBodyFailed took for a client gone away: the connection was closed
// with no answer at all. A trailer over 4 KiB (maxTrailer) is now a 400.
func TestHostileLargeTrailerAnswered(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	ok := dialH1(t, b)
	ok.send(chunkedHead + "5\r\nhello\r\n0\r\nX-Big: " + strings.Repeat("t", 3<<10) + "\r\n\r\n")
	if resp, _ := ok.read(http.MethodPost); resp.StatusCode != http.StatusOK {
		t.Errorf("a 3 KiB trailer: %d, want 200", resp.StatusCode)
	}
	conn := dialH1(t, b)
	conn.send(chunkedHead + "5\r\nhello\r\n0\r\nX-Big: " + strings.Repeat("t", 12<<10) + "\r\n\r\n")
	resp := conn.closedOrAnswered(time.Now().Add(10 * time.Second))
	if resp == nil || resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Errorf("a 12 KiB trailer: %v, want a 4xx answer", resp)
	}
	notCharged(t, b, w)
}

// TestHostileFatHeadIsNotKeptByAnIdleConnection pins a memory
// amplification: a client connection kept, while idle, the scratch it
// needed for its largest request: the copy of the head sent to the worker
// (and, before h1.MaxFields, a parsed field list of 15,000 entries for a
// 60 KiB head of "a:" lines). The read buffer itself is given back (Shrink,
// Release); these were not, so a 60 KiB head sent once held ~800 KiB per
// connection for as long as it idled (IdleTimeout, 120 s by default).
func TestHostileFatHeadIsNotKeptByAnIdleConnection(t *testing.T) {
	w := newWorker(t, "a", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {}))
	b := startBalancer(t, safetyConfig(), w)
	const conns = 40
	fat := "GET /fat HTTP/1.1\r\nHost: x\r\nA: " + strings.Repeat("a", 30<<10) + "\r\nB: " + strings.Repeat("b", 29<<10) + "\r\n\r\n"
	open := func(req string) uint64 {
		runtime.GC()
		before := heapInuse()
		for range conns {
			conn := dialH1(t, b)
			conn.send(req)
			if resp, _ := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
		runtime.GC()
		after := heapInuse()
		if after < before {
			return 0
		}
		return (after - before) / conns
	}
	small := open("GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
	big := open(fat)
	t.Logf("heap held per idle connection: %d B after a small request, %d B after a 60 KiB head of tiny fields", small, big)
	if big > small+64<<10 {
		t.Errorf("an idle connection holds %d KiB more after one fat head, want under 64 KiB more", (big-small)>>10)
	}
}

// TestHostileBadRequestsLeakNothing: hundreds of refused requests of every
// kind leave no client connection open and no goroutine behind.
func TestHostileBadRequestsLeakNothing(t *testing.T) {
	w, _ := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	runtime.GC()
	base := runtime.NumGoroutine()
	bad := []string{
		"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		chunkedHead + "zz\r\n",
		chunkedHead + "5\r\nhelloXX",
		"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00\r\n\r\n",
		"CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
		strings.Repeat("\r\n", 100) + "GET\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", // then closed
	}
	for i := range 300 {
		c, err := net.Dial("tcp", b.Addrs()[0])
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, bad[i%len(bad)])
		closeWrite(c)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 4096))
		_ = c.Close()
	}
	waitFor(t, "every client connection closed", func() bool { return b.open.Load() == 0 && b.InFlight() == 0 })
	waitFor(t, "goroutines back to their number before", func() bool { return runtime.NumGoroutine() <= base+5 })
	notCharged(t, b, w)
	t.Logf("client errors counted: %d", b.clientErrors.Load())
}

// TestLargeHeadsShareAMemoryBudget pins memory held by unfinished heads:
// 4,000 connections each sending 64 KiB of a head it never finished took
// golb from 69 to 362 MiB of RSS (each head legal alone). Read buffers
// grown past their first 4 KiB share headBudget: past it, a head that
// needs more is answered 503 and closed, small requests are served as
// ever, and the budget is given back exactly as connections go.
// Not parallel: it lowers the package's budget.
func TestLargeHeadsShareAMemoryBudget(t *testing.T) {
	w, _ := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	before := headMem.Load()
	old := headBudget.Load()
	headBudget.Store(256 << 10)
	defer headBudget.Store(old)

	fat := "GET /fat HTTP/1.1\r\nHost: x\r\nX-Fat: " + strings.Repeat("f", 60<<10)
	var held, refused []*h1Conn
	for range 10 {
		conn := dialH1(t, b)
		conn.send(fat) // no end of head: the connection waits, holding it
		held = append(held, conn)
	}
	waitFor(t, "the heads read or refused", func() bool { return headMem.Load()-before >= 3*(32<<10) })
	for _, conn := range held {
		_ = conn.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		resp, err := http.ReadResponse(conn.br, nil)
		if err == nil {
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("a refused fat head: %d, want 503", resp.StatusCode)
			}
			resp.Body.Close()
			refused = append(refused, conn)
		}
	}
	t.Logf("%d of 10 fat heads refused; %d KiB held by the rest (budget 256)", len(refused), (headMem.Load()-before)>>10)
	if n := headMem.Load() - before; n > headBudget.Load() {
		t.Errorf("%d bytes held by heads, over the budget of %d", n, headBudget.Load())
	}
	if len(refused) == 0 || len(refused) == 10 {
		t.Errorf("%d of 10 fat heads refused, want some but not all", len(refused))
	}
	small := dialH1(t, b)
	small.send("GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := small.read(http.MethodGet); resp.StatusCode != http.StatusOK {
		t.Errorf("a small request while the budget is spent: %d, want 200", resp.StatusCode)
	}
	for _, conn := range held {
		_ = conn.c.Close()
	}
	waitFor(t, "the budget given back", func() bool { return headMem.Load() == before })
	whole := dialH1(t, b)
	whole.send(fat + "\r\n\r\n")
	if resp, _ := whole.read(http.MethodGet); resp.StatusCode != http.StatusOK {
		t.Errorf("a fat head once the budget is back: %d, want 200", resp.StatusCode)
	}
	waitFor(t, "the budget given back after a served fat head", func() bool {
		_ = whole.c.Close()
		return headMem.Load() == before
	})
}

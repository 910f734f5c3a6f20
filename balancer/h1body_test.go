package balancer

// HTTP/1.1 correctness over raw connections: bodies in both directions,
// responses without bodies, keep-alive, Connection: close, upgrades. The
// helpers (h1Conn, h1Recorder, safetyConfig) are in h1safety_test.go.

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestH1Expect100ContinueForwardsBody pins Expect: 100-continue: a client
// that waits for 100 Continue before its body gets it, and the worker
// gets the whole body.
func TestH1Expect100ContinueForwardsBody(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	conn := dialH1(t, b)
	conn.send("POST /expect HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
	if resp, _ := conn.read(http.MethodPost); resp.StatusCode != http.StatusContinue {
		t.Fatalf("first answer %d, want 100 Continue before the body", resp.StatusCode)
	}
	conn.send("hello world")
	if resp, got := conn.read(http.MethodPost); resp.StatusCode != http.StatusOK || got != echoOf("a", "/expect", "hello world") {
		t.Errorf("got %d %q, want 200 %q", resp.StatusCode, got, echoOf("a", "/expect", "hello world"))
	}
}

// chunk renders data as one chunk, with a chunk extension if ext is set.
func chunk(data, ext string) string {
	return fmt.Sprintf("%x%s\r\n%s\r\n", len(data), ext, data)
}

// TestH1ChunkedRequestBodyArrivesIntact pins chunked decoding: chunks of
// many sizes, upper-case hex, an extension and a trailer reach the worker
// as the exact body, and the connection stays in step for the next request.
func TestH1ChunkedRequestBodyArrivesIntact(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(rng.UintN(256))
	}
	var req strings.Builder
	req.WriteString(chunkedHead)
	rest := string(data)
	for i, size := range []int{1, 7, 255, 4096, 65536, 1 << 20} {
		ext := ""
		if i == 2 {
			ext = ";name=value"
		}
		req.WriteString(chunk(rest[:size], ext))
		rest = rest[size:]
	}
	fmt.Fprintf(&req, "%X\r\n%s\r\n", len(rest), rest) // upper-case hex
	req.WriteString("0\r\nX-Trailer: t\r\n\r\n")
	conn := dialH1(t, b)
	conn.send(req.String())
	if resp, got := conn.read(http.MethodPost); resp.StatusCode != http.StatusOK || got != echoOf("a", "/api/v1/hello", string(data)) {
		t.Errorf("got %d %q, want 200 %q", resp.StatusCode, got, echoOf("a", "/api/v1/hello", string(data)))
	}
	conn.send("GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, got := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK || got != echoOf("a", "/next", "") {
		t.Errorf("next request on the connection: %d %q", resp.StatusCode, got)
	}
}

// TestH1ChunkedResponseReachesRawClient pins response framing: a worker's
// answer without Content-Length, written and flushed in pieces, arrives
// whole, and the client connection stays usable.
func TestH1ChunkedResponseReachesRawClient(t *testing.T) {
	t.Parallel()
	w := newWorker(t, "a", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(rw)
		for i := range 5 {
			fmt.Fprintf(rw, "piece %d %s\n", i, strings.Repeat("x", i*1000))
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}))
	b := startBalancer(t, safetyConfig(), w)
	var want strings.Builder
	for i := range 5 {
		fmt.Fprintf(&want, "piece %d %s\n", i, strings.Repeat("x", i*1000))
	}
	conn := dialH1(t, b)
	for i := range 2 {
		conn.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, got := conn.read(http.MethodGet)
		if resp.StatusCode != http.StatusOK || got != want.String() {
			t.Errorf("request %d: %d, %d bytes %q, want 200 and %d bytes", i, resp.StatusCode, len(got), abbrev(got), want.Len())
		}
		if resp.Close {
			t.Fatalf("request %d: the balancer closed the connection after a streamed answer", i)
		}
	}
}

// TestH1HeadResponseHasNoBody pins HEAD: the worker's headers (its
// Content-Length included) and no body, after which the same connection
// answers a GET in step.
func TestH1HeadResponseHasNoBody(t *testing.T) {
	t.Parallel()
	w := newWorker(t, "a", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Length", "12")
		_, _ = io.WriteString(rw, "hello world\n")
	}))
	b := startBalancer(t, safetyConfig(), w)
	conn := dialH1(t, b)
	conn.send("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, got := conn.read(http.MethodHead)
	if resp.StatusCode != http.StatusOK || got != "" || resp.Header.Get("Content-Length") != "12" {
		t.Errorf("HEAD: %d body %q Content-Length %q, want 200, no body, 12", resp.StatusCode, got, resp.Header.Get("Content-Length"))
	}
	conn.send("GET /h HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, got := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK || got != "hello world\n" {
		t.Errorf("GET after HEAD: %d %q, want 200 %q", resp.StatusCode, got, "hello world\n")
	}
}

// rawAnswer is what the hijacking worker below writes for a path, among
// them a 304 that names a Content-Length (RFC 9110 §8.6 allows it; Go's
// server would strip it).
func rawAnswer(path string) string {
	switch path {
	case "/304":
		return "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 100\r\n\r\n"
	case "/204":
		return "HTTP/1.1 204 No Content\r\n\r\n"
	case "/healthz":
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	}
	return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nafter"
}

// TestH1NoBodyStatusesKeepConnectionInSync pins 204 and 304: no body is
// read or sent, even for a 304 that names a Content-Length, and the next
// request on the connection is answered.
func TestH1NoBodyStatusesKeepConnectionInSync(t *testing.T) {
	t.Parallel()
	w := newWorker(t, "a", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			rw.WriteHeader(http.StatusNoContent)
			return
		case "/304":
		default:
			_, _ = io.WriteString(rw, "after")
			return
		}
		// Take the connection over and keep serving it in raw bytes.
		c, brw, err := http.NewResponseController(rw).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		for path := r.URL.Path; ; {
			if _, err := brw.WriteString(rawAnswer(path)); err != nil || brw.Flush() != nil {
				return
			}
			req, err := http.ReadRequest(brw.Reader)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			path = req.URL.Path
		}
	}))
	b := startBalancer(t, safetyConfig(), w)
	conn := dialH1(t, b)
	for _, c := range []struct {
		path string
		code int
		body string
	}{{"/204", 204, ""}, {"/after", 200, "after"}, {"/304", 304, ""}, {"/after", 200, "after"}, {"/304", 304, ""}, {"/204", 204, ""}, {"/after", 200, "after"}} {
		conn.send("GET " + c.path + " HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"v1\"\r\n\r\n")
		if resp, got := conn.read(http.MethodGet); resp.StatusCode != c.code || got != c.body {
			t.Errorf("GET %s: %d %q, want %d %q", c.path, resp.StatusCode, got, c.code, c.body)
		}
	}
}

// heapInuse reads the Go heap in use.
func heapInuse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestH1HugeUploadStreamsInFlatMemory pins streaming: a 1 GiB upload
// (256 MiB with -short) reaches the worker byte-exact while the heap
// (balancer, worker and client share this process) grows by under 64 MiB.
// Not parallel: it would starve the timeout tests of CPU.
func TestH1HugeUploadStreamsInFlatMemory(t *testing.T) {
	size := int64(1 << 30)
	if testing.Short() {
		size = 256 << 20
	}
	var got atomic.Int64
	w := newWorker(t, "sink", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		got.Store(n)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprint(rw, n)
	}))
	b := startBalancer(t, safetyConfig(), w)
	conn := dialH1(t, b)

	runtime.GC()
	before := heapInuse()
	var peak atomic.Uint64
	peak.Store(before)
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if h := heapInuse(); h > peak.Load() {
					peak.Store(h)
				}
			}
		}
	})

	start := time.Now()
	conn.send(fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size))
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i)
	}
	for sent := int64(0); sent < size; sent += int64(len(buf)) {
		_ = conn.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.c.Write(buf); err != nil {
			t.Errorf("writing the body at byte %d: %v", sent, err)
			break
		}
	}
	resp, body := conn.read(http.MethodPost)
	took := time.Since(start)
	close(stop)
	sampler.Wait()

	grew := int64(peak.Load()) - int64(before)
	t.Logf("%d MiB in %v (%.0f MiB/s); heap in use %d MiB before, peak +%d MiB",
		size>>20, took.Round(time.Millisecond), float64(size>>20)/took.Seconds(), before>>20, grew>>20)
	if resp.StatusCode != http.StatusOK || body != strconv.FormatInt(size, 10) || got.Load() != size {
		t.Errorf("got %d %q, worker counted %d bytes; want 200 and %d", resp.StatusCode, abbrev(body), got.Load(), size)
	}
	if grew > 64<<20 {
		t.Errorf("heap grew by %d MiB during the upload, want under 64 MiB: the body was buffered", grew>>20)
	}
}

// TestH1KeepAlive5000RequestsOnOneConnection pins keep-alive: 5000
// sequential requests on one client connection are all answered, in
// order, and each reaches the worker once.
// Not parallel: it would starve the timeout tests of CPU.
func TestH1KeepAlive5000RequestsOnOneConnection(t *testing.T) {
	w, _ := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	conn := dialH1(t, b)
	const n = 5000
	start := time.Now()
	for i := range n {
		uri := "/ka/" + strconv.Itoa(i)
		conn.send("GET " + uri + " HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, got := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK || got != echoOf("a", uri, "") || resp.Close {
			t.Fatalf("request %d: %d %q close=%v, want a kept-alive 200 for %s", i, resp.StatusCode, got, resp.Close, uri)
		}
	}
	t.Logf("%d requests on one connection in %v", n, time.Since(start).Round(time.Millisecond))
	if h := w.hits.Load(); h != n {
		t.Errorf("the worker saw %d requests, want %d", h, n)
	}
}

// TestH1ClientConnectionCloseIsHonoured pins a client's Connection: close:
// the request is answered, then the connection is closed.
func TestH1ClientConnectionCloseIsHonoured(t *testing.T) {
	t.Parallel()
	w, _ := newH1Worker(t, "a")
	b := startBalancer(t, safetyConfig(), w)
	conn := dialH1(t, b)
	conn.send("GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp, got := conn.read(http.MethodGet); resp.StatusCode != http.StatusOK || got != echoOf("a", "/bye", "") {
		t.Errorf("got %d %q, want 200 %q", resp.StatusCode, got, echoOf("a", "/bye", ""))
	}
	conn.expectClosed()
}

// TestH1WorkerConnectionCloseStaysHopByHop pins that a worker's
// Connection: close concerns its own connection: the client's stays open
// and usable, and the balancer does not reuse the closed one (which would
// charge the worker a broken attempt).
func TestH1WorkerConnectionCloseStaysHopByHop(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	remotes := map[string]bool{}
	w := newWorker(t, "a", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		remotes[r.RemoteAddr] = true
		mu.Unlock()
		rw.Header().Set("Connection", "close")
		_, _ = io.WriteString(rw, "closing mine")
	}))
	b := startBalancer(t, safetyConfig(), w)
	conn := dialH1(t, b)
	for i := range 3 {
		conn.send("GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, got := conn.read(http.MethodGet)
		if resp.StatusCode != http.StatusOK || got != "closing mine" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, got)
		}
		if resp.Close {
			t.Errorf("request %d: the worker's Connection: close reached the client", i)
		}
	}
	notCharged(t, b, w)
	mu.Lock()
	defer mu.Unlock()
	if len(remotes) != 3 || w.hits.Load() != 3 {
		t.Errorf("the worker saw %d requests on %d connections, want 3 on 3", w.hits.Load(), len(remotes))
	}
}

// upgradeEcho is a worker handler that answers a WebSocket-style upgrade
// with 101 and greeting, then echoes what it reads until the balancer
// closes.
func upgradeEcho(greeting string) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(rw, "no upgrade header", http.StatusBadRequest)
			return
		}
		c, brw, err := http.NewResponseController(rw).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" + greeting)
		if brw.Flush() != nil {
			return
		}
		_, _ = io.Copy(c, brw)
	})
}

// TestH1UpgradeTunnelsBothWays pins protocol upgrades: a WebSocket-style
// upgrade gets the worker's 101, then bytes flow both ways, the worker's
// first.
func TestH1UpgradeTunnelsBothWays(t *testing.T) {
	t.Parallel()
	w := newWorker(t, "a", upgradeEcho("srv:hello\n"))
	b := startBalancer(t, safetyConfig(), w)
	conn := dialH1(t, b)
	conn.send("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	resp, _ := conn.read(http.MethodGet)
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("got %d Upgrade %q, want 101 websocket", resp.StatusCode, resp.Header.Get("Upgrade"))
	}
	_ = conn.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := conn.br.ReadString('\n'); line != "srv:hello\n" {
		t.Fatalf("first bytes from the worker: %q, %v", line, err)
	}
	blob := make([]byte, 256<<10)
	for i := range blob {
		blob[i] = byte(i * 7)
	}
	for _, msg := range []string{"ping-1\n", string(blob), "ping-2\n"} {
		// Written while the echo is read: neither side waits on the other.
		sent := make(chan error, 1)
		go func() { sent <- conn.trySend(msg) }()
		echo := make([]byte, len(msg))
		_ = conn.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(conn.br, echo); err != nil || string(echo) != msg {
			t.Fatalf("echo of %d bytes: %v, got md5 %x, want %x", len(msg), err, md5.Sum(echo), md5.Sum([]byte(msg)))
		}
		if err := <-sent; err != nil {
			t.Fatalf("writing %d bytes through the tunnel: %v", len(msg), err)
		}
	}
}

// TestH1ClientThatReadsNothingIsCut pins a slow-read hold: a client that
// asks for a large answer and never reads it kept a goroutine, a worker
// connection and the attempt in flight for as long as it liked. A write
// that cannot go on for IdleTimeout now ends the exchange.
func TestH1ClientThatReadsNothingIsCut(t *testing.T) {
	big := newWorker(t, "big", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for range 1024 { // 64 MiB, far more than socket buffers hold
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	cfg := testConfig()
	cfg.IdleTimeout = 300 * time.Millisecond
	b := startBalancer(t, cfg, big)
	c, err := net.Dial("tcp", b.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, "the stalled answer to end", func() bool {
		s := statsOf(t, b, "big")
		return s.InFlight == 0 && s.Success+s.Failed == 1
	})
	t.Logf("an unread answer ended %v after the request (IdleTimeout %v)", time.Since(start).Round(time.Millisecond), cfg.IdleTimeout)
}

// TestUpgradedConnectionIsInFlightUntilItCloses pins a drain that did not
// wait: an upgraded connection (WebSocket) was released from its worker's
// in-flight count when its tunnel began, so WaitIdle returned at once and
// a worker being drained was stopped under its open tunnels, which the
// autoscaler and least_requests never saw either. It counts until it
// closes.
func TestUpgradedConnectionIsInFlightUntilItCloses(t *testing.T) {
	t.Parallel()
	w := newWorker(t, "a", upgradeEcho(""))
	b := startBalancer(t, safetyConfig(), w)
	conn := dialH1(t, b)
	conn.send("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if resp, _ := conn.read(http.MethodGet); resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("got %d, want 101", resp.StatusCode)
	}
	if n := b.InFlight(); n != 1 {
		t.Errorf("in flight with a tunnel open: %d, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := b.WaitIdle(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitIdle with a tunnel open: %v, want it to wait until its deadline", err)
	}
	idle := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		idle <- b.WaitIdle(ctx, "a")
	}()
	_ = conn.c.Close()
	if err := <-idle; err != nil {
		t.Errorf("WaitIdle once the tunnel closed: %v", err)
	}
	if s := statsOf(t, b, "a"); s.Success != 1 || s.Failed != 0 {
		t.Errorf("the upgrade counted %d answered, %d failed; want 1, 0", s.Success, s.Failed)
	}
}

package balancer

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection: ours, wrapped
// in rawIO, and the peer's.
func tcpPair(t *testing.T) (*net.TCPConn, io.ReadWriter, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); peer.Close() })
	rw := newRawIO(nc, 10*time.Second)
	if _, ok := rw.(*rawIO); !ok {
		t.Fatalf("newRawIO gave %T, want *rawIO", rw)
	}
	return nc.(*net.TCPConn), rw, peer
}

// The send-then-wait call returns once the answer has come, and the answer
// is then there to read: no read had to find the socket empty first.
func TestAskReturnsWhenTheAnswerComes(t *testing.T) {
	nc, rw, peer := tcpPair(t)
	go func() {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(peer, buf); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond) // the answer comes after the wait began
		_, _ = peer.Write([]byte("pong:" + string(buf)))
	}()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := ask(rw, []byte("ping!"))
	if n != 5 || err != nil {
		t.Fatalf("ask = %d, %v; want 5, nil", n, err)
	}
	buf := make([]byte, 64)
	m, err := rw.Read(buf)
	if err != nil || string(buf[:m]) != "pong:ping!" {
		t.Fatalf("read after ask = %q, %v", buf[:m], err)
	}
}

// A peer that never answers ends the wait at the read deadline, with all of
// the request sent: the caller tells "sent, no answer yet" from "not sent".
func TestAskTimesOutAtTheReadDeadline(t *testing.T) {
	nc, rw, _ := tcpPair(t)
	_ = nc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := ask(rw, []byte("hello"))
	if n != 5 || !isTimeout(err) {
		t.Fatalf("ask = %d, %v; want 5 and a timeout", n, err)
	}
}

// A peer that closed its end while the connection was idle wakes the wait
// (a pooled connection the worker closed), so the caller retries at once
// instead of waiting for the deadline.
func TestAskWakesWhenThePeerHasClosed(t *testing.T) {
	nc, rw, peer := tcpPair(t)
	peer.Close()
	time.Sleep(50 * time.Millisecond) // the close arrives before the ask
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	n, err := ask(rw, []byte("hello"))
	if err == nil || n == 5 {
		// The send itself may succeed; the read after it must then see
		// the close.
		m, rerr := rw.Read(make([]byte, 8))
		if rerr == nil {
			t.Fatalf("read after ask on a closed peer = %d bytes, no error", m)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("ask on a closed peer waited %v: it should wake at once", d)
	}
	t.Logf("ask on a closed peer returned after %v (n=%d err=%v)", time.Since(start), n, err)
}

// A request larger than the socket takes at once is sent in part; the
// caller writes the rest and reads as usual.
func TestAskSendsInPartWhenTheSocketIsFull(t *testing.T) {
	nc, rw, peer := tcpPair(t)
	_ = nc.SetWriteBuffer(4096)
	big := bytes.Repeat([]byte("x"), 4<<20)
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := ask(rw, big)
	if err != nil || n == 0 || n >= len(big) {
		t.Fatalf("ask of %d bytes into a full socket = %d, %v; want a part, nil", len(big), n, err)
	}
	done := make(chan int64)
	go func() {
		got, _ := io.Copy(io.Discard, peer)
		done <- got
	}()
	if _, err := rw.Write(big[n:]); err != nil {
		t.Fatalf("writing the rest: %v", err)
	}
	nc.CloseWrite()
	if got := <-done; got != int64(len(big)) {
		t.Fatalf("peer got %d bytes, want %d", got, len(big))
	}
}

// Regression: a request whose first watch deadline (20 ms after it is
// due to go out) passed before it was sent, as when a busy machine pauses
// its goroutine, was answered 504 and charged to the worker, which never
// saw it. It must be sent and waited for like any other.
func TestRequestSentAfterItsWatchDeadlinePassed(t *testing.T) {
	w := newWorker(t, "w1", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond)
		_, _ = io.WriteString(rw, "late ok")
	}))
	cfg := testConfig()
	cfg.watchAfter = time.Nanosecond // passed by the time the request goes out
	b := startBalancer(t, cfg, w)
	c := testClient()
	const n = 20
	for i := 0; i < n; i++ {
		if code, body := get(t, c, baseURL(b)+"/x"); code != 200 || body != "late ok" {
			t.Fatalf("request %d: %d %q, want 200 \"late ok\"", i, code, body)
		}
	}
	if s := statsOf(t, b, "w1"); s.Success != n || s.Failed != 0 {
		t.Fatalf("stats: %d succeeded, %d failed; want %d, 0", s.Success, s.Failed, n)
	}
}

// Regression: a worker that wrote its response head in two pieces, more
// than the first watch interval (20 ms) apart, got its client a 504 at
// once and was charged a failure: the wait went on only while nothing of
// the head was buffered.
func TestResponseHeadInPiecesIsWaitedFor(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func(nc net.Conn) {
				defer nc.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := nc.Read(buf); err != nil {
						return
					}
					_, _ = io.WriteString(nc, "HTTP/1.1 200 OK\r\n")
					time.Sleep(300 * time.Millisecond)
					_, _ = io.WriteString(nc, "Content-Length: 2\r\n\r\nok")
				}
			}(nc)
		}
	}()
	cfg := testConfig()
	cfg.Health.Interval = -1 // a raw backend: no health checks
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	b.SetBackends([]Backend{{ID: "pieces", Address: ln.Addr().String()}})
	c := testClient()
	for i := 0; i < 2; i++ {
		start := time.Now()
		if code, body := get(t, c, baseURL(b)+"/x"); code != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q after %v, want 200 \"ok\"", i, code, body, time.Since(start))
		}
	}
	if s := statsOf(t, b, "pieces"); s.Success != 2 || s.Failed != 0 {
		t.Fatalf("stats: %d succeeded, %d failed; want 2, 0", s.Success, s.Failed)
	}
}

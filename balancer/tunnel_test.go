package balancer

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// tunnelIdle is the TunnelIdleTimeout of these tests.
const tunnelIdle = 300 * time.Millisecond

// openTunnel upgrades a new client connection through b and returns it.
func openTunnel(t *testing.T, b *Balancer) *h1Conn {
	t.Helper()
	conn := dialH1(t, b)
	conn.send("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if resp, _ := conn.read(http.MethodGet); resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("got %d, want 101", resp.StatusCode)
	}
	return conn
}

// TestTunnelIdleTimeoutClosesAQuietTunnel pins an unbounded hold: an
// upgraded connection on which neither side sent anything stayed open,
// with its worker connection and in-flight count, for as long as the
// client liked. It is closed after TunnelIdleTimeout.
func TestTunnelIdleTimeoutClosesAQuietTunnel(t *testing.T) {
	t.Parallel()
	w := newWorker(t, "a", upgradeEcho(""))
	cfg := safetyConfig()
	cfg.TunnelIdleTimeout = tunnelIdle
	b := startBalancer(t, cfg, w)
	conn := openTunnel(t, b)
	conn.send("ping\n")
	_ = conn.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := conn.br.ReadString('\n'); line != "ping\n" {
		t.Fatalf("echo: %q, %v", line, err)
	}
	quiet := time.Now()
	_ = conn.c.SetReadDeadline(time.Now().Add(tunnelIdle + closeMargin))
	n, err := conn.br.Read(make([]byte, 16))
	if n > 0 || !isClosed(err) {
		t.Fatalf("a quiet tunnel: read %d bytes, %v; want it closed within %v", n, err, tunnelIdle+closeMargin)
	}
	took := time.Since(quiet)
	t.Logf("a quiet tunnel closed %v after its last byte (TunnelIdleTimeout %v)", took.Round(time.Millisecond), tunnelIdle)
	if took < tunnelIdle {
		t.Errorf("closed after %v, before TunnelIdleTimeout %v", took, tunnelIdle)
	}
	waitFor(t, "the tunnel's in-flight count to end", func() bool { return b.InFlight() == 0 })
}

// TestTunnelWithOneSideTalkingIsNotIdle: a tunnel is idle only when both
// sides are quiet. A client that only sends (the worker never answers) and
// a worker that only sends (server push) each keep it open well past
// TunnelIdleTimeout, and every byte arrives.
func TestTunnelWithOneSideTalkingIsNotIdle(t *testing.T) {
	t.Parallel()
	const beats = 12 // one every tunnelIdle/3: 4 × TunnelIdleTimeout in all
	var received atomic.Int64
	w := newWorker(t, "a", upgraded(func(r *http.Request, c net.Conn, brw *bufio.ReadWriter) {
		if r.URL.Query().Get("push") == "" {
			_, _ = io.Copy(counter{&received}, brw) // listens only
			return
		}
		for range beats {
			if _, err := c.Write([]byte{'.'}); err != nil {
				return
			}
			time.Sleep(tunnelIdle / 3)
		}
		_, _ = io.Copy(io.Discard, brw)
	}))
	cfg := safetyConfig()
	cfg.TunnelIdleTimeout = tunnelIdle
	b := startBalancer(t, cfg, w)

	t.Run("client sends", func(t *testing.T) {
		conn := openTunnel(t, b)
		for i := range beats {
			if err := conn.trySend("."); err != nil {
				t.Fatalf("beat %d: %v", i, err)
			}
			time.Sleep(tunnelIdle / 3)
		}
		waitFor(t, "every beat to reach the worker", func() bool { return received.Load() == beats })
	})

	t.Run("worker sends", func(t *testing.T) {
		conn := dialH1(t, b)
		conn.send("GET /ws?push=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		if resp, _ := conn.read(http.MethodGet); resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("got %d, want 101", resp.StatusCode)
		}
		_ = conn.c.SetReadDeadline(time.Now().Add(beats*tunnelIdle + closeMargin))
		got, err := io.ReadFull(conn.br, make([]byte, beats))
		if err != nil {
			t.Fatalf("read %d of %d beats from the worker: %v", got, beats, err)
		}
	})
}

// TestTunnelCarriesABulkTransferBothWays: the copy loop that waits without
// a buffer moves large writes whole, in both directions at once.
func TestTunnelCarriesABulkTransferBothWays(t *testing.T) {
	t.Parallel()
	w := newWorker(t, "a", upgradeEcho(""))
	b := startBalancer(t, safetyConfig(), w)
	conn := openTunnel(t, b)
	blob := make([]byte, 8<<20)
	for i := range blob {
		blob[i] = byte(i*31 + i>>13)
	}
	sent := make(chan error, 1)
	go func() {
		_ = conn.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err := conn.c.Write(blob)
		sent <- err
	}()
	_ = conn.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	echo := make([]byte, len(blob))
	if _, err := io.ReadFull(bufio.NewReader(conn.br), echo); err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("writing: %v", err)
	}
	for i := range blob {
		if blob[i] != echo[i] {
			t.Fatalf("echo differs at byte %d", i)
		}
	}
}

// TestTunnelIntoASideThatReadsNothingIsCut: a tunnel's write that cannot
// go on for IdleTimeout (a client that reads nothing of what its worker
// pushes) ends the tunnel, as it ends a plain answer, instead of holding
// the worker connection and the in-flight count for good.
func TestTunnelIntoASideThatReadsNothingIsCut(t *testing.T) {
	t.Parallel()
	w := newWorker(t, "a", upgraded(func(_ *http.Request, c net.Conn, _ *bufio.ReadWriter) {
		chunk := make([]byte, 64<<10)
		for range 1024 { // 64 MiB, far more than socket buffers hold
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}))
	cfg := safetyConfig()
	cfg.IdleTimeout = tunnelIdle
	b := startBalancer(t, cfg, w)
	openTunnel(t, b) // and never read from
	start := time.Now()
	waitFor(t, "the stalled tunnel to end", func() bool { return b.InFlight() == 0 })
	t.Logf("a tunnel into a client that reads nothing ended %v after it opened (IdleTimeout %v)", time.Since(start).Round(time.Millisecond), tunnelIdle)
}

// upgraded is a worker handler that answers 101 and then runs talk on the
// hijacked connection, closing it after.
func upgraded(talk func(r *http.Request, c net.Conn, brw *bufio.ReadWriter)) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(rw).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		if brw.Flush() == nil {
			talk(r, c, brw)
		}
	})
}

// counter is a writer that counts what it is given.
type counter struct{ n *atomic.Int64 }

func (c counter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return len(p), nil
}

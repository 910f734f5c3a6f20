package admin

import (
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// countListener counts its open connections, and the most at once.
type countListener struct {
	net.Listener
	mu        sync.Mutex
	open, top int
}

func (l *countListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.open++
	l.top = max(l.top, l.open)
	l.mu.Unlock()
	return &countConn{Conn: c, l: l}, nil
}

func (l *countListener) most() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.top
}

type countConn struct {
	net.Conn
	l    *countListener
	once sync.Once
}

func (c *countConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// Regression: the admin API closed no idle keep-alive connection and
// accepted any number: 20,000 of them took all of golb's file descriptors,
// and then the balancers' accept failed (too many open files) and every
// proxied request with it. Three times the cap of idle connections take
// no more than the cap, and a new request is served once they time out.
func TestIdleAdminConnectionsExhaustFileDescriptors(t *testing.T) {
	const limit = 4
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	counted := &countListener{Listener: inner}
	srv := newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }), 200*time.Millisecond)
	srv.ReadHeaderTimeout = 200 * time.Millisecond
	go func() { _ = srv.Serve(limitListener(counted, limit)) }()
	t.Cleanup(func() { _ = srv.Close() })
	addr := inner.Addr().String()

	var idle []net.Conn
	t.Cleanup(func() {
		for _, c := range idle {
			_ = c.Close()
		}
	})
	for i := range 3 * limit {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		idle = append(idle, c)
		if i%2 == 0 { // half ask once and then idle, half send nothing
			if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
		}
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("a new request behind %d idle connections: %v", 3*limit, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	t.Logf("served after %v", time.Since(start).Round(time.Millisecond))
	if n := counted.most(); n > limit {
		t.Errorf("%d connections open at once, over the cap of %d", n, limit)
	}
}

// The server's timeouts are set: an idle or silent connection is closed.
func TestAdminServerHasTimeouts(t *testing.T) {
	srv := newHTTPServer(http.NotFoundHandler(), idleTimeout)
	if srv.IdleTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.ReadHeaderTimeout <= 0 {
		t.Errorf("timeouts: idle %v, read %v, write %v, header %v", srv.IdleTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.ReadHeaderTimeout)
	}
}

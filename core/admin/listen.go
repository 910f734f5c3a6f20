package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// The admin API's bounds on its clients. It serves loopback scripts, golb's
// CLI and a dashboard or two, so these leave room for many, and they keep
// a client that opens connections and sends nothing from taking golb's
// file descriptors: 20,000 idle keep-alive connections did, and then the
// balancers could accept no connection at all.
const (
	// maxConns is the most connections open at once; the next waits in
	// the kernel's backlog until one closes.
	maxConns = 256
	// idleTimeout closes a keep-alive connection with no new request.
	idleTimeout = 30 * time.Second
	// readTimeout bounds reading a whole request, body included (a POST's
	// body is a few bytes of JSON), and writeTimeout writing its answer;
	// /v1/stream and POST /v1/reload set their own deadlines.
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 60 * time.Second
)

// newHTTPServer is the admin API's server of h, with its timeouts; idle is
// its IdleTimeout.
func newHTTPServer(h http.Handler, idle time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idle,
		MaxHeaderBytes:    64 << 10,
	}
}

// limitListener accepts at most n connections open at once: Accept waits
// for one to close (as golang.org/x/net/netutil.LimitListener, which golb
// does not depend on directly).
func limitListener(l net.Listener, n int) net.Listener {
	return &limitedListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{} // closed by Close, so that a waiting Accept returns
	closeOnce sync.Once
}

func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitedListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitedConn gives its listener's slot back once, on its first Close.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// Serve listens on addr and serves api and dash there, behind Guard, until
// the returned server is shut down or closed; api's group events include
// the lifecycle events of dash's log. dash runs until Shutdown,
// which also ends its open streams. Errors after the server has started
// are logged to logger (slog.Default() when nil).
func Serve(addr string, api *API, dash *Server, logger *slog.Logger) (*http.Server, error) {
	if logger == nil {
		logger = slog.Default()
	}
	api.lifecycle = dash
	mux := http.NewServeMux()
	api.Register(mux)
	dash.Register(mux) // GET /, /v1/stream, /v1/events, POST /v1/workers/{id}/drain

	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin API: listening on %s: %w", addr, err)
	}
	srv := newHTTPServer(Guard(l.Addr().String(), mux), idleTimeout)
	l = limitListener(l, maxConns)
	dashCtx, stopDash := context.WithCancel(context.Background())
	srv.RegisterOnShutdown(stopDash)
	go dash.Run(dashCtx)
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin API stopped", "err", err)
		}
	}()
	logger.Info("admin API listening", "addr", l.Addr().String())
	return srv, nil
}

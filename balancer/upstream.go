package balancer

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/golb/golb/balancer/h1"
)

// upstream is one keep-alive connection to a worker. Its read buffer goes
// back to the shared pool whenever the connection is idle.
type upstream struct {
	nc     net.Conn
	io     io.ReadWriter // nc's reads and writes (rawio_linux.go)
	rd     h1.Reader
	idleAt time.Time
	reused bool // taken from the idle pool: it may have been closed by the worker meanwhile
	heard  bool // the worker sent bytes of an answer to the current request
	// addr is the backend's address this connection was dialed to (the
	// pointer SetBackends stored): once the backend moves to another
	// address, the connection is not reused.
	addr    *string
	head    h1.Head
	headLen int
}

// connPool is a backend's idle connections, newest last (reusing the
// newest keeps the others idle long enough to time out).
type connPool struct {
	mu     sync.Mutex
	idle   []*upstream
	closed bool // the backend was removed: nothing goes back into the pool
}

// dialError tags a failed dial: the request was certainly not sent.
type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string { return "dialing worker " + e.addr + ": " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// getConn returns an idle connection to be, or dials a new one.
func (b *Balancer) getConn(be *backend) (*upstream, error) {
	p := &be.conns
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return b.dial(be)
		}
		uc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		// A connection the worker wrote to, closed or reset while idle
		// is never reused (silent, rawio_linux.go): what it holds is no
		// answer to the next request.
		if uc.addr == be.addr.Load() && time.Since(uc.idleAt) < b.conf().IdleConnTimeout && silent(uc.io) {
			uc.reused = true
			return uc, nil
		}
		_ = uc.nc.Close()
	}
}

// maxDials bounds the dials to one backend under way at once.
const maxDials = 8

// dial connects to be. The dial runs on a goroutine of its own, at most
// maxDials at once per backend: its call chain is deep, and would
// otherwise grow the stack of every client connection's goroutine that
// ever dials to 8 KiB for good (5,000 connections: 40 MiB), where a few
// dial goroutines reuse their stacks.
func (b *Balancer) dial(be *backend) (*upstream, error) {
	ap := be.addr.Load()
	addr := *ap
	type dialed struct {
		nc  net.Conn
		err error
	}
	ch := make(chan dialed, 1)
	be.dials <- struct{}{}
	go func() {
		nc, err := b.dialer.Dial("tcp", addr)
		<-be.dials
		ch <- dialed{nc, err}
	}()
	d := <-ch
	nc, err := d.nc, d.err
	if err != nil {
		return nil, &dialError{addr: addr, err: err}
	}
	uc := &upstream{nc: nc, addr: ap}
	uc.io = newRawIO(nc, b.conf().IdleTimeout)
	uc.rd.Reset(uc.io)
	return uc, nil
}

// putConn returns a connection whose last exchange ended cleanly to the
// idle pool, or closes it when the pool is full or closed.
func (b *Balancer) putConn(be *backend, uc *upstream) {
	if uc.rd.Len() > 0 || uc.addr != be.addr.Load() {
		// The worker sent more than its answer, or the backend moved to
		// another address (another process) while this request ran.
		b.closeConn(uc)
		return
	}
	uc.rd.Release()
	uc.head.Forget()
	uc.idleAt = time.Now()
	p := &be.conns
	p.mu.Lock()
	if p.closed || len(p.idle) >= b.conf().MaxIdleConnsPerHost {
		p.mu.Unlock()
		b.closeConn(uc)
		return
	}
	p.idle = append(p.idle, uc)
	// The pool hands out its newest connection first, so the oldest ones
	// are looked at here: past IdleConnTimeout they are closed, not left
	// for the worker's own timeout to turn into CLOSE_WAIT sockets.
	var stale []*upstream
	for len(p.idle) > 1 && uc.idleAt.Sub(p.idle[0].idleAt) >= b.conf().IdleConnTimeout {
		stale = append(stale, p.idle[0])
		p.idle[0] = nil
		p.idle = p.idle[1:]
	}
	p.mu.Unlock()
	for _, s := range stale {
		b.closeConn(s)
	}
}

func (b *Balancer) closeConn(uc *upstream) {
	_ = uc.nc.Close()
	uc.rd.Reset(nil)
}

// closeIdle closes every idle connection of be; with final, the pool stays
// closed (be was removed, or the balancer shut down).
func (p *connPool) closeIdle(final bool) {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	if final {
		p.closed = true
	}
	p.mu.Unlock()
	for _, uc := range idle {
		_ = uc.nc.Close()
		uc.rd.Reset(nil)
	}
}

// reopen lets a re-added backend pool connections again.
func (p *connPool) reopen() {
	p.mu.Lock()
	p.closed = false
	p.mu.Unlock()
}

// isTimeout reports a deadline that passed: the *net.OpError of a
// deadline on a connection, or a bare os.ErrDeadlineExceeded.
func isTimeout(err error) bool {
	if oe, ok := err.(*net.OpError); ok {
		return oe.Timeout()
	}
	return errors.Is(err, os.ErrDeadlineExceeded)
}

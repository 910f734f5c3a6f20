package balancer

import (
	"bufio"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/golb/golb/balancer/h1"
)

// This file is the client side of the engine: accepting connections,
// reading request heads under the idle and header timeouts, answering
// golb's own errors, and closing connections on shutdown. Each client
// connection is served by one goroutine, request after request; nothing
// is allocated per request on the way.

// Connection states, for Shutdown: an idle connection is closed at once, an
// active one finishes its request first.
const (
	connIdle int32 = iota
	connActive
	connLingering // answered and half-closed, dropping what the client still sends
	connClosed
)

// clientConn is one client connection and its per-request scratch space,
// reused request after request.
type clientConn struct {
	b       *Balancer
	nc      net.Conn
	io      io.ReadWriter // nc's reads and writes (rawio_linux.go)
	rd      h1.Reader
	head    h1.Head
	ip      string // the client's address, for X-Forwarded-For
	out     []byte // the request head for the worker (and a small body)
	scratch []byte // response heads and chunk framing
	x       exchange
	req     reqInfo // the request being forwarded
	watch   watch   // its wait for the worker's answer
	susp    suspension

	rdDeadline time.Time // the client connection's read deadline
	headLen    int       // of the request head in rd
	headMem    int       // the grown read buffer's bytes counted in headMem

	// Together: spread among the wider fields, their padding took the
	// struct past 768 bytes, into the next allocation size class.
	state     atomic.Int32
	served    bool // a request was served: the idle timeout applies
	isHEAD    bool // the current request is a HEAD
	unread    bool // golb ends the connection with what the client sent maybe unread
	suspended bool // the request, or the wait for the next, is on a goroutine of its own (suspend.go)
	woken     bool // that goroutine saw the next request's first bytes

	cur atomic.Pointer[upstream] // the attempt's worker connection, for a forced shutdown
	// gone is set once the listener that accepted this connection is
	// closed by Update (update.go): the connection ends after its current
	// request. Nil only for a listener that is no trackedListener.
	gone *atomic.Bool
}

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, h1.BufSize) }}

func (b *Balancer) serve(ln net.Listener) {
	var delay time.Duration
	var gone *atomic.Bool
	if tl, ok := ln.(*trackedListener); ok {
		gone = &tl.gone
	}
	for {
		if !b.waitForSlot(ln, gone) {
			return
		}
		nc, err := ln.Accept()
		if err != nil {
			if b.closing.Load() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors, say: back off instead of spinning.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				b.log.Warn("accept failed; retrying", "addr", ln.Addr().String(), "err", err, "in", delay)
				time.Sleep(delay)
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			b.log.Error("listener stopped", "addr", ln.Addr().String(), "err", err)
			return
		}
		delay = 0
		c := &clientConn{b: b, nc: nc, gone: gone}
		c.io = newRawIO(nc, b.conf().IdleTimeout)
		c.rd.Reset(c.io)
		if !b.track(c, true) {
			_ = nc.Close()
			return
		}
		go c.serve()
	}
}

// clientConns counts the client connections of every balancer in this
// process; past maxClientConns a listener accepts no more until one
// closes (the next ones wait in the kernel's backlog, using no file
// descriptor). Without it a client could open connections until golb had
// no descriptor left to dial a worker, open the stats database or answer
// the admin API (the hard limit is 20,000 on the machines golb is tested
// on). The default leaves room for a worker connection per client
// connection, and 1,024 descriptors for the rest of golb.
var (
	clientConns    atomic.Int64
	maxClientConns atomic.Int64 // tests lower it
)

func init() { maxClientConns.Store(defaultMaxClientConns()) }

func defaultMaxClientConns() int64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<22 { // unlimited, or nearly
		return 1 << 20
	}
	return max(64, (int64(lim.Cur)-1024)/2)
}

// waitForSlot waits while the process holds maxClientConns client
// connections, and reports false once the listener is to stop.
func (b *Balancer) waitForSlot(ln net.Listener, gone *atomic.Bool) bool {
	for clientConns.Load() >= maxClientConns.Load() {
		if b.closing.Load() || gone != nil && gone.Load() {
			return false
		}
		if b.limitWarned.now() {
			b.log.Warn("client connections at the limit; accepting again when one closes",
				"addr", ln.Addr().String(), "limit", maxClientConns.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// track adds c to (or removes it from) the connections Shutdown waits for.
// It refuses a new connection once shutdown began.
func (b *Balancer) track(c *clientConn, add bool) bool {
	b.connMu.Lock()
	defer b.connMu.Unlock()
	if add {
		if b.closing.Load() {
			return false
		}
		b.conns[c] = struct{}{}
		b.connWG.Add(1)
		b.open.Add(1)
		clientConns.Add(1)
		return true
	}
	clientConns.Add(-1)
	b.open.Add(-1)
	delete(b.conns, c)
	b.connWG.Done()
	return true
}

func (c *clientConn) serve() {
	if host, _, err := net.SplitHostPort(c.nc.RemoteAddr().String()); err == nil {
		c.ip = host
	}
	// A new connection must send its first request within the header
	// timeout; later ones may idle for the idle timeout.
	c.setReadDeadline(time.Now().Add(c.b.conf().HeaderReadTimeout))
	c.run()
}

// run serves the connection's requests until it closes, or until one is
// suspended (suspend.go): the goroutine that resumes it serves the rest.
func (c *clientConn) run() {
	for {
		if !c.readHead() {
			if c.suspended {
				go c.awaitRequest()
				return
			}
			break
		}
		c.served = true
		keep := c.handle()
		if c.suspended {
			go c.resume()
			return
		}
		if !keep || !c.nextRequest() {
			break
		}
	}
	c.close()
}

// nextRequest readies the connection for its next request, and reports
// whether it has one: false once shutdown or a reload closes it.
func (c *clientConn) nextRequest() bool {
	c.trim()
	return c.state.CompareAndSwap(connActive, connIdle) && !c.b.closing.Load() && (c.gone == nil || !c.gone.Load())
}

// maxKeptScratch is the largest scratch buffer a connection keeps between
// requests: one large request (a 64 KiB head, a 16 KiB body sent with it)
// must not hold its buffers for as long as the connection idles.
const maxKeptScratch = 8 << 10

// trim gives back the per-request buffers a large request grew, and lets
// go of the read buffer its head was parsed from.
func (c *clientConn) trim() {
	c.head.Forget()
	if cap(c.out) > maxKeptScratch {
		c.out = nil
	}
	if cap(c.scratch) > maxKeptScratch {
		c.scratch = nil
	}
}

func (c *clientConn) setReadDeadline(t time.Time) {
	c.rdDeadline = t
	_ = c.nc.SetReadDeadline(t)
}

func (c *clientConn) close() {
	if c.unread && !c.b.closing.Load() {
		// Shutdown closes a lingering connection at once; one it may
		// have missed (it began meanwhile) does not linger.
		c.state.Store(connLingering)
		if !c.b.closing.Load() {
			c.linger()
		}
	}
	c.state.Store(connClosed)
	_ = c.nc.Close()
	c.rd.Reset(nil)
	c.settleHeadMem()
	c.b.track(c, false)
}

// lingerTime and lingerMax bound how long, and how much, a connection
// that golb ends with the client's bytes maybe unread (an answer to a
// request it did not read whole) goes on reading and dropping them. Its
// close is then a FIN behind the answer: closed with bytes unread, it
// would be a reset, which can destroy the answer at the client before it
// is read (RFC 9112 §9.6; nginx's lingering_close, Go's server does the
// same).
const (
	lingerTime = time.Second
	lingerMax  = 1 << 20
)

// linger half-closes the connection and drops what the client still
// sends, until it closes, lingerTime passes or lingerMax bytes came.
func (c *clientConn) linger() {
	closeWrite(c.nc)
	c.setReadDeadline(time.Now().Add(lingerTime))
	for n := 0; n < lingerMax; {
		c.rd.Discard(c.rd.Len())
		m, err := c.rd.Fill(h1.BufSize)
		if err != nil {
			break
		}
		n += m
	}
	c.rd.Discard(c.rd.Len())
}

// readHead waits (idle timeout) for the next request and reads its head
// (header timeout, size limit) into c.head. It answers a broken or
// oversized head itself and reports false when the connection is done.
func (c *clientConn) readHead() bool {
	b := c.b
	max := b.conf().MaxHeaderBytes
	if c.rd.Len() == 0 {
		// Deadlines cost a timer update each: the idle one is moved only
		// once it is half a second stale, so it may fire that much late.
		if c.served {
			want := time.Now().Add(b.conf().IdleTimeout)
			if d := c.rdDeadline.Sub(want); d < 0 || d > time.Second {
				c.setReadDeadline(want.Add(time.Second / 2))
			}
		}
		if b.busy() {
			c.rd.Release()
			c.settleHeadMem()
			switch {
			case c.woken:
				c.woken = false // awaitRequest waited
			case c.served:
				// A kept-alive connection waits on a fresh goroutine
				// (suspend.go), its 4 KiB stack let go.
				c.suspended = true
				return false
			default:
				if err := waitReadable(c.io); err != nil {
					return false
				}
			}
		}
		if c.served {
			// Let the other connections run first: by the time this one
			// reads, its client has usually sent the next request, and
			// the read that would find nothing yet (and the poller's
			// wake-up after it) is saved. Measured with `perf trace -s`
			// on the fast workload: 0.53 empty reads per request before,
			// 0.02 after.
			runtime.Gosched()
		}
		_, err := c.rd.Fill(max)
		if err != nil {
			return false // idle timeout, or the client closed: nothing to answer
		}
	}
	if !c.state.CompareAndSwap(connIdle, connActive) {
		return false // Shutdown closed it meanwhile
	}
	c.isHEAD = false
	resume := 0
	// A new connection's deadline is its header timeout already (serve);
	// a kept-alive one's head gets the timeout from its first bytes.
	timed := !c.served
	for {
		end, next, err := h1.ScanHead(c.rd.Buffered(), resume)
		if err != nil {
			c.fail(err)
			return false
		}
		if end > 0 {
			if end > max {
				c.fail(h1.ErrHeadTooLarge)
				return false
			}
			if err := h1.ParseRequest(c.rd.Buffered()[:end], &c.head); err != nil {
				c.fail(err)
				return false
			}
			c.headLen = end
			return true
		}
		resume = next
		if c.rd.Len() >= max {
			c.fail(h1.ErrHeadTooLarge)
			return false
		}
		if !timed {
			timed = true
			c.setReadDeadline(time.Now().Add(b.conf().HeaderReadTimeout))
		}
		if grow := c.rd.WouldGrow(max + 4); grow > 0 && !c.reserveHeadMem(grow) {
			b.clientErrors.Add(1)
			b.log.Debug("large request heads over their memory budget", "client", c.ip, "held", headMem.Load())
			c.answer(503, "too many large request heads at once; try again", true)
			return false
		}
		_, err = c.rd.Fill(max + 4)
		c.settleHeadMem()
		if err != nil {
			switch {
			case errors.Is(err, h1.ErrBufferFull):
				c.fail(h1.ErrHeadTooLarge)
			case isTimeout(err):
				c.answer(408, "request head not received in time", true)
			}
			return false
		}
	}
}

// headMem is the memory the read buffers of request heads hold past
// their first BufSize, over all connections; headBudget bounds it. Heads
// up to max_header_bytes (64 KiB by default) are fine one at a time, but
// 4,000 connections each sending 64 KiB of an unfinished head took golb
// from 69 to 362 MiB of RSS (about 4 GiB with max_header_bytes at 1 MiB),
// renewed by reconnecting. Past the budget a head that needs a larger
// buffer is answered 503 and closed; ordinary heads (under 4 KiB) never
// need one.
var (
	headMem    atomic.Int64
	headBudget atomic.Int64 // tests lower it
)

func init() { headBudget.Store(64 << 20) }

// reserveHeadMem counts the growth of this connection's read buffer to
// size bytes, unless that would pass headBudget.
func (c *clientConn) reserveHeadMem(size int) bool {
	delta := int64(size - c.headMem)
	if headMem.Add(delta) > headBudget.Load() {
		headMem.Add(-delta)
		return false
	}
	c.headMem = size
	return true
}

// settleHeadMem makes headMem count what the read buffer holds now (after
// it grew, shrank or went back to the pool).
func (c *clientConn) settleHeadMem() {
	if g := c.rd.Grown(); g != c.headMem {
		headMem.Add(int64(g - c.headMem))
		c.headMem = g
	}
}

// fail answers a framing error with its status and closes the connection
// (after an error, where the next request begins is unknown).
func (c *clientConn) fail(err error) {
	status, msg := 400, err.Error()
	var he *h1.Error
	if errors.As(err, &he) {
		status, msg = he.Status, he.Msg
	}
	c.b.clientErrors.Add(1)
	c.b.log.Debug("bad request", "client", c.ip, "status", status, "err", msg)
	c.answer(status, msg, true)
}

// answer writes one of golb's own JSON answers.
func (c *clientConn) answer(status int, msg string, closing bool) {
	c.writeAnswer(status, errorBody(msg, c.b.conf().Name), closing)
}

func (c *clientConn) writeAnswer(status int, body []byte, closing bool) {
	out := c.out[:0]
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(status), 10)
	out = append(out, ' ')
	out = append(out, statusText(status)...)
	if len(body) > 0 {
		out = append(out, "\r\nContent-Type: application/json"...)
	}
	out = append(out, "\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(len(body)), 10)
	out = append(out, "\r\n"...)
	out = appendDate(out)
	if status == 503 {
		out = append(out, "Retry-After: 1\r\n"...)
	}
	if closing {
		out = append(out, "Connection: close\r\n"...)
	} else if c.head.Minor == 0 {
		out = append(out, "Connection: keep-alive\r\n"...)
	}
	out = append(out, "\r\n"...)
	if !c.isHEAD {
		out = append(out, body...)
	}
	c.out = out
	_, _ = writeWithin(c.io, c.nc, out, 10*time.Second)
	if closing {
		closeWrite(c.nc) // the answer reaches a client still sending, not a reset
		c.unread = true
	}
}

// statusText is the reason phrase of the statuses golb answers itself.
func statusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 400:
		return "Bad Request"
	case 405:
		return "Method Not Allowed"
	case 408:
		return "Request Timeout"
	case 431:
		return "Request Header Fields Too Large"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 505:
		return "HTTP Version Not Supported"
	}
	return "Error"
}

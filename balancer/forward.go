package balancer

import (
	"bufio"
	"errors"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/golb/golb/balancer/h1"
)

// This file forwards one request: it sends the head golb built (and the
// body, framed anew) to the worker pick chose, reads the worker's answer
// and relays it, streaming, to the client. Which side failed decides what
// is counted: a client's broken body is answered 400 and charged to
// no worker; a worker's broken answer is its failed attempt.

// reqInfo is what forwarding needs of the request once its head has been
// turned into the worker's head (the parsed head's slices point into the
// client's buffer, which the body then reuses).
type reqInfo struct {
	method     string // interned for the common methods
	isHEAD     bool
	minor      int
	close      bool
	upgrade    bool
	expect100  bool
	body       h1.BodyKind
	length     int64
	headLen    int           // the worker's head: c.out[:headLen]
	bodyInHead bool          // the whole body follows the head in c.out
	bodyLeft   bool          // the client's body was not read to its end
	bodyWait   time.Duration // how long sendBody waited for the client's bytes
}

// busyConns is the number of open client connections above which a
// connection waits for its next bytes without holding a read buffer.
var busyConns atomic.Int64 // tests lower it

func init() { busyConns.Store(512) }

// busy reports whether the balancer holds more than busyConns client
// connections.
func (b *Balancer) busy() bool { return b.open.Load() > busyConns.Load() }

// maxInlineBody is the largest body sent in one write with the head (and
// re-sent on a fresh connection when a pooled one turns out closed).
const maxInlineBody = 16 << 10

// watchAfter is how long a worker may take to answer before golb first
// checks that its client is still there (so that the attempt of a client
// that gave up is abandoned, not waited for). Config.watchAfter overrides
// it in tests.
const watchAfter = 20 * time.Millisecond

// slowBodyAfter is how long golb must have waited for a client's body,
// all its reads together, when the worker drops the connection before
// that failure is the client's: workers give up on slow uploads (Go's
// ReadTimeout, nginx's client_body_timeout), and counting that against
// them let a few slow clients eject every worker. A worker that drops a
// prompt body, or stops reading one golb has ready, is charged.
const slowBodyAfter = time.Second

// handle serves the request whose head is in c.head and reports whether
// the connection stays open for another.
func (c *clientConn) handle() bool {
	b := c.b
	h := &c.head
	if string(h.Method) == "CONNECT" {
		c.b.clientErrors.Add(1)
		c.answer(405, "CONNECT is not supported", true)
		return false
	}
	c.isHEAD = string(h.Method) == "HEAD"
	target, host, ok := c.originForm(h)
	if !ok {
		c.fail(errBadTarget)
		return false
	}
	// An absolute target's host is the one used, but an invalid Host
	// beside it is still refused (RFC 9112 §3.2).
	if !h1.ValidHost(host) || h.Target[0] != '/' && !h1.ValidHost(h.Host) {
		c.fail(errBadHost)
		return false
	}
	if h.Upgrade && upgradesToH2C(h) {
		// An h2c upgrade would turn the connection into HTTP/2 that golb
		// passes through blind, its requests neither balanced, nor
		// checked, nor counted ("h2c smuggling"): the request goes on as
		// a plain one, which RFC 9110 §7.8 lets a server answer.
		h.Upgrade = false
	}
	if n, ok := maxForwards(h); ok && n == 0 {
		return c.answerLastHop(h)
	}
	if b.local != nil {
		if lh, ok := b.local[string(pathOf(target))]; ok {
			return c.serveLocal(lh, target, host)
		}
	}
	// The request's facts live in c, not on this stack: a suspended
	// attempt (suspend.go) goes on with them on another goroutine.
	r := &c.req
	*r = reqInfo{
		method:    methodName(h.Method),
		isHEAD:    c.isHEAD,
		minor:     h.Minor,
		close:     h.Close,
		upgrade:   h.Upgrade,
		expect100: h.Expect100,
		body:      h.Body,
		length:    h.ContentLength,
	}
	c.out = b.requestHead(c.out[:0], h, target, host, c.ip)
	r.headLen = len(c.out)
	c.rd.Discard(c.headLen)
	c.rd.Shrink()
	c.settleHeadMem()
	if r.body == h1.BodyLength && r.length <= maxInlineBody && int64(c.rd.Len()) >= r.length {
		c.out = append(c.out, c.rd.Buffered()[:r.length]...)
		c.rd.Discard(int(r.length))
		r.bodyInHead = true
	} else if r.body != h1.BodyNone {
		r.bodyLeft = true
	}
	if c.rd.Len() == 0 {
		c.rd.Release() // nothing more to read until the answer is sent
		c.settleHeadMem()
	}
	return c.proxy(r)
}

// proxy runs the attempts of one request, retrying on another worker as
// mayRetry allows, and reports whether the connection stays open.
func (c *clientConn) proxy(r *reqInfo) bool {
	start := time.Now()
	c.b.budget.request(start)
	x := &c.x
	*x = exchange{
		idempotent: isIdempotent(r.method),
		noBody:     r.body == h1.BodyNone,
	}
	x.tried = x.triedBuf[:0]
	return c.attempts(x, r, start)
}

// attempts makes attempts until one is answered, failed for good or
// suspended (suspend.go), and reports whether the connection stays open.
func (c *clientConn) attempts(x *exchange, r *reqInfo, start time.Time) bool {
	for {
		be := c.b.pick(x)
		if be == nil && x.tries == 0 {
			var keep bool
			if be, keep = c.hold(x, r); be == nil {
				return keep
			}
			start = time.Now() // the hold is not the worker's latency
		}
		if be == nil {
			return c.answerNoBackend(x, r)
		}
		retry, keep := c.attempt(x, r, be, start)
		if !retry {
			return keep
		}
		c.logRetry(x, be)
		start = time.Now()
	}
}

func (c *clientConn) logRetry(x *exchange, be *backend) {
	c.b.log.Debug("retrying", "id", be.id, "status", x.status, "err", x.err, "tries", x.tries)
}

// attempt forwards the request to be, which pick counted in flight, and
// relays the answer unless it is retried.
func (c *clientConn) attempt(x *exchange, r *reqInfo, be *backend, start time.Time) (retry, keep bool) {
	b := c.b
	x.be = be
	x.tries++
	x.tried = append(x.tried, be)
	x.status, x.fail, x.err = 0, failNone, nil

	var uc *upstream
	var err error
	if r.bodyLeft {
		// A streamed body cannot be sent again: never risk it on a
		// pooled connection the worker may have closed meanwhile.
		uc, err = b.dial(be)
	} else {
		uc, err = b.getConn(be)
	}
	if err != nil {
		return c.failed(x, r, be, start, failNotSent, err)
	}
	c.cur.Store(uc)
	return c.forward(x, r, be, uc, start, false, nil)
}

// forward sends the request on uc and relays the worker's answer; fresh
// says uc is the attempt's second connection. resumed is nil, or what the
// wait of a suspended attempt gave (the request went out already).
func (c *clientConn) forward(x *exchange, r *reqInfo, be *backend, uc *upstream, start time.Time, fresh bool, resumed *error) (retry, keep bool) {
	b := c.b
	defer func() {
		if !c.suspended {
			c.cur.Store(nil)
		}
	}()
	for ; ; fresh = true {
		if r.body != h1.BodyNone {
			x.bodySent = true
		}
		var err error
		if resumed != nil {
			err = c.responseHead(uc, r, true, *resumed)
			resumed = nil
		} else if !r.bodyLeft {
			err = c.readResponse(uc, r, c.out) // sends the request too
		} else if _, err = uc.io.Write(c.out); err == nil {
			var clientErr error
			clientErr, err = c.sendBody(uc, r)
			if clientErr != nil {
				b.closeConn(uc)
				be.release()
				return false, c.clientBodyFailed(clientErr)
			}
			// A worker that failed while taking the body may have answered.
			err = c.readResponse(uc, r, nil)
		}
		if err == errSuspend {
			c.suspend(uc, start, fresh)
			return false, true
		}
		if err == nil {
			break
		}
		b.closeConn(uc)
		if err == errClientGone {
			return c.failed(x, r, be, start, failCanceled, err)
		}
		if uc.reused && !fresh && !uc.heard && !isTimeout(err) && !r.bodyLeft && x.idempotent {
			// A pooled connection the worker closed while idle (after
			// silent looked, before the request went): it likely never
			// saw the request. Once more on a new one, for a request
			// that may run twice; any other is the worker's failure, as
			// a worker that read it and then died cannot be told apart.
			if uc, err = b.dial(be); err != nil {
				return c.failed(x, r, be, start, failNotSent, err)
			}
			c.cur.Store(uc)
			continue
		}
		var he *h1.Error
		// A worker that gave up on a body golb had to wait for is not
		// charged: the client was slow. One that stopped reading a body
		// golb had ready (its writes stalled, not its reads) is.
		if r.bodyLeft && !errors.As(err, &he) && r.bodyWait >= slowBodyAfter {
			be.release()
			c.b.clientErrors.Add(1)
			b.log.Debug("worker gave up on a slow request body", "id", be.id, "client", c.ip, "err", err)
			c.answer(408, "request body not received in time", true)
			return false, false
		}
		kind := failBroken
		switch {
		case isTimeout(err):
			kind = failTimeout
		case errors.As(err, &he):
			kind = failProxy
		}
		return c.failed(x, r, be, start, kind, err)
	}
	return c.relay(x, r, be, uc, start)
}

// readResponse sends req (the request's head and inline body, when not
// already sent) and reads the worker's response head into uc.head,
// relaying interim 1xx answers. A worker slow to answer does not hold a
// read buffer, and its client is checked now and then (tick): a client
// that hung up ends the wait with errClientGone, so that its attempt is
// abandoned, not counted. With many connections open, the wait is
// suspended (errSuspend, suspend.go).
func (c *clientConn) readResponse(uc *upstream, r *reqInfo, req []byte) error {
	b := c.b
	now := time.Now()
	w := &c.watch
	*w = watch{deadline: now.Add(b.conf().ResponseHeaderTimeout), every: watchAfter}
	if v := b.conf().watchAfter; v > 0 {
		w.every = v
	}
	if w.next = now.Add(w.every); w.next.After(w.deadline) {
		w.next = w.deadline
	}
	_ = uc.nc.SetReadDeadline(w.next)
	uc.heard = false
	if b.busy() && uc.rd.Len() == 0 {
		// Many connections: no buffer is taken until the answer comes
		// (4 KiB less per connection), and the wait is suspended at once
		// (suspend.go): a goroutine that waited here even until the first
		// watch deadline would have kept a 4 KiB stack meanwhile, and
		// 5,000 connections arriving together were as many at the peak.
		uc.rd.Release()
		if len(req) > 0 {
			if _, err := uc.io.Write(req); err != nil {
				return err
			}
		}
		return errSuspend
	}
	var err error
	waited := false // err is what waiting for the answer gave
	if len(req) > 0 {
		// Send, then wait for the answer in the same poller call: no
		// read that finds nothing yet (rawio_linux.go). Measured with
		// `perf trace -s` on the fast workload: 1.29 empty reads per
		// request before, 0.53 after (the rest were the client's).
		n, aerr := ask(uc.io, req)
		switch {
		case aerr == nil && n == len(req):
			waited = true // the answer is there
		case aerr != nil && !isTimeout(aerr):
			return aerr
		default:
			// The socket was full, or the first watch deadline passed
			// before all was sent (a busy machine may pause this
			// goroutine that long): the rest the usual way, then wait.
			if n < len(req) {
				if _, err := uc.io.Write(req[n:]); err != nil {
					return err
				}
			}
			if aerr != nil {
				err, waited = aerr, true
			}
		}
	}
	return c.responseHead(uc, r, waited, err)
}

// responseHead reads the worker's answer on from where readResponse (or
// resume) left it: waited says err is what a wait for it gave.
func (c *clientConn) responseHead(uc *upstream, r *reqInfo, waited bool, err error) error {
	max := max(c.b.conf().MaxHeaderBytes, 64<<10)
	resume := 0
	for {
		if uc.rd.Len() > 0 {
			uc.heard = true
			end, next, err := h1.ScanHead(uc.rd.Buffered(), resume)
			if err != nil {
				return errBadResponse
			}
			if end > 0 {
				if err := h1.ParseResponse(uc.rd.Buffered()[:end], &uc.head); err != nil {
					return errBadResponse
				}
				uc.headLen = end
				if s := uc.head.Status; s < 200 && s != 101 {
					if c.watch.interim++; c.watch.interim > maxInterim {
						return errBadResponse
					}
					c.relayInterim(uc, r)
					resume = 0
					continue
				}
				return nil
			}
			resume = next
		}
		if !waited || err == nil {
			_, err = uc.rd.Fill(max)
		}
		waited = false
		for err != nil && isTimeout(err) {
			// A watch deadline, or response_timeout: also with part of
			// the head buffered (a worker may write its head in pieces).
			if err = c.tick(uc, err); err != nil {
				return err
			}
			if uc.rd.Len() > 0 {
				_, err = uc.rd.Fill(max)
				continue
			}
			uc.rd.Release()
			if c.b.busy() {
				return errSuspend
			}
			if err = waitReadable(uc.io); err == nil {
				_, err = uc.rd.Fill(max)
			}
		}
		if err != nil {
			if errors.Is(err, h1.ErrBufferFull) {
				return errBadResponse
			}
			return err
		}
	}
}

// watch is the schedule of a wait for a worker's answer.
type watch struct {
	deadline time.Time     // response_timeout
	next     time.Time     // the client's next check
	every    time.Duration // the checks' interval, doubling up to a second
	interim  int           // 1xx answers relayed so far
}

// tick is a watch deadline passed while waiting for uc's answer: it
// returns err once response_timeout is up and errClientGone when the
// client hung up; otherwise it sets uc's next deadline and returns nil.
func (c *clientConn) tick(uc *upstream, err error) error {
	w := &c.watch
	now := time.Now()
	if !now.Before(w.deadline) {
		return err
	}
	if peerClosed(c.io) {
		return errClientGone
	}
	w.every = min(2*w.every, time.Second)
	if w.next = now.Add(w.every); w.next.After(w.deadline) {
		w.next = w.deadline
	}
	_ = uc.nc.SetReadDeadline(w.next)
	return nil
}

// maxInterim is the most 1xx answers a worker may send before its final
// one (a 100 Continue and a 103 Early Hints or two are all one sees):
// past it the answer is malformed, not relayed on for response_timeout.
const maxInterim = 8

// errClientGone ends an attempt whose client hung up while it waited.
var errClientGone = errors.New("the client went away")

var errBadResponse = &h1.Error{Status: 502, Msg: "malformed response from worker"}

// errCodingFor10 is a worker's answer with a transfer coding other than
// chunked (which golb's request did not offer it: TE is hop-by-hop) to
// an HTTP/1.0 client, who could not be told of it.
var errCodingFor10 = &h1.Error{Status: 502, Msg: "transfer coding an HTTP/1.0 client cannot take"}
var errBadTarget = &h1.Error{Status: 400, Msg: "malformed request target"}
var errBadHost = &h1.Error{Status: 400, Msg: "invalid Host"}

// relayInterim passes a 1xx answer (103 Early Hints, say) on to an
// HTTP/1.1 client and drops it for an HTTP/1.0 one.
func (c *clientConn) relayInterim(uc *upstream, r *reqInfo) {
	if r.minor == 1 && uc.head.Status != 100 {
		out := responseHead(c.scratch[:0], &uc.head, frameNone, 1, false, false)
		c.scratch = out
		_, _ = c.io.Write(out)
	}
	uc.rd.Discard(uc.headLen)
}

// relay answers the client with the worker's response in uc.head and its
// body, unless it is a 5xx to retry; it counts the attempt.
func (c *clientConn) relay(x *exchange, r *reqInfo, be *backend, uc *upstream, start time.Time) (retry, keep bool) {
	b := c.b
	rh := &uc.head
	x.status = rh.Status
	body := rh.ResponseBody(r.isHEAD)
	if rh.Status == 101 {
		if !r.upgrade {
			b.closeConn(uc)
			return c.failed(x, r, be, start, failProxy, errBadResponse)
		}
		be.observe(class1xx, time.Since(start))
		b.passive(be, rh.Status, false)
		// A tunnel is in flight until it closes: a drain (WaitIdle)
		// waits for it, and the autoscaler and least_requests see it.
		c.splice(uc, r)
		be.release()
		return false, false
	}
	if rh.Status >= 500 && b.conf().retry5xx && b.mayRetry(x, fail5xx) {
		// Drain a little so the connection can be reused.
		// rh is uc's: once uc is back in the pool, another request may
		// parse its answer into it.
		status := rh.Status
		if c.discardBody(uc, body) && !rh.Close {
			b.putConn(be, uc)
		} else {
			b.closeConn(uc)
		}
		be.observe(class5xx, time.Since(start))
		be.release()
		b.passive(be, status, false)
		return true, false
	}

	framing := frameNone
	switch body {
	case h1.BodyLength:
		framing = frameLength
	case h1.BodyChunked:
		framing = frameChunked
		if r.minor == 0 {
			framing = frameClose
		}
	case h1.BodyToClose:
		framing = frameClose
	}
	if rh.Codings > 0 && r.minor == 0 && framing != frameNone {
		// A transfer coding (gzip, say) an HTTP/1.0 client cannot be
		// told of: passing the coded bytes as the body would corrupt it.
		b.closeConn(uc)
		return c.failed(x, r, be, start, failProxy, errCodingFor10)
	}
	closing := r.close || r.bodyLeft || framing == frameClose || b.closing.Load() || c.gone != nil && c.gone.Load()
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(c.io)
	sent0, counted := sentBytes(c.io)
	c.scratch = responseHead(c.scratch[:0], rh, framing, r.minor, closing, false)
	_, _ = bw.Write(c.scratch)
	uc.rd.Discard(uc.headLen)
	werr, cerr := c.copyBody(bw, uc, body, framing)
	// The worker keeps the connection, and golb's request on it was sent
	// whole: one answered before its body's end (and the write of the
	// rest then failed) has that rest still owed, and the next request
	// on it would be read as body.
	reuse := body != h1.BodyToClose && !rh.Close && !r.bodyLeft
	if werr != nil {
		bw.Reset(nil)
		writerPool.Put(bw)
		b.closeConn(uc)
		be.observe(classError, time.Since(start))
		be.release()
		b.passive(be, 0, true)
		b.log.Warn("worker answer broke off", "id", be.id, "addr", be.address(), "err", werr)
		if sent, _ := sentBytes(c.io); counted && sent == sent0 && cerr == nil {
			// Nothing of the answer reached the client yet: it can
			// still be told, rather than see a bare close.
			c.writeAnswer(502, b.bodyFailed, true)
		}
		return false, false
	}
	// Count the attempt before the answer's last bytes leave: a client
	// that has its answer finds it in the stats.
	be.observe(classOf(rh.Status), time.Since(start))
	be.release()
	b.passive(be, rh.Status, false)
	c.cur.Store(nil) // uc is no longer this request's: Shutdown must not close it as such
	if cerr != nil || !reuse {
		b.closeConn(uc) // after a client that stopped reading, the body may be unread
	} else {
		b.putConn(be, uc)
	}
	if cerr == nil {
		cerr = bw.Flush()
	}
	bw.Reset(nil)
	writerPool.Put(bw)
	c.unread = c.unread || r.bodyLeft // answered before the body's end
	return false, cerr == nil && !closing
}

// failed ends an attempt that got no usable answer: it counts it (unless
// the client went away first), updates passive health, and either grants
// a retry or answers the client.
func (c *clientConn) failed(x *exchange, r *reqInfo, be *backend, start time.Time, kind failKind, err error) (retry, keep bool) {
	b := c.b
	x.fail, x.err = kind, err
	if kind == failCanceled {
		be.release()
		b.log.Debug("client went away", "id", be.id, "err", err)
		return false, false
	}
	if kind == failNotSent && (errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) {
		// golb is out of file descriptors, not the worker out of order:
		// nothing is charged to it (this ejected every worker at once).
		be.release()
		if b.fdWarned.now() {
			b.log.Warn("cannot dial a worker: out of file descriptors", "id", be.id, "err", err)
		}
		c.answer(503, "golb is out of file descriptors", true)
		return false, false
	}
	be.observe(classError, time.Since(start))
	be.release()
	b.passive(be, 0, kind == failNotSent || kind == failBroken)
	if b.mayRetry(x, kind) {
		return true, false
	}
	return false, c.answerFailure(x, r)
}

// answerNoBackend answers when pick found no worker: 503 if none was ever
// available, else the failure of the last attempt.
func (c *clientConn) answerNoBackend(x *exchange, r *reqInfo) bool {
	b := c.b
	switch {
	case x.tries == 0:
		b.unavailable.Add(1)
		c.writeAnswer(503, b.bodyUnavailable, r.close || r.bodyLeft || b.closing.Load())
		return !(r.close || r.bodyLeft)
	case x.err != nil:
		return c.answerFailure(x, r)
	}
	// a 5xx was dropped for a retry, then the pool emptied
	c.writeAnswer(502, b.bodyFailed, true)
	return false
}

// answerFailure answers a transport error that is not retried.
func (c *clientConn) answerFailure(x *exchange, r *reqInfo) bool {
	b := c.b
	b.log.Warn("proxy error", "id", x.be.id, "addr", x.be.address(), "tries", x.tries, "err", x.err)
	closing := r.close || r.bodyLeft || b.closing.Load()
	switch x.fail {
	case failTimeout:
		c.writeAnswer(504, b.bodyTimeout, closing)
	case failProxy: // the worker answered, wrongly
		c.writeAnswer(502, b.bodyFailed, closing)
	default:
		c.writeAnswer(502, b.bodyUnreachable, closing)
	}
	return !closing
}

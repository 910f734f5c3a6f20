package balancer

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// failKind says how an attempt failed, which decides retry and ejection.
type failKind uint8

const (
	failNone     failKind = iota
	failNotSent           // dial failed: the request never left golb
	failBroken            // the connection broke after sending, before any answer
	failTimeout           // no answer in time (a slow worker is not a dead one)
	failCanceled          // the client went away
	failProxy             // any other proxy error, e.g. a bad protocol switch
	fail5xx               // the worker answered 5xx (used for retry decisions only)
)

// errRetry5xx is returned by modifyResponse to drop a 5xx answer that will
// be retried; proxyError recognises it and writes nothing.
var errRetry5xx = errors.New("retrying a 5xx answer")

// exchangeKey finds the exchange in a request context.
type exchangeKey struct{}

// exchange is one client request on its way through the balancer. It is
// also the request's context (wrapping the client's), so that the
// ReverseProxy hooks find it without a second allocation.
type exchange struct {
	context.Context

	idempotent bool
	noBody     bool
	body       *bodyGuard // nil when the request has no body
	getBody    func() (io.ReadCloser, error)

	tries    int
	tried    []*backend
	triedBuf [4]*backend

	// The current attempt.
	be     *backend
	status int // status answered by the worker, 0 if none
	fail   failKind
	err    error
	retry  bool // try again on another worker
}

func (x *exchange) Value(key any) any {
	if _, ok := key.(exchangeKey); ok {
		return x
	}
	return x.Context.Value(key)
}

func exchangeOf(ctx context.Context) *exchange {
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	return x
}

func (x *exchange) hasTried(be *backend) bool {
	for _, t := range x.tried {
		if t == be {
			return true
		}
	}
	return false
}

// bodyGuard passes the client's body to the worker and records whether any
// of it was read: a body nobody read may go to another worker, a body a
// worker may have received is never replayed. Close is a no-op: the server
// closes the client's body, and a retry needs it open.
type bodyGuard struct {
	rc   io.ReadCloser
	read atomic.Bool
}

func (g *bodyGuard) Read(p []byte) (int, error) {
	if !g.read.Load() {
		g.read.Store(true)
	}
	return g.rc.Read(p)
}

func (g *bodyGuard) Close() error { return nil }

// isIdempotent lists the methods whose retry after a 5xx or a broken
// connection is safe.
func isIdempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// dialError tags a failed dial: the request was certainly not sent.
type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string { return "dialing worker " + e.addr + ": " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// newTransport builds the one Transport shared by every listener, attempt
// and health check of the balancer.
func (b *Balancer) newTransport() *http.Transport {
	d := &net.Dialer{Timeout: b.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: nil, // never an environment proxy: workers are local
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &dialError{addr: addr, err: err}
			}
			return c, nil
		},
		MaxIdleConns:          0, // no global cap; the per-host cap applies
		MaxIdleConnsPerHost:   b.cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:       b.cfg.IdleConnTimeout,
		ResponseHeaderTimeout: b.cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass bodies through untouched
	}
}

// roundTripper classifies transport errors for the exchange.
type roundTripper struct{ t *http.Transport }

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := rt.t.RoundTrip(req)
	if err != nil {
		if x := exchangeOf(req.Context()); x != nil {
			x.fail = classify(x, err)
		}
	}
	return res, err
}

func classify(x *exchange, err error) failKind {
	if x.Context.Err() != nil {
		return failCanceled
	}
	var de *dialError
	if errors.As(err, &de) {
		return failNotSent
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return failTimeout
	}
	return failBroken
}

// ServeHTTP answers local paths itself and proxies everything else.
func (b *Balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if b.local != nil {
		if h, ok := b.local[r.URL.Path]; ok {
			h.ServeHTTP(w, r)
			return
		}
	}
	start := time.Now()
	b.budget.request(start)

	x := &exchange{
		Context:    r.Context(),
		idempotent: isIdempotent(r.Method),
		noBody:     r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0,
		getBody:    r.GetBody,
	}
	x.tried = x.triedBuf[:0]
	out := r.WithContext(x)
	if !x.noBody {
		x.body = &bodyGuard{rc: r.Body}
		out.Body = x.body
	}
	for {
		be := b.pick(out, x)
		if be == nil {
			b.answerNoBackend(w, x)
			return
		}
		if x.body != nil && x.body.read.Load() && x.getBody != nil {
			// Only reached with GetBody (see mayRetry): start the body afresh.
			rc, err := x.getBody()
			if err != nil {
				be.release()
				b.writeError(w, http.StatusBadGateway, b.bodyUnreachable)
				return
			}
			x.body = &bodyGuard{rc: rc}
			out.Body = x.body
		}
		b.attempt(w, out, x, be, start)
		if !x.retry {
			if x.err != nil {
				b.answerFailure(w, x)
			}
			return
		}
		b.log.Debug("retrying", "id", be.id, "status", x.status, "err", x.err, "tries", x.tries)
		start = time.Now()
	}
}

// pick selects a candidate not yet tried for this request and counts it in
// flight. It returns nil when there is none. The first attempt asks the
// policy; a retry takes the untried candidate with the fewest requests in
// flight, ties going to the one after the last tried in pool order. Retries
// thus leave the policy's state alone: with round_robin, a failing worker
// does not capture every first attempt by shifting the rotation.
func (b *Balancer) pick(r *http.Request, x *exchange) *backend {
	for range 3 { // the pool may change under us; bounded
		pool := *b.pool.Load()
		if len(pool) == 0 {
			return nil
		}
		var be *backend
		if x.tries == 0 {
			be = b.sel.Select(pool, r)
		} else {
			be = retryTarget(pool, x)
			if be == nil {
				return nil
			}
		}
		be.inflight.Add(1)
		// SetBackends marks removal before WaitIdle reads inflight; we
		// raise inflight before reading removed: one of us sees the other.
		if be.removed.Load() {
			be.release()
			continue
		}
		return be
	}
	return nil
}

// retryTarget returns the untried candidate with the fewest requests in
// flight, scanning from the one after the last tried.
func retryTarget(pool []*backend, x *exchange) *backend {
	start := 0
	last := x.tried[len(x.tried)-1]
	for i, be := range pool {
		if be == last {
			start = i + 1
			break
		}
	}
	var best *backend
	var least int64
	for i := range pool {
		be := pool[(start+i)%len(pool)]
		if x.hasTried(be) {
			continue
		}
		if n := be.inflight.Load(); best == nil || n < least {
			best, least = be, n
		}
	}
	return best
}

// hasUntried reports whether the pool holds a candidate not yet tried.
func (b *Balancer) hasUntried(x *exchange) bool {
	for _, be := range *b.pool.Load() {
		if !x.hasTried(be) {
			return true
		}
	}
	return false
}

// attempt proxies the request once to be, which pick counted in flight.
func (b *Balancer) attempt(w http.ResponseWriter, out *http.Request, x *exchange, be *backend, start time.Time) {
	x.be = be
	x.tries++
	x.tried = append(x.tried, be)
	x.status, x.fail, x.err, x.retry = 0, failNone, nil, false
	defer func() {
		if p := recover(); p != nil {
			// The answer broke off mid-body and ReverseProxy aborted the
			// handler: count a transport error and let the server drop
			// the client connection.
			be.observe(classError, time.Since(start))
			be.release()
			panic(p)
		}
		b.finish(x, be, start)
	}()
	b.rp.ServeHTTP(w, out)
}

// finish counts the attempt, updates passive health and decides whether a
// transport error is retried (5xx retries are decided in modifyResponse).
func (b *Balancer) finish(x *exchange, be *backend, start time.Time) {
	d := time.Since(start)
	status := x.status
	c := classError
	if x.err == nil && status != 0 {
		c = classOf(status)
	} else {
		status = 0
	}
	if x.err != nil && x.fail == failCanceled {
		// The client went away before the worker answered: not the
		// worker's failure, and no answer to count.
		be.release()
		return
	}
	be.observe(c, d)
	be.release()
	b.passive(be, status, x.err != nil && (x.fail == failNotSent || x.fail == failBroken))
	if x.err != nil && !x.retry {
		x.retry = b.mayRetry(x, x.fail)
	}
}

// mayRetry decides whether the request gets another attempt, and takes
// the retry from the budget if so.
func (b *Balancer) mayRetry(x *exchange, kind failKind) bool {
	if x.tries > b.cfg.Retries {
		return false
	}
	replayable := x.noBody || x.getBody != nil
	switch kind {
	case failNotSent:
		if x.body != nil && x.body.read.Load() && x.getBody == nil {
			return false
		}
	case failBroken, fail5xx:
		if !x.idempotent || !replayable {
			return false
		}
	default:
		return false
	}
	if !b.hasUntried(x) {
		return false
	}
	if !b.budget.allow(time.Now()) {
		b.budgetDeny.Add(1)
		b.log.Debug("retry budget exhausted")
		return false
	}
	b.retries.Add(1)
	return true
}

// rewrite points the outbound request at the chosen worker and sets the
// forwarding headers. The client's Host header is kept (as Traefik's
// passHostHeader and Caddy do); ReverseProxy has already removed hop-by-hop
// headers and the client's X-Forwarded-* (see TrustForwardedHeaders).
// Header values are assigned directly, constant ones as shared slices that
// nothing appends to in place: this saves allocations on every request.
func (b *Balancer) rewrite(pr *httputil.ProxyRequest) {
	x := exchangeOf(pr.In.Context())
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = x.be.address()
	h := pr.Out.Header
	if clientIP, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		if prior := pr.In.Header["X-Forwarded-For"]; b.cfg.TrustForwardedHeaders && len(prior) > 0 {
			clientIP = strings.Join(prior, ", ") + ", " + clientIP
		}
		h["X-Forwarded-For"] = []string{clientIP}
	}
	h["X-Forwarded-Host"] = []string{pr.In.Host}
	if pr.In.TLS == nil {
		h["X-Forwarded-Proto"] = protoHTTP
	} else {
		h["X-Forwarded-Proto"] = protoHTTPS
	}
	addVia(h, pr.In.ProtoMajor, pr.In.ProtoMinor)
}

var (
	protoHTTP  = []string{"http"}
	protoHTTPS = []string{"https"}
	via11      = []string{"1.1 golb"}
)

// addVia appends this hop to the Via header (RFC 9110 §7.6.3).
func addVia(h http.Header, major, minor int) {
	prior := h["Via"]
	if len(prior) == 0 && major == 1 && minor == 1 {
		h["Via"] = via11
		return
	}
	h["Via"] = append(prior[:len(prior):len(prior)], via(major, minor))
}

// modifyResponse records the worker's status and drops a 5xx answer that
// RetryOn says to retry.
func (b *Balancer) modifyResponse(res *http.Response) error {
	x := exchangeOf(res.Request.Context())
	if x == nil {
		return nil
	}
	x.status = res.StatusCode
	addVia(res.Header, res.ProtoMajor, res.ProtoMinor)
	if res.StatusCode >= 500 && b.retry5xx && b.mayRetry(x, fail5xx) {
		// Drain a little so the keep-alive connection can be reused.
		_, _ = io.CopyN(io.Discard, res.Body, 64<<10)
		x.retry = true
		return errRetry5xx
	}
	return nil
}

// proxyError records a failed attempt; ServeHTTP answers the client once
// it knows there is no retry.
func (b *Balancer) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if err == errRetry5xx {
		return
	}
	x := exchangeOf(r.Context())
	if x == nil {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	x.err = err
	if x.fail == failNone {
		x.fail = failProxy
	}
}

// answerNoBackend answers when pick found no worker: 503 if none was ever
// available, else the failure of the last attempt.
func (b *Balancer) answerNoBackend(w http.ResponseWriter, x *exchange) {
	switch {
	case x.tries == 0:
		b.unavailable.Add(1)
		b.writeError(w, http.StatusServiceUnavailable, b.bodyUnavailable)
	case x.err != nil:
		b.answerFailure(w, x)
	default: // a 5xx was dropped for a retry, then the pool emptied
		b.writeError(w, http.StatusBadGateway, b.bodyFailed)
	}
}

// answerFailure answers a transport error that is not retried.
func (b *Balancer) answerFailure(w http.ResponseWriter, x *exchange) {
	if x.fail == failCanceled {
		b.log.Debug("client went away", "id", x.be.id, "err", x.err)
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	b.log.Warn("proxy error", "id", x.be.id, "addr", x.be.address(), "tries", x.tries, "err", x.err)
	if x.fail == failTimeout {
		b.writeError(w, http.StatusGatewayTimeout, b.bodyTimeout)
		return
	}
	b.writeError(w, http.StatusBadGateway, b.bodyUnreachable)
}

var jsonContentType = []string{"application/json"}

func (b *Balancer) writeError(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// via renders this hop's Via entry.
func via(major, minor int) string {
	switch {
	case major == 1 && minor == 1:
		return "1.1 golb"
	case major == 1 && minor == 0:
		return "1.0 golb"
	case major == 2:
		return "2 golb"
	}
	return strconv.Itoa(major) + "." + strconv.Itoa(minor) + " golb"
}

// bufferPool recycles ReverseProxy's copy buffers. It stores array
// pointers, so neither Get nor Put allocates.
type bufferPool struct{}

const copyBufSize = 32 << 10

var copyBufs = sync.Pool{New: func() any { return new([copyBufSize]byte) }}

func (bufferPool) Get() []byte { return copyBufs.Get().(*[copyBufSize]byte)[:] }

func (bufferPool) Put(p []byte) {
	if cap(p) >= copyBufSize {
		copyBufs.Put((*[copyBufSize]byte)(p[:copyBufSize]))
	}
}

var (
	_ http.RoundTripper   = roundTripper{}
	_ httputil.BufferPool = bufferPool{}
	_ context.Context     = (*exchange)(nil)
)

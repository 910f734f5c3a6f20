package balancer

import (
	"encoding/json"
	"net/http"
	"time"
)

// This file holds what decides an attempt's fate whatever the wire does:
// picking a worker, and whether a failed attempt is retried.

// failKind says how an attempt failed, which decides retry and ejection.
type failKind uint8

const (
	failNone     failKind = iota
	failNotSent           // dial failed: the request never left golb
	failBroken            // the connection broke after sending, before any answer
	failTimeout           // no answer in time (a slow worker is not a dead one)
	failCanceled          // the client went away
	failProxy             // any other proxy error, e.g. a malformed answer
	fail5xx               // the worker answered 5xx (used for retry decisions only)
)

// exchange is one client request on its way through the balancer.
type exchange struct {
	idempotent bool
	noBody     bool
	bodySent   bool // some of the body may have reached a worker

	tries    int
	tried    []*backend
	triedBuf [4]*backend

	// The current attempt.
	be     *backend
	status int // status answered by the worker, 0 if none
	fail   failKind
	err    error
}

func (x *exchange) hasTried(be *backend) bool {
	for _, t := range x.tried {
		if t == be {
			return true
		}
	}
	return false
}

// isIdempotent lists the methods whose retry after a 5xx or a broken
// connection is safe.
func isIdempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// pick selects a candidate not yet tried for this request and counts it in
// flight. It returns nil when there is none. The first attempt asks the
// policy; a retry takes the untried candidate with the fewest requests in
// flight, ties going to the one after the last tried in pool order. Retries
// thus leave the policy's state alone: with round_robin, a failing worker
// does not capture every first attempt by shifting the rotation.
func (b *Balancer) pick(x *exchange) *backend {
	for range 3 { // the pool may change under us; bounded
		pool := *b.pool.Load()
		if len(pool) == 0 {
			return nil
		}
		var be *backend
		if x.tries == 0 {
			be = b.conf().sel.Select(pool)
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
	// Each pick found a worker being removed: SetBackends marks them before
	// it publishes the pool without them. Any member left will do, rather
	// than a 503 while healthy workers remain.
	for _, be := range *b.pool.Load() {
		if x.hasTried(be) {
			continue
		}
		be.inflight.Add(1)
		if !be.removed.Load() {
			return be
		}
		be.release()
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

// mayRetry decides whether the request gets another attempt, and takes
// the retry from the budget if so. A body a worker may have received is
// never sent again: a request with a body is retried only when its
// connection failed before anything was sent.
func (b *Balancer) mayRetry(x *exchange, kind failKind) bool {
	if x.tries > b.conf().Retries {
		return false
	}
	switch kind {
	case failNotSent:
		if x.bodySent {
			return false
		}
	case failBroken, fail5xx:
		if !x.idempotent || !x.noBody {
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

func errorBody(msg, name string) []byte {
	body, _ := json.Marshal(struct {
		Error    string `json:"error"`
		Balancer string `json:"balancer"`
	}{msg, name})
	return append(body, '\n')
}

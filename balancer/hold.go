package balancer

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// This file holds requests that arrive while no worker is a candidate (a
// group scaled to zero, or whose workers all died), as Knative's activator
// does: each waits, its body unread in its connection, until a worker
// passes its health check, bounded by count (Hold.Max) and time
// (Hold.Timeout); past either it is answered 503 with a JSON reason and
// Retry-After. Holding is off unless Config.Hold.Max is set; SetHold turns
// it on, off or changes its bounds on a running balancer (golb's reload).

// Hold configures holding requests while the pool is empty.
type Hold struct {
	// Max is the most requests held at once, over all listeners; the next
	// one is answered 503 at once. Default 0: holding off, a request with
	// no candidate is answered 503 at once. Must not be negative.
	Max int
	// Timeout is the longest a request is held; then it is answered 503.
	// Default 30s (when Max is set); must not be negative.
	Timeout time.Duration
	// OnHold, if set, is called each time a request starts waiting, so
	// that the caller can start a worker at once (core's autoscaler). It
	// must not block.
	OnHold func()
}

// DefaultHoldTimeout is Hold.Timeout's default.
const DefaultHoldTimeout = 30 * time.Second

// holdCheckEvery is how often a held request checks that its client is
// still there (a client that hung up frees its place at once).
const holdCheckEvery = 250 * time.Millisecond

func (h Hold) validate() error {
	if h.Max < 0 || h.Timeout < 0 {
		return fmt.Errorf("%w: max %d and timeout %s must not be negative", ErrInvalidHold, h.Max, h.Timeout)
	}
	return nil
}

// holdQueue is the balancer's held requests: their count, the signal that
// the pool gained a candidate, and the bounds in force. Every balancer has
// one; its bounds are nil while holding is off.
type holdQueue struct {
	bounds atomic.Pointer[holdBounds] // nil: holding off

	held     atomic.Int64  // requests waiting now
	timeouts atomic.Uint64 // answered 503 after Timeout
	refused  atomic.Uint64 // answered 503 at once: Max were waiting

	mu    sync.Mutex
	ready chan struct{} // closed (and replaced) when the pool gains a candidate

	bodyClosing, bodyOff []byte
}

// holdBounds are one Hold's bounds, never modified once published: SetHold
// publishes new ones and closes replaced, so that the requests held under
// these take the new ones (or, holding off, leave).
type holdBounds struct {
	Hold
	replaced              chan struct{}
	bodyFull, bodyTimeout []byte
}

// newHoldQueue returns the queue for h; holding is off when h.Max is 0.
func newHoldQueue(h Hold, name string) *holdQueue {
	q := &holdQueue{
		ready:       make(chan struct{}),
		bodyClosing: errorBody("golb is shutting down with no ready worker", name),
		bodyOff:     errorBody("no ready worker, and holding requests for one was turned off", name),
	}
	q.bounds.Store(newHoldBounds(h, name))
	return q
}

// newHoldBounds is h with its defaults, or nil when h turns holding off.
func newHoldBounds(h Hold, name string) *holdBounds {
	if h.Max <= 0 {
		return nil
	}
	if h.Timeout == 0 {
		h.Timeout = DefaultHoldTimeout
	}
	return &holdBounds{
		Hold:        h,
		replaced:    make(chan struct{}),
		bodyFull:    errorBody(fmt.Sprintf("no ready worker, and %d requests are already waiting for one (hold_max)", h.Max), name),
		bodyTimeout: errorBody(fmt.Sprintf("no worker became ready within %s (hold_timeout)", h.Timeout), name),
	}
}

// SetHold changes how the running balancer holds requests while no worker
// is a candidate, for golb's reload. Requests held already stay held under
// the new bounds: their wait counts from when it began, against the new
// Timeout; a lower Max refuses only new ones. Turning holding off
// (h.Max 0) releases them: each takes a worker if one is a candidate now,
// and is answered 503 otherwise, as at Shutdown. Config().Hold is h from
// then on. An invalid h changes nothing and is returned as ErrInvalidHold.
func (b *Balancer) SetHold(h Hold) error {
	if err := h.validate(); err != nil {
		return fmt.Errorf("updating balancer %q: %w", b.Name(), err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.conf()
	next := *old
	next.Hold = h
	b.cfgp.Store(&next)
	nb := newHoldBounds(h, old.Name)
	if ob := b.hold.bounds.Swap(nb); ob != nil {
		close(ob.replaced)
	}
	if nb == nil {
		b.log.Info("holding requests off: a request with no ready worker is answered 503 at once")
	} else {
		b.log.Info("holding requests while no worker is ready", "hold_max", nb.Max, "hold_timeout", nb.Timeout)
	}
	return nil
}

// wake releases the held requests to pick again: the pool is not empty.
// b.pool is stored before wake reads held, and a waiter raises held
// before it reads the pool: one of the two sees the other.
func (q *holdQueue) wake() {
	if q == nil || q.held.Load() == 0 {
		return
	}
	q.mu.Lock()
	close(q.ready)
	q.ready = make(chan struct{})
	q.mu.Unlock()
}

func (q *holdQueue) signal() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ready
}

// hold waits for a candidate for a request that found none on its first
// pick. It returns the backend pick counted in flight, or nil once it has
// answered the client itself (503), with whether the connection stays open.
// With holding off, it answers as a balancer that never holds does.
func (c *clientConn) hold(x *exchange, r *reqInfo) (*backend, bool) {
	b, q := c.b, c.b.hold
	hb := q.bounds.Load()
	if hb == nil {
		return nil, c.answerNoBackend(x, r)
	}
	if b.closing.Load() {
		return nil, c.answerHeld(r, q.bodyClosing)
	}
	if q.held.Add(1) > int64(hb.Max) {
		q.held.Add(-1)
		q.refused.Add(1)
		return nil, c.answerHeld(r, hb.bodyFull)
	}
	defer q.held.Add(-1)
	if hb.OnHold != nil {
		hb.OnHold()
	}
	began := time.Now()
	timeout := time.NewTimer(hb.Timeout)
	defer timeout.Stop()
	check := time.NewTicker(holdCheckEvery)
	defer check.Stop()
	for {
		ready := q.signal()
		if be := b.pick(x); be != nil {
			return be, false
		}
		select {
		case <-ready:
		case <-hb.replaced: // SetHold
			if hb = q.bounds.Load(); hb == nil {
				if be := b.pick(x); be != nil {
					return be, false
				}
				return nil, c.answerHeld(r, q.bodyOff)
			}
			timeout.Reset(max(time.Until(began.Add(hb.Timeout)), 0))
		case <-check.C:
			if peerClosed(c.io) {
				b.log.Debug("held request's client went away")
				return nil, false
			}
		case <-timeout.C:
			q.timeouts.Add(1)
			return nil, c.answerHeld(r, hb.bodyTimeout)
		case <-b.healthCtx.Done(): // Shutdown began
			return nil, c.answerHeld(r, q.bodyClosing)
		}
	}
}

// answerHeld answers a request that could not be held, or not for long
// enough: 503 with Retry-After and body, counted as unavailable.
func (c *clientConn) answerHeld(r *reqInfo, body []byte) bool {
	b := c.b
	b.unavailable.Add(1)
	closing := r.close || r.bodyLeft || b.closing.Load()
	c.writeAnswer(503, body, closing)
	return !closing
}

// Held is the number of requests waiting for a worker now.
func (b *Balancer) Held() int64 {
	return b.hold.held.Load()
}

// HoldTimeouts is the number of held requests answered 503 after
// Hold.Timeout, and HoldRefused of those answered 503 at once because
// Hold.Max were already waiting.
func (b *Balancer) HoldTimeouts() (timeouts, refused uint64) {
	return b.hold.timeouts.Load(), b.hold.refused.Load()
}

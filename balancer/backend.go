package balancer

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// codeClass buckets an attempt's outcome for counting.
type codeClass uint8

const (
	class1xx codeClass = iota
	class2xx
	class3xx
	class4xx
	class5xx
	classError // transport error: no (complete) answer from the worker
	numClasses
)

var classNames = [numClasses]string{"1xx", "2xx", "3xx", "4xx", "5xx", "error"}

// classOf maps an HTTP status to its class.
func classOf(status int) codeClass {
	switch {
	case status < 200:
		return class1xx
	case status < 300:
		return class2xx
	case status < 400:
		return class3xx
	case status < 500:
		return class4xx
	}
	return class5xx
}

// latencyBounds are the histogram's upper bounds in seconds (Prometheus'
// default buckets, which suit request latencies from 5ms to 10s).
var latencyBounds = [...]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// latencyBoundsNs are latencyBounds in nanoseconds, compared on the hot path.
var latencyBoundsNs = func() (ns [len(latencyBounds)]int64) {
	for i, s := range latencyBounds {
		ns[i] = int64(s * float64(time.Second))
	}
	return ns
}()

// backend is one worker as the balancer sees it. Counters are atomics
// written on every attempt; they are the only copy of the counts (Stats and
// the Prometheus collector read them). A backend object lives as long as
// the Balancer, also after removal, so its counts are never lost.
type backend struct {
	id   string
	addr atomic.Pointer[string] // replaced if SetBackends moves the ID

	// Hot path.
	inflight  atomic.Int64
	classes   [numClasses]atomic.Uint64             // attempts by outcome
	latencyNs atomic.Int64                          // sum of attempt durations
	buckets   [len(latencyBounds) + 1]atomic.Uint64 // non-cumulative; last is +Inf

	// Passive health, written on the failure path.
	consecConn   atomic.Int32
	consec5xx    atomic.Int32
	ejectedUntil atomic.Int64 // unix nanoseconds; ejected while now < ejectedUntil
	ejections    atomic.Uint64

	// Membership and active health; read when the pool is rebuilt.
	healthy     atomic.Bool // passed Rise active checks (and not marked down since)
	everHealthy atomic.Bool // passed its first checks once: from then on it is checked every Interval
	removed     atomic.Bool // not in the desired set any more

	// Guarded by Balancer.mu.
	ejectStreak  int       // ejections in a row, for the doubling period
	lastEjectEnd time.Time // when the last ejection period ended
	ejectTimer   *time.Timer
	stopCheck    context.CancelFunc

	// Why the last active check failed, nil once one passes; read by Stats.
	healthErr atomic.Pointer[string]

	// Active check state, guarded by hmu. gen changes on MarkDown and
	// re-add, so a check that started before is ignored. warned is set
	// once the backend's failing checks were logged at WARN, and cleared
	// when it becomes healthy: one warning per spell of failing.
	// failingSince is when the current spell of failed checks began.
	hmu          sync.Mutex
	passes       int
	fails        int
	gen          uint64
	warned       bool
	failingSince time.Time

	// Keep-alive connections to the worker, and the dials under way.
	conns connPool
	dials chan struct{}

	// WaitIdle support: watched turns true once someone waits, after which
	// the request that brings inflight to zero closes idleCh.
	watched atomic.Bool
	idleMu  sync.Mutex
	idleCh  chan struct{}
}

func newBackend(id, addr string) *backend {
	be := &backend{id: id, dials: make(chan struct{}, maxDials)}
	be.addr.Store(&addr)
	return be
}

// address returns the worker's current host:port.
func (be *backend) address() string { return *be.addr.Load() }

// observe counts one finished attempt.
func (be *backend) observe(c codeClass, d time.Duration) {
	be.classes[c].Add(1)
	ns := int64(d)
	be.latencyNs.Add(ns)
	i := 0
	for i < len(latencyBoundsNs) && ns > latencyBoundsNs[i] {
		i++
	}
	be.buckets[i].Add(1)
}

// counts returns the cumulative success and failure counts: failed is a
// 5xx answer or a transport error, everything else succeeded.
func (be *backend) counts() (success, failed uint64) {
	for c := class1xx; c < class5xx; c++ {
		success += be.classes[c].Load()
	}
	failed = be.classes[class5xx].Load() + be.classes[classError].Load()
	return success, failed
}

// ejected reports whether a passive ejection is in force at now.
func (be *backend) ejected(now int64) bool { return now < be.ejectedUntil.Load() }

// release ends one in-flight request and wakes WaitIdle when it was the last.
func (be *backend) release() {
	if be.inflight.Add(-1) == 0 && be.watched.Load() {
		be.idleMu.Lock()
		if be.idleCh != nil {
			close(be.idleCh)
			be.idleCh = nil
		}
		be.idleMu.Unlock()
	}
}

// waitIdle blocks until the backend has no request in flight or ctx ends.
func (be *backend) waitIdle(ctx context.Context) error {
	for {
		be.idleMu.Lock()
		be.watched.Store(true)
		if be.idleCh == nil {
			be.idleCh = make(chan struct{})
		}
		ch := be.idleCh
		be.idleMu.Unlock()
		// watched is set before inflight is read, and release decrements
		// before it reads watched: one of the two sees the other.
		if be.inflight.Load() == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// resetHealth forgets active-check progress: the backend must pass Rise
// checks again (or is healthy at once when active checks are off).
func (be *backend) resetHealth(healthy bool) {
	be.hmu.Lock()
	be.gen++
	be.passes, be.fails = 0, 0
	be.warned = false
	be.healthErr.Store(nil)
	be.healthy.Store(healthy)
	be.hmu.Unlock()
}

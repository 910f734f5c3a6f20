// Package balancer is golb's reverse proxy: it listens on one or more ports,
// spreads requests over a shared pool of workers with a pluggable selection
// policy, and keeps that pool honest with active health checks, passive
// ejection and budgeted retries. It imports nothing of golb; core hands it
// the worker set (SetBackends, MarkDown) and reads its counters (Stats,
// InFlight, Collector).
package balancer

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Balancer is one named reverse proxy with its listeners and worker pool.
// All methods are safe for concurrent use.
type Balancer struct {
	// cfgp is the config in effect with what derives from it (update.go):
	// read through conf(), replaced whole by Update, never mutated.
	cfgp    atomic.Pointer[settings]
	log     *slog.Logger
	dialer  net.Dialer
	tr      *http.Transport // health checks only
	checker *http.Client
	budget  retryBudget
	local   map[string]http.Handler
	hold    *holdQueue // nil: holding off

	// Pre-rendered JSON error bodies.
	bodyUnavailable, bodyUnreachable, bodyTimeout, bodyFailed []byte

	pool atomic.Pointer[[]*backend] // candidates only; replaced, never mutated
	// backends are every backend the balancer counts (backendSet),
	// published as one value: a reader never sees one in both lists or in
	// neither, which would count it twice or not at all.
	backends atomic.Pointer[backendSet]

	retries      atomic.Uint64 // retries granted
	budgetDeny   atomic.Uint64 // retries refused by the budget
	unavailable  atomic.Uint64 // requests answered 503: no candidate
	clientErrors atomic.Uint64 // requests refused as the client's error (4xx from golb)
	limitWarned  onceAMinute   // waitForSlot's WARN
	fdWarned     onceAMinute   // a dial's WARN for running out of descriptors

	closing atomic.Bool // Shutdown began: no new connections, none kept alive
	connMu  sync.Mutex
	conns   map[*clientConn]struct{}
	open    atomic.Int64 // len(conns), read without the lock
	connWG  sync.WaitGroup

	mu        sync.Mutex
	byID      map[string]*backend
	members   []*backend // current desired set, in SetBackends order
	panicMode bool
	started   bool
	closed    bool
	listeners []net.Listener
	serveWG   sync.WaitGroup

	healthCtx  context.Context
	healthStop context.CancelFunc
	healthWG   sync.WaitGroup
}

// Pool is what core drives: the desired worker set, worker deaths, and
// the wait before a removed worker is stopped.
type Pool interface {
	SetBackends(bs []Backend)
	MarkDown(id string)
	WaitIdle(ctx context.Context, id string) error
}

// Counters is what core reads: per-worker outcome counts and health (for
// the stats sink and the admin API) and the in-flight total (for the
// autoscaler).
type Counters interface {
	Stats() []WorkerStats
	InFlight() int64
}

var (
	_ Pool     = (*Balancer)(nil)
	_ Counters = (*Balancer)(nil)
)

// WorkerStats are one backend's cumulative counts since New.
type WorkerStats struct {
	ID         string
	Address    string
	Success    uint64        // attempts answered with a status below 500
	Failed     uint64        // attempts answered 5xx or ended by a transport error
	LatencySum time.Duration // sum of attempt durations; mean = LatencySum/(Success+Failed)
	InFlight   int64
	Healthy    bool // passes active checks, not ejected, not removed
	Removed    bool // no longer in the desired set (its counts are kept)
	// HealthError is why the last active check failed, e.g. "GET /healthz:
	// 404 Not Found"; empty once a check passes (and when checks are off).
	HealthError string
}

// New validates cfg and builds a Balancer. Nothing is bound until Start.
func New(cfg Config) (*Balancer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configuring balancer %q: %w", cfg.Name, err)
	}
	cfg = cfg.withDefaults()
	sel, _ := newSelector(cfg.Policy) // checked by Validate
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("balancer", cfg.Name)

	b := &Balancer{
		log:    log,
		byID:   make(map[string]*backend),
		budget: newRetryBudget(cfg.RetryBudget, cfg.RetryMinPerSec),
	}
	b.cfgp.Store(&settings{Config: cfg, sel: sel, retry5xx: cfg.retryOn5xx()})
	if len(cfg.Local) > 0 {
		b.local = make(map[string]http.Handler, len(cfg.Local))
		for p, h := range cfg.Local {
			b.local[p] = h
		}
	}
	b.hold = newHoldQueue(cfg.Hold, cfg.Name)
	b.bodyUnavailable = errorBody("no healthy workers", cfg.Name)
	b.bodyUnreachable = errorBody("worker unreachable", cfg.Name)
	b.bodyTimeout = errorBody("worker timed out", cfg.Name)
	b.bodyFailed = errorBody("worker failed", cfg.Name)

	b.dialer = net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	b.conns = make(map[*clientConn]struct{})
	b.tr = b.newCheckTransport()
	b.checker = &http.Client{
		Transport: b.tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a 3xx passes; never follow it
		},
	}
	b.healthCtx, b.healthStop = context.WithCancel(context.Background())
	empty := []*backend{}
	b.pool.Store(&empty)
	b.backends.Store(&backendSet{all: empty, retired: empty})
	return b, nil
}

// Start binds every listener, or none: if one address cannot be bound, the
// ones already bound are closed and the error names the address. It then
// serves in the background and starts active health checks. ctx bounds
// only the binding; the balancer runs until Shutdown.
func (b *Balancer) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if b.started {
		return ErrAlreadyStarted
	}
	var lc net.ListenConfig
	lns := make([]net.Listener, 0, b.conf().Listeners)
	for i := range b.conf().Listeners {
		port := 0
		if b.conf().Port != 0 {
			port = b.conf().Port + i
		}
		addr := net.JoinHostPort(b.conf().BindAddr, strconv.Itoa(port))
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return fmt.Errorf("starting balancer %q: %w %s: %w", b.conf().Name, ErrListen, addr, err)
		}
		lns = append(lns, &trackedListener{Listener: ln})
	}
	b.started = true
	b.listeners = lns
	for _, ln := range lns {
		b.serveWG.Go(func() { b.serve(ln) })
		b.log.Info("listening", "addr", ln.Addr().String(), "policy", b.conf().Policy)
	}
	for _, be := range b.members {
		b.startCheckLocked(be)
	}
	return nil
}

// Addrs returns the bound listener addresses (host:port), in port order.
func (b *Balancer) Addrs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, len(b.listeners))
	for i, ln := range b.listeners {
		out[i] = ln.Addr().String()
	}
	return out
}

// SetBackends replaces the desired pool. New backends (and re-added or
// moved ones) start unhealthy and are checked at once; they get traffic
// after Rise passing checks. Removed backends stop receiving new requests
// at once; their in-flight requests finish (see WaitIdle) and their counts
// stay in Stats. Entries with an empty ID or address, or a repeated ID, are
// skipped and logged.
func (b *Balancer) SetBackends(bs []Backend) {
	b.mu.Lock()
	defer b.mu.Unlock()
	want := make(map[string]bool, len(bs))
	members := make([]*backend, 0, len(bs))
	var fresh []*backend
	for _, d := range bs {
		if d.ID == "" || d.Address == "" || want[d.ID] {
			b.log.Warn("skipping backend", "id", d.ID, "addr", d.Address,
				"err", fmt.Errorf("%w: empty or repeated id, or empty address", ErrInvalidBackend))
			continue
		}
		want[d.ID] = true
		be, ok := b.byID[d.ID]
		switch {
		case !ok:
			// A retired backend coming back keeps its counters (one
			// series per worker in /metrics); any other is new.
			if be = b.unretireLocked(d.ID); be != nil {
				be.addr.Store(&d.Address)
				be.conns.reopen()
				be.removed.Store(false)
			} else {
				be = newBackend(d.ID, d.Address)
				set := *b.backends.Load()
				set.all = append(slices.Clone(set.all), be)
				b.backends.Store(&set)
			}
			b.byID[d.ID] = be
			fresh = append(fresh, be)
		case be.removed.Load():
			be.addr.Store(&d.Address)
			be.conns.reopen()
			be.removed.Store(false)
			fresh = append(fresh, be)
		case be.address() != d.Address:
			// Same ID, new address: a different process; check it anew.
			b.stopCheckLocked(be)
			be.addr.Store(&d.Address)
			be.conns.closeIdle(false)
			fresh = append(fresh, be)
		}
		members = append(members, be)
	}
	for _, be := range b.members {
		if !want[be.id] {
			be.removed.Store(true)
			be.healthy.Store(false)
			be.conns.closeIdle(true)
			b.stopCheckLocked(be)
			if be.ejectTimer != nil {
				be.ejectTimer.Stop()
			}
			b.log.Info("backend removed", "id", be.id, "addr", be.address(), "inflight", be.inflight.Load())
		}
	}
	b.members = members
	b.forgetLocked()
	for _, be := range fresh {
		be.resetHealth(b.conf().Health.Interval < 0)
		be.consecConn.Store(0)
		be.consec5xx.Store(0)
		b.log.Info("backend added", "id", be.id, "addr", be.address())
		b.startCheckLocked(be)
	}
	b.rebuildLocked()
}

// MarkDown takes a worker out of the pool at once, e.g. because its process
// exited. It comes back only after passing Rise active checks again (with
// active checks off, only by being removed and added again).
func (b *Balancer) MarkDown(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	be, ok := b.byID[id]
	if !ok {
		return
	}
	be.resetHealth(false)
	b.log.Info("backend marked down", "id", id, "addr", be.address())
	b.rebuildLocked()
}

// WaitIdle blocks until backend id has no request in flight, or ctx ends.
// The reconciler calls it after removing a worker and before stopping it.
func (b *Balancer) WaitIdle(ctx context.Context, id string) error {
	b.mu.Lock()
	be, ok := b.byID[id]
	b.mu.Unlock()
	if !ok {
		return fmt.Errorf("waiting for backend %q to go idle: %w", id, ErrUnknownBackend)
	}
	if err := be.waitIdle(ctx); err != nil {
		return fmt.Errorf("waiting for backend %q to go idle (%d in flight): %w", id, be.inflight.Load(), err)
	}
	return nil
}

// Unavailable is how many requests were answered 503 because no worker was a
// candidate (the autoscaler reads it as demand a group at zero cannot see).
func (b *Balancer) Unavailable() uint64 { return b.unavailable.Load() }

// InFlight returns the number of requests currently being proxied.
func (b *Balancer) InFlight() int64 {
	var n int64
	for _, be := range b.backends.Load().all {
		n += be.inflight.Load()
	}
	return n
}

// forgetLocked drops the removed, idle backends, keeping the counts of
// those that counted an attempt in retired: a crash loop or a long run of
// replacements no longer grows the balancer's backends for ever.
func (b *Balancer) forgetLocked() {
	forgettable := func(be *backend) bool { return be.removed.Load() && be.inflight.Load() == 0 }
	set := *b.backends.Load()
	if !slices.ContainsFunc(set.all, forgettable) {
		return
	}
	keep := make([]*backend, 0, len(set.all))
	retired := slices.Clone(set.retired)
	var gone []*backend
	for _, be := range set.all {
		if !forgettable(be) {
			keep = append(keep, be)
			continue
		}
		if s, f := be.counts(); s+f > 0 {
			retired = append(retired, be)
		}
		gone = append(gone, be)
		delete(b.byID, be.id)
	}
	b.backends.Store(&backendSet{all: keep, retired: retired})
	for _, be := range gone {
		be.conns.closeIdle(true)
	}
}

// unretireLocked takes backend id out of retired, or returns nil.
func (b *Balancer) unretireLocked(id string) *backend {
	set := *b.backends.Load()
	i := slices.IndexFunc(set.retired, func(be *backend) bool { return be.id == id })
	if i < 0 {
		return nil
	}
	be := set.retired[i]
	set.retired = slices.Delete(slices.Clone(set.retired), i, i+1)
	set.all = append(slices.Clone(set.all), be)
	b.backends.Store(&set)
	return be
}

// counted is every backend whose counters Stats and the collector report:
// the retired ones, then the others.
func (b *Balancer) counted() []*backend {
	set := b.backends.Load()
	retired, all := set.retired, set.all
	if len(retired) == 0 {
		return all
	}
	return append(append(make([]*backend, 0, len(retired)+len(all)), retired...), all...)
}

// Stats returns the cumulative counts of every backend that counted an
// attempt or is a member: the retired ones first, then the others in the
// order they were first added.
func (b *Balancer) Stats() []WorkerStats {
	b.mu.Lock()
	b.forgetLocked()
	b.mu.Unlock()
	all := b.counted()
	now := time.Now().UnixNano()
	out := make([]WorkerStats, len(all))
	for i, be := range all {
		s, f := be.counts()
		var herr string
		if p := be.healthErr.Load(); p != nil {
			herr = *p
		}
		out[i] = WorkerStats{
			ID:          be.id,
			Address:     be.address(),
			Success:     s,
			Failed:      f,
			LatencySum:  time.Duration(be.latencyNs.Load()),
			InFlight:    be.inflight.Load(),
			Healthy:     be.healthy.Load() && !be.removed.Load() && !be.ejected(now),
			Removed:     be.removed.Load(),
			HealthError: herr,
		}
	}
	return out
}

// rebuildLocked recomputes the candidate pool from the members' state and
// publishes it. If ejection alone would empty the pool while some members
// pass their health checks, ejection is ignored (panic mode).
func (b *Balancer) rebuildLocked() {
	now := time.Now().UnixNano()
	pool := make([]*backend, 0, len(b.members))
	var ejected []*backend
	for _, be := range b.members {
		switch {
		case !be.healthy.Load() || be.removed.Load():
		case be.ejected(now):
			ejected = append(ejected, be)
		default:
			pool = append(pool, be)
		}
	}
	panicMode := len(pool) == 0 && len(ejected) > 0
	if panicMode {
		pool = ejected
	}
	if panicMode != b.panicMode {
		b.panicMode = panicMode
		if panicMode {
			b.log.Warn("every healthy worker is ejected; ignoring ejection", "workers", len(ejected))
		} else {
			b.log.Info("ejection back in force")
		}
	}
	old := *b.pool.Load()
	if len(old) > 0 && len(pool) == 0 {
		b.log.Warn("no healthy workers")
	}
	b.pool.Store(&pool)
	if len(pool) > 0 {
		b.hold.wake()
	}
}

// rebuild is rebuildLocked for callers not holding b.mu.
func (b *Balancer) rebuild() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rebuildLocked()
}

// Shutdown stops accepting connections, closes idle ones, lets in-flight
// requests finish (bounded by ctx and Config.DrainTimeout; then remaining
// connections are closed and the context error returned) and stops
// health checking.
func (b *Balancer) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.closing.Store(true)
	for _, be := range b.byID {
		if be.ejectTimer != nil {
			be.ejectTimer.Stop()
		}
	}
	for _, ln := range b.listeners {
		_ = ln.Close()
	}
	b.mu.Unlock()

	b.healthStop()
	b.healthWG.Wait()
	b.serveWG.Wait()

	ctx, cancel := context.WithTimeout(ctx, b.conf().DrainTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() { b.connWG.Wait(); close(done) }()
	var err error
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		b.closeIdleConns()
		select {
		case <-done: // nothing in flight: not cut short, whatever the deadline
			break wait
		default:
		}
		select {
		case <-done:
			break wait
		case <-tick.C:
		case <-ctx.Done():
			err = ctx.Err()
			b.closeAllConns()
			break wait
		}
	}
	for _, be := range b.allBackends() {
		be.conns.closeIdle(true)
	}
	b.tr.CloseIdleConnections()
	if err != nil {
		b.log.Warn("drain cut short", "inflight", b.InFlight(), "err", err)
		return fmt.Errorf("draining balancer %q: %w", b.conf().Name, err)
	}
	b.log.Info("shut down")
	return nil
}

// closeIdleConns closes the client connections that wait for a request,
// and the lingering ones (server.go).
func (b *Balancer) closeIdleConns() {
	b.connMu.Lock()
	defer b.connMu.Unlock()
	for c := range b.conns {
		if c.state.CompareAndSwap(connIdle, connClosed) || c.state.CompareAndSwap(connLingering, connClosed) {
			_ = c.nc.Close()
		}
	}
}

// closeAllConns ends every client connection and its attempt in flight.
func (b *Balancer) closeAllConns() {
	b.connMu.Lock()
	defer b.connMu.Unlock()
	for c := range b.conns {
		_ = c.nc.Close()
		if uc := c.cur.Load(); uc != nil {
			_ = uc.nc.Close()
		}
	}
}

func (b *Balancer) allBackends() []*backend { return b.backends.Load().all }

// backendSet is the balancer's backends, never modified once published.
// all is the members and the removed backends still in flight, in
// first-seen order: what InFlight walks. A removed backend is moved out
// once idle, to retired if it counted an attempt (its counters stay for
// Stats and /metrics) and nowhere if not (a crash-looping worker's).
type backendSet struct {
	all, retired []*backend
}

// onceAMinute rate-limits a WARN that a client can make recur at will.
type onceAMinute struct{ last atomic.Int64 }

// now reports whether the WARN is due: the first time, then a minute after
// the last that was.
func (o *onceAMinute) now() bool {
	t, last := time.Now().UnixNano(), o.last.Load()
	return t-last > int64(time.Minute) && o.last.CompareAndSwap(last, t)
}

package balancer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// startCheckLocked starts the active-check loop of be when the balancer is
// running and checks are on. The first check runs at once.
func (b *Balancer) startCheckLocked(be *backend) {
	if !b.started || b.closed || b.conf().Health.Interval < 0 || be.stopCheck != nil {
		return
	}
	ctx, cancel := context.WithCancel(b.healthCtx)
	be.stopCheck = cancel
	b.healthWG.Go(func() { b.checkLoop(ctx, be) })
}

// stopCheckLocked stops be's active-check loop, if any.
func (b *Balancer) stopCheckLocked(be *backend) {
	if be.stopCheck != nil {
		be.stopCheck()
		be.stopCheck = nil
	}
}

// checkLoop checks be every Interval. Until its first pass, a new worker is
// checked more often (from 25ms, doubling up to Interval): it is usually
// still starting at the first check, and waiting a whole Interval for its
// second would keep a ready worker out of the pool for seconds.
func (b *Balancer) checkLoop(ctx context.Context, be *backend) {
	wait := min(25*time.Millisecond, b.conf().Health.Interval)
	for {
		b.checkOnce(ctx, be)
		if be.everHealthy.Load() {
			wait = b.conf().Health.Interval
		} else {
			wait = min(wait*2, b.conf().Health.Interval)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// healthEvent is what one check changed, for the log.
type healthEvent uint8

const (
	healthSame    healthEvent = iota
	healthUp                  // became healthy
	healthDown                // was healthy, failed Fall checks in a row
	healthFailing             // not healthy, failed Fall checks in a row: warned once
)

// checkOnce runs one active check and applies its result. A failure's
// reason is kept for Stats until a check passes. Failing checks are logged
// at WARN once per spell (when the worker turns unhealthy, or when one that
// is not healthy has failed Fall in a row for at least an Interval),
// otherwise at DEBUG.
func (b *Balancer) checkOnce(ctx context.Context, be *backend) {
	be.hmu.Lock()
	gen := be.gen
	be.hmu.Unlock()

	addr := be.address()
	err := b.probe(ctx, addr)
	if ctx.Err() != nil {
		return // stopping: the result says nothing about the worker
	}

	be.hmu.Lock()
	if be.gen != gen {
		be.hmu.Unlock()
		return // marked down or re-added while the check ran
	}
	event := healthSame
	fall := b.conf().Health.Fall
	if err == nil {
		be.fails = 0
		be.passes++
		be.healthErr.Store(nil)
		if !be.healthy.Load() && be.passes >= b.conf().Health.Rise {
			be.healthy.Store(true)
			be.everHealthy.Store(true)
			be.warned = false
			event = healthUp
		}
	} else {
		reason := err.Error()
		be.healthErr.Store(&reason)
		be.passes = 0
		if be.fails == 0 {
			be.failingSince = time.Now()
		}
		be.fails++
		switch {
		case be.fails < fall:
		case be.healthy.Load():
			be.healthy.Store(false)
			be.warned = true
			event = healthDown
		case !be.warned && time.Since(be.failingSince) >= b.conf().Health.Interval:
			// Not before a whole Interval of failing: a starting worker
			// fails its first fast checks as a matter of course.
			be.warned = true
			event = healthFailing
		}
	}
	fails := be.fails
	be.hmu.Unlock()

	switch event {
	case healthUp:
		b.log.Info("worker healthy", "id", be.id, "addr", addr)
		b.rebuild()
	case healthDown:
		b.log.Warn("worker unhealthy", "id", be.id, "addr", addr, "reason", err.Error(), "failed_checks", fails)
		b.rebuild()
	case healthFailing:
		b.log.Warn("worker not passing its health check; it gets no traffic until it does",
			"id", be.id, "addr", addr, "reason", err.Error(), "failed_checks", fails)
	default:
		if err != nil {
			b.log.Debug("health check failed", "id", be.id, "addr", addr, "reason", err.Error())
		}
	}
}

// probe GETs the health path of addr; a 2xx or 3xx answer within Timeout
// passes. The error is short, since it is shown as the worker's health
// error: "GET /healthz: 404 Not Found", "GET /healthz: no answer within 1s",
// "GET /healthz: dial tcp 127.0.0.1:6000: connect: connection refused".
func (b *Balancer) probe(ctx context.Context, addr string) error {
	path := b.conf().Health.Path
	ctx, cancel := context.WithTimeout(ctx, b.conf().Health.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return fmt.Errorf("GET %s: building the request: %w", path, err)
	}
	req.Header.Set("User-Agent", "golb-health-check")
	resp, err := b.checker.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("GET %s: no answer within %v", path, b.conf().Health.Timeout)
		}
		var ue *url.Error // "Get \"http://…\": " says again what we say
		if errors.As(err, &ue) {
			err = ue.Err
		}
		var de *dialError // "dialing worker ADDR: " too
		if errors.As(err, &de) {
			err = de.err
		}
		return fmt.Errorf("GET %s: %w", path, err)
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return nil
}

// passive updates be's passive-health streaks after an attempt and ejects
// it when a streak reaches its threshold. connFailure means the connection
// failed or broke before any answer; answered means a status was received.
func (b *Balancer) passive(be *backend, status int, connFailure bool) {
	switch {
	case connFailure:
		be.consec5xx.Store(0)
		n := be.consecConn.Add(1)
		if lim := b.conf().EjectAfterConnFailures; lim > 0 && int(n) >= lim {
			b.eject(be, "connection failures", int(n))
		}
	case status >= 500:
		if be.consecConn.Load() != 0 {
			be.consecConn.Store(0)
		}
		n := be.consec5xx.Add(1)
		if lim := b.conf().Eject5xx; lim > 0 && int(n) >= lim {
			b.eject(be, "5xx answers", int(n))
		}
	case status > 0:
		// Store only when needed: a write per request would bounce the
		// cache line between cores.
		if be.consecConn.Load() != 0 {
			be.consecConn.Store(0)
		}
		if be.consec5xx.Load() != 0 {
			be.consec5xx.Store(0)
		}
	}
}

// eject takes be out of the pool for EjectBase, doubled for each ejection
// in a row up to EjectMax; the streak resets once be has gone EjectMax
// without being ejected.
func (b *Balancer) eject(be *backend, reason string, streak int) {
	now := time.Now()
	if be.ejected(now.UnixNano()) {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if be.ejected(now.UnixNano()) || be.removed.Load() || b.closed {
		return
	}
	if !be.lastEjectEnd.IsZero() && now.Sub(be.lastEjectEnd) > b.conf().EjectMax {
		be.ejectStreak = 0
	}
	d := b.conf().EjectBase << min(be.ejectStreak, 30)
	if d > b.conf().EjectMax || d <= 0 {
		d = b.conf().EjectMax
	}
	be.ejectStreak++
	until := now.Add(d)
	be.lastEjectEnd = until
	be.ejectedUntil.Store(until.UnixNano())
	be.consecConn.Store(0)
	be.consec5xx.Store(0)
	be.ejections.Add(1)
	if be.ejectTimer != nil {
		be.ejectTimer.Stop()
	}
	be.ejectTimer = time.AfterFunc(d, func() {
		b.log.Info("ejection ended", "id", be.id, "addr", be.address())
		b.rebuild()
	})
	b.log.Warn("worker ejected", "id", be.id, "addr", be.address(), "reason", reason,
		"consecutive", streak, "for", d)
	b.rebuildLocked()
}

// newCheckTransport builds the transport of the active health checks: a
// small keep-alive pool of its own, apart from the proxy's connections.
func (b *Balancer) newCheckTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil, // never an environment proxy: workers are local
		DialContext:         b.dialer.DialContext,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     b.conf().IdleConnTimeout,
		DisableCompression:  true,
	}
}

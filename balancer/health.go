package balancer

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// startCheckLocked starts the active-check loop of be when the balancer is
// running and checks are on. The first check runs at once.
func (b *Balancer) startCheckLocked(be *backend) {
	if !b.started || b.closed || b.cfg.Health.Interval < 0 || be.stopCheck != nil {
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
	wait := min(25*time.Millisecond, b.cfg.Health.Interval)
	for {
		b.checkOnce(ctx, be)
		if be.everHealthy.Load() {
			wait = b.cfg.Health.Interval
		} else {
			wait = min(wait*2, b.cfg.Health.Interval)
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

// checkOnce runs one active check and applies its result.
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
	changed := false
	if err == nil {
		be.fails = 0
		be.passes++
		if !be.healthy.Load() && be.passes >= b.cfg.Health.Rise {
			be.healthy.Store(true)
			be.everHealthy.Store(true)
			changed = true
		}
	} else {
		be.passes = 0
		be.fails++
		if be.healthy.Load() && be.fails >= b.cfg.Health.Fall {
			be.healthy.Store(false)
			changed = true
		}
	}
	be.hmu.Unlock()

	if !changed {
		if err != nil {
			b.log.Debug("health check failed", "id", be.id, "addr", addr, "err", err)
		}
		return
	}
	if err == nil {
		b.log.Info("worker healthy", "id", be.id, "addr", addr)
	} else {
		b.log.Warn("worker unhealthy", "id", be.id, "addr", addr, "err", err)
	}
	b.rebuild()
}

// probe GETs the health path of addr; a 2xx or 3xx answer within Timeout passes.
func (b *Balancer) probe(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Health.Timeout)
	defer cancel()
	url := "http://" + addr + b.cfg.Health.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("building health check request for %s: %w", url, err)
	}
	req.Header.Set("User-Agent", "golb-health-check")
	resp, err := b.checker.Do(req)
	if err != nil {
		return fmt.Errorf("checking %s: %w", url, err)
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("checking %s: status %d", url, resp.StatusCode)
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
		if lim := b.cfg.EjectAfterConnFailures; lim > 0 && int(n) >= lim {
			b.eject(be, "connection failures", int(n))
		}
	case status >= 500:
		if be.consecConn.Load() != 0 {
			be.consecConn.Store(0)
		}
		n := be.consec5xx.Add(1)
		if lim := b.cfg.Eject5xx; lim > 0 && int(n) >= lim {
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
	if !be.lastEjectEnd.IsZero() && now.Sub(be.lastEjectEnd) > b.cfg.EjectMax {
		be.ejectStreak = 0
	}
	d := b.cfg.EjectBase << min(be.ejectStreak, 30)
	if d > b.cfg.EjectMax || d <= 0 {
		d = b.cfg.EjectMax
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

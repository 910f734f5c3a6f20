package balancer

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync/atomic"
)

// This file changes a running balancer in place, for golb's reload: the
// settings that shape new requests are swapped whole behind one atomic
// pointer (the hot path pays one load, no lock), and a change of listeners
// opens the new ones before it closes the old, whose connections finish
// their current request.

// settings is the Config in effect and what New derives from it. It is
// never modified once published: Update stores a new one.
type settings struct {
	Config
	sel      selector
	retry5xx bool
}

// conf returns the settings in effect. A caller that reads several fields
// for one decision should keep the pointer rather than call conf again.
func (b *Balancer) conf() *settings { return b.cfgp.Load() }

// Config returns the config in effect, with every default filled in.
func (b *Balancer) Config() Config { return b.conf().Config }

// trackedListener is a listener Start or Update opened; gone is set when
// Update closes it, so that its connections end after their current request.
type trackedListener struct {
	net.Listener
	gone atomic.Bool
}

// Update applies cfg to the running balancer, for new requests and new
// connections; requests in flight finish under the settings they began
// with. It changes the policy (a new selector; the same policy keeps its
// state), retries and retry_on, the proxy and client timeouts, the HTTP
// limits, the drain timeout, and the health check (each check loop reads
// it at its next round). A change of BindAddr, Port or Listeners binds the
// new listeners first and then closes the old ones: each of their
// connections finishes its request in flight and is then closed, idle
// ones at once. If a new listener cannot be bound, nothing changes and
// the error names the address.
//
// Name, Local and Logger, and the settings New sized its transport and
// retry budget with (RetryBudget, RetryMinPerSec, DialTimeout,
// IdleConnTimeout, MaxIdleConnsPerHost), stay as New set them, and Hold as
// New or SetHold (hold.go) last set it: those of cfg are ignored. Turning active health checks on or off (a negative
// Health.Interval) is refused with ErrInvalidHealthCheck.
func (b *Balancer) Update(ctx context.Context, cfg Config) error {
	// Under b.mu from the start: SetHold, or another Update, must not
	// change the config between reading it and storing the next one.
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.conf()
	cfg.Name, cfg.Local, cfg.Logger, cfg.Hold = old.Name, old.Local, old.Logger, old.Hold
	cfg.RetryBudget, cfg.RetryMinPerSec, cfg.DialTimeout = old.RetryBudget, old.RetryMinPerSec, old.DialTimeout
	cfg.IdleConnTimeout, cfg.MaxIdleConnsPerHost = old.IdleConnTimeout, old.MaxIdleConnsPerHost
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("updating balancer %q: %w", old.Name, err)
	}
	cfg = cfg.withDefaults()
	if (cfg.Health.Interval < 0) != (old.Health.Interval < 0) {
		return fmt.Errorf("updating balancer %q: %w: active checks cannot be turned on or off in place", old.Name, ErrInvalidHealthCheck)
	}
	next := &settings{Config: cfg, sel: old.sel, retry5xx: cfg.retryOn5xx()}
	if cfg.Policy != old.Policy {
		next.sel, _ = newSelector(cfg.Policy) // checked by Validate
	}

	if b.closed {
		return ErrClosed
	}
	if !b.started || sameListeners(old.Config, cfg) {
		b.cfgp.Store(next)
		b.logUpdate(old, next)
		return nil
	}
	lns, opened, err := b.bindLocked(ctx, old.Config, cfg)
	if err != nil {
		return err
	}
	b.cfgp.Store(next)
	var closed []*trackedListener
	for _, ln := range b.listeners {
		if !slices.Contains(lns, ln) {
			closed = append(closed, ln.(*trackedListener))
		}
	}
	b.listeners = lns
	for _, ln := range opened {
		b.serveWG.Go(func() { b.serve(ln) })
		b.log.Info("listening", "addr", ln.Addr().String(), "policy", cfg.Policy)
	}
	for _, tl := range closed {
		tl.gone.Store(true)
		_ = tl.Close()
		b.log.Info("listener closed; its connections finish their requests", "addr", tl.Addr().String())
	}
	b.closeGoneIdle()
	b.logUpdate(old, next)
	return nil
}

// logUpdate logs what an Update changed, when anything did.
func (b *Balancer) logUpdate(old, next *settings) {
	if old.Policy != next.Policy || old.Retries != next.Retries || !slices.Equal(old.RetryOn, next.RetryOn) || old.Health != next.Health {
		b.log.Info("balancer updated", "policy", next.Policy, "retries", next.Retries, "retry_on", next.RetryOn,
			"health_path", next.Health.Path, "health_interval", next.Health.Interval)
	}
}

// sameListeners reports whether a and b bind the same listeners.
func sameListeners(a, b Config) bool {
	return a.BindAddr == b.BindAddr && a.Port == b.Port && a.Listeners == b.Listeners
}

// listenAddrs are the addresses cfg's listeners bind, in order; with Port
// 0 each is an ephemeral port.
func listenAddrs(cfg Config) []string {
	out := make([]string, cfg.Listeners)
	for i := range out {
		port := 0
		if cfg.Port != 0 {
			port = cfg.Port + i
		}
		out[i] = net.JoinHostPort(cfg.BindAddr, strconv.Itoa(port))
	}
	return out
}

// bindLocked returns cfg's listeners in port order, b's for the addresses
// old bound already and new ones for the rest, and which are new (all of
// them bound, or none and an error). An ephemeral listener is kept by
// position. b.listeners is in old's order, which listenAddrs gives.
func (b *Balancer) bindLocked(ctx context.Context, old, cfg Config) (lns, opened []net.Listener, err error) {
	have := listenAddrs(old)
	var lc net.ListenConfig
	for i, addr := range listenAddrs(cfg) {
		j := slices.Index(have, addr)
		if cfg.Port == 0 {
			j = -1 // every ":0" is a new port, unless it keeps its place
			if old.Port == 0 && old.BindAddr == cfg.BindAddr && i < len(have) {
				j = i
			}
		}
		if j >= 0 && j < len(b.listeners) {
			lns = append(lns, b.listeners[j])
			continue
		}
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			for _, l := range opened {
				_ = l.Close()
			}
			return nil, nil, fmt.Errorf("updating balancer %q: %w %s: %w", cfg.Name, ErrListen, addr, err)
		}
		tl := &trackedListener{Listener: ln}
		lns = append(lns, tl)
		opened = append(opened, tl)
	}
	return lns, opened, nil
}

// closeGoneIdle closes the idle connections of closed listeners; the active
// ones close themselves after their request (clientConn.serve).
func (b *Balancer) closeGoneIdle() {
	b.connMu.Lock()
	defer b.connMu.Unlock()
	for c := range b.conns {
		if c.gone != nil && c.gone.Load() && c.state.CompareAndSwap(connIdle, connClosed) {
			_ = c.nc.Close()
		}
	}
}

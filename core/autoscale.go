package core

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/golb/golb/balancer"
	"github.com/golb/golb/core/autoscale"
	"github.com/golb/golb/core/config"
	"github.com/golb/golb/core/state"
)

// This file feeds core/autoscale: it samples each scaled group's balancers
// (in-flight and held requests, arrivals, ready workers) every
// sampleEvery, asks for a decision every decideEvery (and at once when a
// request is held at zero), applies the ones that change the desired
// count, and keeps them as events. A reload starts, changes and stops
// autoscalers (reload_scale.go).

const (
	sampleEvery = 250 * time.Millisecond
	decideEvery = time.Second
)

// autoscaling is the agent's autoscalers, one per group with a scale
// block, and their decisions.
type autoscaling struct {
	events *autoscale.Events
	mu     sync.Mutex
	groups map[string]*groupScaler
}

func newAutoscaling() *autoscaling {
	return &autoscaling{events: autoscale.NewEvents(autoscale.DefaultKeep), groups: map[string]*groupScaler{}}
}

// groupScaler is one group's autoscaler and what its feeder remembers.
type groupScaler struct {
	name string
	as   *autoscale.Autoscaler
	poke chan struct{} // a held request or a reload: decide now
	// lastCount is the requests the balancers had counted at the last
	// sample, for the arrivals since.
	lastCount uint64
	// stop ends its feeder; nil until the feeder starts (autoscaling.mu).
	stop context.CancelFunc
}

// wake has gs decide at once, if it is not about to.
func (gs *groupScaler) wake() {
	select {
	case gs.poke <- struct{}{}:
	default:
	}
}

// scaler returns group's autoscaler, creating it from g's scale block the
// first time; nil for a group without one. A reload changes its spec
// (SetSpec) rather than creating another.
func (s *autoscaling) scaler(g *config.Group) *groupScaler {
	if g == nil || g.Scale == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if gs := s.groups[g.Name]; gs != nil {
		return gs
	}
	as, err := autoscale.New(g.Scale.Spec(), time.Now())
	if err != nil { // config.Parse checked the same bounds
		panic(fmt.Sprintf("autoscaler of group %q: %v", g.Name, err))
	}
	gs := &groupScaler{name: g.Name, as: as, poke: make(chan struct{}, 1)}
	s.groups[g.Name] = gs
	return gs
}

// lookup returns group's autoscaler, or nil.
func (s *autoscaling) lookup(group string) *groupScaler {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.groups[group]
}

// remove forgets group's autoscaler and stops its feeder; it returns the
// autoscaler, or nil if the group had none.
func (s *autoscaling) remove(group string) *groupScaler {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs := s.groups[group]
	if gs == nil {
		return nil
	}
	delete(s.groups, group)
	if gs.stop != nil {
		gs.stop()
	}
	return gs
}

// feeding marks gs's feeder started under a context of ctx, whose cancel
// it returns; ok is false if it runs already or gs was removed.
func (s *autoscaling) feeding(ctx context.Context, gs *groupScaler) (_ context.Context, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gs.stop != nil || s.groups[gs.name] != gs {
		return nil, false
	}
	ctx, gs.stop = context.WithCancel(ctx)
	return ctx, true
}

// holdConfig is how the balancers of group g hold requests while it has no
// ready worker: from its scale block (holdSettings), its autoscaler
// created now, so that the first held request wakes it.
func (a *Agent) holdConfig(g *config.Group) balancer.Hold {
	a.autoscalers.scaler(g)
	return a.holdSettings(g)
}

// holdSettings is holdConfig without creating the autoscaler (a reload's
// plan creates nothing): each held request wakes the group's autoscaler of
// the moment, if it has one. Groups without a scale block answer 503 at
// once, as before.
func (a *Agent) holdSettings(g *config.Group) balancer.Hold {
	if g == nil || g.Scale == nil {
		return balancer.Hold{}
	}
	name := g.Name
	return balancer.Hold{
		Max:     *g.Scale.HoldMax,
		Timeout: g.Scale.HoldTimeoutDur,
		OnHold: func() {
			if gs := a.autoscalers.lookup(name); gs != nil {
				gs.wake()
			}
		},
	}
}

// autoscaleLoop runs a feeder for each group with a scale block at start
// (or by the time control starts: a reload during adoption may have added
// or removed some), until ctx ends. Those a later reload adds run as the
// agent's work (startFeeder).
func (a *Agent) autoscaleLoop(ctx context.Context) {
	var wg sync.WaitGroup
	for _, g := range a.config().Groups {
		if gs := a.autoscalers.scaler(g); gs != nil {
			if fctx, ok := a.autoscalers.feeding(ctx, gs); ok {
				wg.Go(func() { a.feedAutoscaler(fctx, gs) })
			}
		}
	}
	wg.Wait()
}

// startFeeder runs gs's feeder under ctx unless it runs already.
func (a *Agent) startFeeder(ctx context.Context, gs *groupScaler) {
	if fctx, ok := a.autoscalers.feeding(ctx, gs); ok {
		a.goWork(fctx, func(ctx context.Context) { a.feedAutoscaler(ctx, gs) })
	}
}

// feedAutoscaler samples group gs until ctx ends, deciding every
// decideEvery and whenever a request is held.
func (a *Agent) feedAutoscaler(ctx context.Context, gs *groupScaler) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	gs.lastCount = a.sampleGroup(gs, time.Now(), true).count
	lastDecide := time.Now()
	for {
		now := time.Time{}
		select {
		case <-ctx.Done():
			return
		case now = <-t.C:
		case <-gs.poke:
			now = time.Now()
			lastDecide = time.Time{} // decide now
		}
		if ctx.Err() != nil { // stopped: by a reload, or control ended
			return
		}
		smp := a.sampleGroup(gs, now, false)
		if now.Sub(lastDecide) < decideEvery-sampleEvery/2 {
			continue
		}
		lastDecide = now
		a.decide(gs, now, smp.ready)
	}
}

// groupSample is one reading of a group's balancers.
type groupSample struct {
	count uint64 // requests counted so far: attempts plus refusals
	ready int    // healthy members, the most any of its balancers sees
}

// sampleGroup reads gs's balancers and records the sample (unless first,
// which only sets the baseline of the arrival count).
func (a *Agent) sampleGroup(gs *groupScaler, now time.Time, first bool) groupSample {
	var inflight int64
	var out groupSample
	for _, b := range a.balancersOf(gs.name) {
		inflight += b.InFlight() + b.Held()
		ready := 0
		for _, w := range b.Stats() {
			out.count += w.Success + w.Failed
			if w.Healthy {
				ready++
			}
		}
		out.count += b.Unavailable()
		out.ready = max(out.ready, ready)
	}
	if !first {
		arrived := out.count - min(gs.lastCount, out.count)
		gs.as.Record(now, autoscale.Sample{InFlight: float64(inflight), Requests: arrived})
	}
	gs.lastCount = out.count
	return out
}

// decide asks gs for a decision and applies it when it changes the count.
func (a *Agent) decide(gs *groupScaler, now time.Time, ready int) {
	cur, err := a.store.Group(nil, gs.name)
	if err != nil || cur == nil {
		return
	}
	d := gs.as.Decide(now, cur.Desired, ready)
	d.Group = gs.name
	if !d.Changed() {
		return
	}
	// Within the group's bounds as the store has them now: a reload may
	// have narrowed them since Decide read its spec.
	err = a.store.UpdateGroup(gs.name, func(g *state.Group) error { g.Desired = max(g.Min, min(g.Max, d.To)); return nil })
	if err != nil {
		a.logger.Error("applying a scale decision", "group", gs.name, "to", d.To, "err", err)
		return
	}
	a.autoscalers.events.Add(d)
	a.logger.Info("autoscaling", "group", gs.name, "from", d.From, "to", d.To, "mode", d.Mode,
		"reason", d.Reason, "stable_inflight", round2(d.StableInflight), "panic_inflight", round2(d.PanicInflight),
		"stable_rps", round2(d.StableRPS), "target", d.Target, "metric", d.Metric, "ready", d.Ready)
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// Scale sets a group's desired count: within [scale.min, scale.max] for a
// group with a scale block, where it is also a floor the autoscaler keeps
// for one stable window (see FloorUntil); anything from 0 to 1000 for the
// others.
func (a *Agent) Scale(group string, n int) error {
	from := 0
	err := a.store.UpdateGroup(group, func(g *state.Group) error {
		if n < g.Min || n > g.Max {
			return fmt.Errorf("%w: %d is not within [%d, %d]", ErrScaleBounds, n, g.Min, g.Max)
		}
		from, g.Desired = g.Desired, n
		return nil
	})
	if err != nil {
		return err
	}
	if gs := a.autoscalers.lookup(group); gs != nil {
		now := time.Now()
		_, until := gs.as.SetFloor(now, n)
		d := autoscale.Decision{Time: now, Group: group, From: from, To: n, Direction: autoscale.DirectionOf(from, n),
			Mode: autoscale.ModeStable, Reason: fmt.Sprintf("golb scale %s %d: a floor of %d until %s", group, n, n, until.Format(time.TimeOnly))}
		if gs.as.Panicking() {
			d.Mode = autoscale.ModePanic
		}
		a.autoscalers.events.Add(d)
		a.logger.Info("scaled by hand", "group", group, "from", from, "to", n, "floor_until", until)
	}
	return nil
}

// FloorUntil is when the floor the last Scale set on an autoscaled group
// ends: zero for a group without a scale block, or whose floor has ended.
func (a *Agent) FloorUntil(group string) time.Time {
	gs := a.autoscalers.lookup(group)
	if gs == nil {
		return time.Time{}
	}
	if _, until := gs.as.Floor(); time.Now().Before(until) {
		return until
	}
	return time.Time{}
}

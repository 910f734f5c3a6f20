package core

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/golb/golb/core/state"
)

// autoscaleLoop sets each scaled group's desired count from the in-flight
// requests its balancers see: ceil(in-flight / target_inflight), within
// [min, max]. It scales up at once and down only after the lower figure held
// for scaleDownAfter, so a short lull does not kill warm workers.
func (a *Agent) autoscaleLoop(ctx context.Context) {
	const scaleDownAfter = 30 * time.Second
	lowSince := map[string]time.Time{}
	lastUnavailable := map[string]uint64{}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, g := range a.cfg.Groups {
			if g.Scale == nil {
				continue
			}
			var inflight int64
			var unavailable uint64
			for _, b := range a.byGroup[g.Name] {
				inflight += b.InFlight()
				unavailable += b.Unavailable()
			}
			want := int(math.Ceil(float64(inflight) / *g.Scale.TargetInflight))
			// A group scaled to zero sees no in-flight requests, only 503s:
			// those are demand too.
			if unavailable > lastUnavailable[g.Name] {
				want = max(want, 1)
			}
			lastUnavailable[g.Name] = unavailable
			want = max(g.Scale.Min, min(g.Scale.Max, want))
			cur, _ := a.store.Group(nil, g.Name)
			if cur == nil || want == cur.Desired {
				delete(lowSince, g.Name)
				continue
			}
			if want < cur.Desired {
				if lowSince[g.Name].IsZero() {
					lowSince[g.Name] = time.Now()
				}
				if time.Since(lowSince[g.Name]) < scaleDownAfter {
					continue
				}
			}
			delete(lowSince, g.Name)
			a.logger.Info("autoscaling", "group", g.Name, "in_flight", inflight, "from", cur.Desired, "to", want)
			_ = a.store.UpdateGroup(g.Name, func(sg *state.Group) error { sg.Desired = want; return nil })
		}
	}
}

// Scale sets a group's desired count: within [scale.min, scale.max] for a
// group with a scale block (the autoscaler may change it again), anything
// from 0 to 1000 for the others.
func (a *Agent) Scale(group string, n int) error {
	return a.store.UpdateGroup(group, func(g *state.Group) error {
		if n < g.Min || n > g.Max {
			return fmt.Errorf("%w: %d is not within [%d, %d]", ErrScaleBounds, n, g.Min, g.Max)
		}
		g.Desired = n
		return nil
	})
}

package core

import (
	"fmt"
	"strings"
	"time"

	"github.com/golb/golb/balancer"
	"github.com/golb/golb/core/autoscale"
	"github.com/golb/golb/core/config"
	"github.com/golb/golb/core/state"
)

// This file is a reload's part in autoscaling. A changed scale block puts
// its new spec in force on the group's running autoscaler, which keeps what
// it observed (autoscale.SetSpec says why); a block added to a group, or a
// new group with one, starts an autoscaler as at start; a block removed
// stops it and the group goes back to its count. Either way the group's
// bounds in the store change with it and its desired count is clamped into
// them at once, and its balancers hold requests (or stop holding them) per
// the new block (balancer.SetHold). Each change is a scale event of the
// group (GET /v1/groups/NAME/events) and a line of the reload's event.

// scaleChangeKind is what a reload does to a group's autoscaling.
type scaleChangeKind int

const (
	scaleChanged scaleChangeKind = iota // the block changed: SetSpec
	scaleAdded                          // a block on a group that had none, or a new group with one
	scaleRemoved                        // the block is gone: back to count
)

// scaleChange is one group's autoscaling change in a reload's plan.
type scaleChange struct {
	kind  scaleChangeKind
	group *config.Group // in the new config
	old   *config.Scale // nil when added
	what  string        // "min 1 → 2, target_inflight 10 → 5"
}

// holdUpdate is a kept balancer whose holding changes: its group's scale
// block (hold_max, hold_timeout) changed, came or went, or it serves
// another group now.
type holdUpdate struct {
	b    *balancer.Balancer
	hold balancer.Hold
}

// planScale adds group g's autoscaling change to p, og being the group in
// the running config (nil for a new group).
func (p *reloadPlan) planScale(og, g *config.Group, change func(string, ...any)) {
	var os *config.Scale
	if og != nil {
		os = og.Scale
	}
	if sameScale(os, g.Scale) {
		return
	}
	switch {
	case g.Scale == nil:
		p.scales = append(p.scales, scaleChange{kind: scaleRemoved, group: g, old: os})
		change("group %s: scale block removed: its autoscaler stops, back to count %d", g.Name, g.InitialCount())
	case os == nil:
		p.scales = append(p.scales, scaleChange{kind: scaleAdded, group: g})
		if og != nil {
			change("group %s: scale block added: autoscaled within [%d, %d]", g.Name, g.Scale.Min, g.Scale.Max)
		}
	default:
		what := strings.Join(scaleChanges(os, g.Scale), ", ")
		p.scales = append(p.scales, scaleChange{kind: scaleChanged, group: g, old: os, what: what})
		change("group %s: scale %s", g.Name, what)
	}
}

// planHold adds kept balancer b to p's hold updates when the hold of its
// group in the new config (g, nil if none) differs from its own, or its
// group changed.
func (a *Agent) planHold(p *reloadPlan, b *balancer.Balancer, g *config.Group, groupChanged bool) {
	want, have := a.holdSettings(g), b.Config().Hold
	differ := (want.Max > 0 || have.Max > 0) && (want.Max != have.Max || want.Timeout != have.Timeout)
	if differ || groupChanged {
		p.holds = append(p.holds, holdUpdate{b: b, hold: want})
	}
}

// applyScale carries out p's autoscaling changes; the new fleet is in
// place and the new groups are in the store. It cannot fail: the plan's
// config passed the checks SetSpec makes (a spec it refuses is logged).
func (a *Agent) applyScale(p *reloadPlan) {
	now := time.Now()
	for _, sc := range p.scales {
		g := sc.group
		switch sc.kind {
		case scaleChanged:
			gs := a.autoscalers.lookup(g.Name)
			if gs == nil { // cannot happen: the running config had the block
				gs = a.autoscalers.scaler(g)
			} else if err := gs.as.SetSpec(now, g.Scale.Spec()); err != nil {
				a.logger.Error("reload: the group's new scale block", "group", g.Name, "err", err)
				continue
			}
			from, to := a.clampGroup(g.Name, g.Scale.Min, g.Scale.Max, -1)
			a.scaleEvent(gs, now, from, to, fmt.Sprintf("reload: scale %s; %s", sc.what, boundsNote(from, to, g.Scale.Min, g.Scale.Max)))
			a.startFeeder(a.controlCtx, gs)
			gs.wake()
		case scaleAdded:
			gs := a.autoscalers.scaler(g)
			from, to := a.clampGroup(g.Name, g.Scale.Min, g.Scale.Max, -1)
			a.scaleEvent(gs, now, from, to, fmt.Sprintf("reload: scale block added, autoscaled within [%d, %d]; %s", g.Scale.Min, g.Scale.Max, boundsNote(from, to, g.Scale.Min, g.Scale.Max)))
			a.startFeeder(a.controlCtx, gs)
		case scaleRemoved:
			a.autoscalers.remove(g.Name)
			from, to := a.clampGroup(g.Name, 0, 1000, g.InitialCount())
			d := autoscale.Decision{Time: now, Group: g.Name, From: from, To: to, Direction: autoscale.DirectionOf(from, to), Mode: autoscale.ModeStable,
				Reason: fmt.Sprintf("reload: scale block removed: the autoscaler stopped; back to count %d", to)}
			a.autoscalers.events.Add(d)
			a.logger.Info("autoscaler stopped by a reload: the group runs its count", "group", g.Name, "from", from, "to", to)
		}
	}
	for _, name := range p.removeGroups {
		// A removed group's autoscaler would raise the count removeLater
		// takes to 0.
		if a.autoscalers.remove(name) != nil {
			a.logger.Info("autoscaler of a removed group stopped", "group", name)
		}
	}
	for _, h := range p.holds {
		if err := h.b.SetHold(h.hold); err != nil { // cannot happen: config checked hold_max and hold_timeout
			a.logger.Error("reload: changing how a balancer holds requests", "balancer", h.b.Name(), "err", err)
		}
	}
}

// clampGroup sets group's bounds in the store to [lo, hi] and its desired
// count to set (when not negative) or the current one within them; it
// returns the desired count before and after.
func (a *Agent) clampGroup(group string, lo, hi, set int) (from, to int) {
	_ = a.store.UpdateGroup(group, func(g *state.Group) error {
		from = g.Desired
		g.Min, g.Max = lo, hi
		if set >= 0 {
			g.Desired = set
		}
		g.Desired = max(lo, min(hi, g.Desired))
		to = g.Desired
		return nil
	})
	return from, to
}

// boundsNote says what a reload's new bounds did to the desired count.
func boundsNote(from, to, lo, hi int) string {
	if from == to {
		return fmt.Sprintf("desired %d is within [%d, %d]", to, lo, hi)
	}
	return fmt.Sprintf("desired %d → %d, clamped to [%d, %d]", from, to, lo, hi)
}

// scaleEvent records a reload's change to gs as a scale event, with the
// figures of the autoscaler's last evaluation under its new target.
func (a *Agent) scaleEvent(gs *groupScaler, now time.Time, from, to int, reason string) {
	d := autoscale.Decision{Time: now, Group: gs.name, From: from, To: to, Direction: autoscale.DirectionOf(from, to),
		Mode: gs.as.Mode(), Reason: reason, Figures: gs.as.Last().Figures}
	sp := gs.as.Spec()
	if sp.TargetRPS > 0 {
		d.Target, d.Metric = sp.TargetRPS, autoscale.MetricRPS
	} else {
		d.Target, d.Metric = sp.TargetInflight, autoscale.MetricInflight
	}
	a.autoscalers.events.Add(d)
	a.logger.Info("autoscaler changed by a reload", "group", gs.name, "from", from, "to", to, "reason", reason)
}

// scaleChanges names what differs between two scale blocks, as the file
// spells it: "min 1 → 2, target_inflight 10 → 5".
func scaleChanges(o, n *config.Scale) []string {
	var out []string
	add := func(what string, a, b any) {
		if fmt.Sprint(a) != fmt.Sprint(b) {
			out = append(out, fmt.Sprintf("%s %v → %v", what, a, b))
		}
	}
	opt := func(p *float64) any {
		if p == nil {
			return "unset"
		}
		return *p
	}
	add("min", o.Min, n.Min)
	add("max", o.Max, n.Max)
	add("target_inflight", opt(o.TargetInflight), opt(n.TargetInflight))
	add("target_rps", opt(o.TargetRPS), opt(n.TargetRPS))
	add("stable_window", o.StableWindowDur, n.StableWindowDur)
	add("panic_window", o.PanicWindowDur, n.PanicWindowDur)
	add("panic_threshold", *o.PanicThreshold, *n.PanicThreshold)
	add("scale_down_delay", o.ScaleDownDelayDur, n.ScaleDownDelayDur)
	add("max_scale_up_rate", *o.MaxScaleUpRate, *n.MaxScaleUpRate)
	add("max_scale_down_rate", *o.MaxScaleDownRate, *n.MaxScaleDownRate)
	add("scale_to_zero_after", o.ScaleToZeroAfterDur, n.ScaleToZeroAfterDur)
	add("hold_max", *o.HoldMax, *n.HoldMax)
	add("hold_timeout", o.HoldTimeoutDur, n.HoldTimeoutDur)
	return out
}

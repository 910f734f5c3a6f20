package core

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/golb/golb/core/admin"
	"github.com/golb/golb/core/autoscale"
	"github.com/golb/golb/core/state"
)

// autoscalerView is group's AutoscalerView, nil without a scale block.
func (a *Agent) autoscalerView(group string) *AutoscalerView {
	gs := a.autoscalers.lookup(group)
	if gs == nil {
		return nil
	}
	d := gs.as.Last()
	f := d.Figures
	f.StableInflight, f.PanicInflight = round2(f.StableInflight), round2(f.PanicInflight)
	f.StableRPS, f.PanicRPS = round2(f.StableRPS), round2(f.PanicRPS)
	v := &AutoscalerView{Mode: gs.as.Mode(), Figures: f, Wants: d.To, Why: d.Reason, FloorUntil: a.FloorUntil(group)}
	for _, b := range a.balancersOf(group) {
		v.Held += b.Held()
		to, ref := b.HoldTimeouts()
		v.HoldTimeouts += to
		v.HoldRefused += ref
	}
	if last, ok := a.autoscalers.events.Last(group); ok {
		v.LastDecision = &last
	}
	return v
}

// scaleEvent is a scale decision in GET /v1/groups/NAME/events.
type scaleEvent struct {
	Kind string `json:"kind"` // "scale"
	autoscale.Decision
}

// groupEvents is the agent's part of GET /v1/groups/NAME/events: the
// group's scale decisions (the last autoscale.DefaultKeep) and its stopped
// rollovers (reload_log.go), newest first. core/admin merges the group's
// lifecycle events into them.
func (a *Agent) groupEvents(name string) ([]admin.GroupEvent, error) {
	if g, _ := a.store.Group(nil, name); g == nil {
		return nil, asAdmin(fmt.Errorf("%w: %s", state.ErrNoGroup, name), admin.ErrNoGroup)
	}
	list := a.autoscalers.events.List(name)
	scale := make([]any, 0, len(list))
	for _, d := range list {
		scale = append(scale, scaleEvent{"scale", d})
	}
	merged := a.withRolloutEvents(name, scale, func(i int) time.Time { return list[i].Time })
	out := make([]admin.GroupEvent, 0, len(merged))
	for _, e := range merged {
		ge := admin.GroupEvent{Entry: e}
		switch e := e.(type) {
		case scaleEvent:
			ge.Time, ge.Kind = e.Time, e.Kind
		case rolloutEvent:
			ge.Time, ge.Kind = e.Time, e.Kind
		default: // keeps its place after the entry before it
			if n := len(out); n > 0 {
				ge.Time = out[n-1].Time
			}
		}
		out = append(out, ge)
	}
	return out, nil
}

// autoscaleCollector exports the autoscalers' figures and the held requests.
type autoscaleCollector struct{ a *Agent }

var (
	descDecisions    = prometheus.NewDesc("golb_autoscaler_decisions_total", "Scale decisions that changed a group's desired count, by direction and mode.", []string{"group", "direction", "mode"}, nil)
	descASDesired    = prometheus.NewDesc("golb_autoscaler_desired", "The count the autoscaler's last evaluation wants.", []string{"group"}, nil)
	descStableInfl   = prometheus.NewDesc("golb_autoscaler_stable_inflight", "Average in-flight (and held) requests over the stable window.", []string{"group"}, nil)
	descPanicInfl    = prometheus.NewDesc("golb_autoscaler_panic_inflight", "Average in-flight (and held) requests over the panic window.", []string{"group"}, nil)
	descPanicMode    = prometheus.NewDesc("golb_autoscaler_panic_mode", "1 while the group's autoscaler is in panic mode.", []string{"group"}, nil)
	descHeld         = prometheus.NewDesc("golb_held_requests", "Requests waiting for a ready worker.", []string{"group"}, nil)
	descHoldTimeouts = prometheus.NewDesc("golb_hold_timeouts_total", "Held requests answered 503 after hold_timeout.", []string{"group"}, nil)
	descHoldRefused  = prometheus.NewDesc("golb_hold_refused_total", "Requests answered 503 at once because hold_max were waiting.", []string{"group"}, nil)
)

func (c *autoscaleCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDecisions, descASDesired, descStableInfl, descPanicInfl, descPanicMode, descHeld, descHoldTimeouts, descHoldRefused} {
		ch <- d
	}
}

func (c *autoscaleCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	counts := a.autoscalers.events.Counts()
	for _, g := range a.config().Groups {
		v := a.autoscalerView(g.Name)
		if v == nil {
			continue
		}
		for _, dir := range []autoscale.Direction{autoscale.Up, autoscale.Down} {
			for _, m := range []autoscale.Mode{autoscale.ModeStable, autoscale.ModePanic} {
				n := counts[autoscale.CountKey{Group: g.Name, Direction: dir, Mode: m}]
				ch <- prometheus.MustNewConstMetric(descDecisions, prometheus.CounterValue, float64(n), g.Name, string(dir), string(m))
			}
		}
		panicking := 0.0
		if v.Mode == autoscale.ModePanic {
			panicking = 1
		}
		ch <- prometheus.MustNewConstMetric(descASDesired, prometheus.GaugeValue, float64(v.Wants), g.Name)
		ch <- prometheus.MustNewConstMetric(descStableInfl, prometheus.GaugeValue, v.StableInflight, g.Name)
		ch <- prometheus.MustNewConstMetric(descPanicInfl, prometheus.GaugeValue, v.PanicInflight, g.Name)
		ch <- prometheus.MustNewConstMetric(descPanicMode, prometheus.GaugeValue, panicking, g.Name)
		ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, float64(v.Held), g.Name)
		ch <- prometheus.MustNewConstMetric(descHoldTimeouts, prometheus.CounterValue, float64(v.HoldTimeouts), g.Name)
		ch <- prometheus.MustNewConstMetric(descHoldRefused, prometheus.CounterValue, float64(v.HoldRefused), g.Name)
	}
}

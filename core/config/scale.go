package config

import (
	"math"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/golb/golb/core/autoscale"
)

// Scale turns on autoscaling, Knative KPA-style: desired = ceil(windowed
// average / target), within [min, max]. Every field but min and max is
// optional; its default and conflicts are on the field.
type Scale struct {
	// Min is the fewest workers: the initial count. 0 scales to zero after
	// scale_to_zero_after without requests; requests are then held (see
	// hold_max), not refused. Must be 0 or more, and at most max.
	Min int `hcl:"min"`
	// Max is the most workers, 1 to 1000.
	Max int `hcl:"max"`
	// TargetInflight is the in-flight requests one worker should carry:
	// desired = ceil(stable-window in-flight / target_inflight). Default 10;
	// at least 0.01 (autoscale.MinTarget). Conflicts with target_rps.
	TargetInflight *float64 `hcl:"target_inflight,optional"`
	// TargetRPS scales on requests per second instead: desired =
	// ceil(stable-window rps / target_rps). Default unset; at least 0.01
	// (autoscale.MinTarget). Conflicts with target_inflight.
	TargetRPS *float64 `hcl:"target_rps,optional"`
	// StableWindow is the span of the average stable mode scales on, and
	// how long panic mode lasts after its last burst. Default "60s"; at
	// least 1s, and at least panic_window; at most 1h
	// (autoscale.MaxStableWindow: the window is kept in memory a slot per
	// 100 ms to 1 s).
	StableWindow string `hcl:"stable_window,optional"`
	// PanicWindow is the span of the average that detects a burst and that
	// panic mode scales on. Default "6s" (or stable_window if shorter); at
	// least 1s, at most stable_window.
	PanicWindow string `hcl:"panic_window,optional"`
	// PanicThreshold: panic mode begins when the panic-window desired count
	// is at least panic_threshold × ready workers; in panic the group never
	// scales down. Default 2.0; above 1.
	PanicThreshold *float64 `hcl:"panic_threshold,optional"`
	// ScaleDownDelay is how long a lower desired count must hold before the
	// group scales down to it. Default "30s"; "0s" scales down at once; at
	// most 1h (autoscale.MaxScaleDownDelay).
	ScaleDownDelay string `hcl:"scale_down_delay,optional"`
	// MaxScaleUpRate caps a rise at ready × rate workers (it never lowers
	// the count). Default 1000; 1 to 1000000 (autoscale.MaxScaleRate).
	MaxScaleUpRate *float64 `hcl:"max_scale_up_rate,optional"`
	// MaxScaleDownRate floors a fall at ready / rate workers (it never
	// raises the count). Default 2; 1 (never scales down) to 1000000
	// (autoscale.MaxScaleRate).
	MaxScaleDownRate *float64 `hcl:"max_scale_down_rate,optional"`
	// ScaleToZeroAfter is how long a group must see no request before it
	// goes to 0 workers. Default stable_window; above 0, at most 24h
	// (autoscale.MaxScaleToZeroAfter). Only with min = 0.
	ScaleToZeroAfter string `hcl:"scale_to_zero_after,optional"`
	// HoldMax is the most requests held, per balancer, while the group has
	// no ready worker (at zero, or all its workers died); the next ones get
	// 503 at once. Default 1000; 0 turns holding off (503 at once); at
	// most 100000.
	HoldMax *int `hcl:"hold_max,optional"`
	// HoldTimeout is how long a request is held before it gets a 503 with
	// Retry-After. Default "30s"; above 0, at most 1h (maxHoldTimeout).
	HoldTimeout string   `hcl:"hold_timeout,optional"`
	Body        hcl.Body `hcl:",body"`

	// Decoded by Parse.
	StableWindowDur, PanicWindowDur, ScaleDownDelayDur time.Duration
	ScaleToZeroAfterDur, HoldTimeoutDur                time.Duration
}

// Spec is the autoscaler's policy for this block (Parse has filled every
// default; a scale_down_delay of 0 is autoscale's "none").
func (s *Scale) Spec() autoscale.Spec {
	sp := autoscale.Spec{
		Min: s.Min, Max: s.Max,
		StableWindow: s.StableWindowDur, PanicWindow: s.PanicWindowDur,
		PanicThreshold: *s.PanicThreshold, ScaleDownDelay: s.ScaleDownDelayDur,
		MaxScaleUpRate: *s.MaxScaleUpRate, MaxScaleDownRate: *s.MaxScaleDownRate,
		ScaleToZeroAfter: s.ScaleToZeroAfterDur,
	}
	if s.TargetRPS != nil {
		sp.TargetRPS = *s.TargetRPS
	} else {
		sp.TargetInflight = *s.TargetInflight
	}
	if sp.ScaleDownDelay == 0 {
		sp.ScaleDownDelay = -1
	}
	return sp
}

// scaleDefaults fills the scale block's unset fields with their defaults.
func scaleDefaults(s *Scale) {
	f := func(p **float64, v float64) {
		if *p == nil {
			*p = &v
		}
	}
	if s.TargetRPS == nil {
		f(&s.TargetInflight, autoscale.DefaultTargetInflight)
	}
	f(&s.PanicThreshold, autoscale.DefaultPanicThreshold)
	f(&s.MaxScaleUpRate, autoscale.DefaultMaxScaleUpRate)
	f(&s.MaxScaleDownRate, autoscale.DefaultMaxScaleDownRate)
	if s.StableWindow == "" {
		s.StableWindow = autoscale.DefaultStableWindow.String()
	}
	if s.ScaleDownDelay == "" {
		s.ScaleDownDelay = autoscale.DefaultScaleDownDelay.String()
	}
	if s.HoldMax == nil {
		s.HoldMax = intPtr(1000)
	}
	if s.HoldTimeout == "" {
		s.HoldTimeout = "30s"
	}
	// panic_window and scale_to_zero_after default from stable_window:
	// checkScale fills them once it is parsed.
}

// checkScale validates g's scale block and decodes its durations.
func (v *validator) checkScale(g *Group) {
	s := g.Scale
	if s.Min < 0 {
		v.errorf(attrRange(s.Body, "min"), "scale.min must be 0 or more", "Set the fewest workers to keep.")
	}
	if s.Max < 1 || s.Max > 1000 {
		v.errorf(attrRange(s.Body, "max"), "scale.max must be between 1 and 1000", "Set the most workers to run.")
	}
	if s.Min > s.Max {
		v.errorf(attrRange(s.Body, "min"), "scale.min (%d) is greater than scale.max (%d)", "Swap them, or raise max.", s.Min, s.Max)
	}
	if g.Count != nil && (*g.Count < s.Min || *g.Count > s.Max) {
		v.errorf(attrRange(g.Body, "count"), "count %d is outside scale bounds [%d, %d]", "Remove count (scale.min is the initial count) or keep it within the bounds.", *g.Count, s.Min, s.Max)
	}
	switch {
	case s.TargetRPS != nil && s.TargetInflight != nil:
		v.errorf(attrRange(s.Body, "target_rps"), "target_rps and target_inflight are both set", "Scale on one of them: remove target_inflight to scale on requests per second, or target_rps to scale on in-flight requests.")
	case s.TargetRPS != nil && !(*s.TargetRPS > 0) || math.IsInf(ptrOr(s.TargetRPS), 0):
		v.errorf(attrRange(s.Body, "target_rps"), "target_rps must be above 0", "It is the requests per second one worker should serve, e.g. 200.")
	case s.TargetInflight != nil && !(*s.TargetInflight > 0) || math.IsInf(ptrOr(s.TargetInflight), 0):
		v.errorf(attrRange(s.Body, "target_inflight"), "target_inflight must be above 0", "It is the in-flight requests one worker should carry, e.g. 10.")
	case s.TargetRPS != nil && *s.TargetRPS < autoscale.MinTarget:
		v.errorf(attrRange(s.Body, "target_rps"), "target_rps must be at least %g", "It is the requests per second one worker should serve, e.g. 200; a smaller one asks for more workers than any group has.", autoscale.MinTarget)
	case s.TargetInflight != nil && *s.TargetInflight < autoscale.MinTarget:
		v.errorf(attrRange(s.Body, "target_inflight"), "target_inflight must be at least %g", "It is the in-flight requests one worker should carry, e.g. 10; a smaller one asks for more workers than any group has.", autoscale.MinTarget)
	}
	s.StableWindowDur = v.duration(s.Body, "stable_window", s.StableWindow, time.Second)
	v.atMost(s.Body, "stable_window", s.StableWindowDur, autoscale.MaxStableWindow, `Shorten it, e.g. "60s" (the default): the autoscaler keeps the window in memory, a slot per 100 ms to 1 s; Knative's longest is an hour too.`)
	if s.PanicWindow == "" {
		s.PanicWindowDur = min(autoscale.DefaultPanicWindow, s.StableWindowDur)
		s.PanicWindow = s.PanicWindowDur.String()
	} else {
		s.PanicWindowDur = v.duration(s.Body, "panic_window", s.PanicWindow, time.Second)
		if s.StableWindowDur > 0 && s.PanicWindowDur > s.StableWindowDur {
			v.errorf(attrRange(s.Body, "panic_window"), "panic_window (%s) is longer than stable_window (%s)", "The panic window catches bursts inside the stable one: make it shorter, e.g. a tenth of stable_window.", s.PanicWindowDur, s.StableWindowDur)
		}
	}
	if !(*s.PanicThreshold > 1) || math.IsInf(*s.PanicThreshold, 0) {
		v.errorf(attrRange(s.Body, "panic_threshold"), "panic_threshold must be above 1", "It is a multiple of the ready workers, e.g. 2.0: panic when the burst needs twice as many.")
	}
	s.ScaleDownDelayDur = v.duration(s.Body, "scale_down_delay", s.ScaleDownDelay, 0)
	v.atMost(s.Body, "scale_down_delay", s.ScaleDownDelayDur, autoscale.MaxScaleDownDelay, `Shorten it, e.g. "30s" (the default): it is how long a lower count must hold before the group scales down; Knative's longest is an hour too.`)
	for _, r := range []struct {
		name string
		v    float64
	}{{"max_scale_up_rate", *s.MaxScaleUpRate}, {"max_scale_down_rate", *s.MaxScaleDownRate}} {
		switch {
		case !(r.v >= 1):
			v.errorf(attrRange(s.Body, r.name), "%s must be at least 1", "It is a factor of the ready workers per decision: 1 means no change that way, Knative's defaults are 1000 up and 2 down.", r.name)
		case r.v > autoscale.MaxScaleRate:
			v.errorf(attrRange(s.Body, r.name), "%s must be at most %d", "It is a factor of the ready workers per decision: Knative's defaults are 1000 up and 2 down.", r.name, int(autoscale.MaxScaleRate))
		}
	}
	switch {
	case s.ScaleToZeroAfter != "" && s.Min > 0:
		v.errorf(attrRange(s.Body, "scale_to_zero_after"), "scale_to_zero_after needs scale.min = 0 (it is %d)", "Remove scale_to_zero_after, or set min = 0 to let the group scale to zero.", s.Min)
	case s.ScaleToZeroAfter != "":
		s.ScaleToZeroAfterDur = v.positive(s.Body, "scale_to_zero_after", s.ScaleToZeroAfter, "It is how long the group must see no request before it stops its last worker.")
		v.atMost(s.Body, "scale_to_zero_after", s.ScaleToZeroAfterDur, autoscale.MaxScaleToZeroAfter, "Shorten it, or set min = 1 and remove it to keep a worker for good: it is how long the group must see no request before it stops its last worker.")
	case s.Min == 0:
		s.ScaleToZeroAfterDur = s.StableWindowDur
	}
	if *s.HoldMax < 0 || *s.HoldMax > 100000 {
		v.errorf(attrRange(s.Body, "hold_max"), "hold_max must be between 0 and 100000", "It is how many requests wait for a worker while none is ready; 0 answers them 503 at once.")
	}
	s.HoldTimeoutDur = v.positive(s.Body, "hold_timeout", s.HoldTimeout, "It is how long a request waits for a worker before a 503.")
	v.atMost(s.Body, "hold_timeout", s.HoldTimeoutDur, maxHoldTimeout, `Shorten it, e.g. "30s" (the default): it is how long a request waits for a worker before a 503.`)
}

// maxHoldTimeout is the longest a balancer holds a request for a worker.
const maxHoldTimeout = time.Hour

// atMost reports a duration attribute over limit; hint says what it is.
func (v *validator) atMost(body hcl.Body, name string, d, limit time.Duration, hint string) {
	if d > limit {
		v.errorf(attrRange(body, name), "%s must be at most %s", hint, name, durationText(limit))
	}
}

// durationText writes d as a config would: "1h" and "24h", not
// time.Duration's "1h0m0s".
func durationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func ptrOr(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

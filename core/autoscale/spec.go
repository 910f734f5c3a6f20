package autoscale

import (
	"fmt"
	"math"
	"time"
)

// Defaults of the Spec fields, the same as Knative's KPA where it has one.
const (
	DefaultTargetInflight   = 10
	DefaultStableWindow     = 60 * time.Second
	DefaultPanicWindow      = 6 * time.Second
	DefaultPanicThreshold   = 2.0
	DefaultScaleDownDelay   = 30 * time.Second
	DefaultMaxScaleUpRate   = 1000.0
	DefaultMaxScaleDownRate = 2.0
)

// The upper bounds of the Spec's durations. The stable window is kept in
// memory as a bucket per 100 ms to 1 s (newWindow): "200000h" asked for
// 23 GB. Knative caps its stable window and scale-down delay at an hour;
// scale to zero waits at most a day, a figure that is only compared.
const (
	MaxStableWindow     = time.Hour
	MaxScaleDownDelay   = time.Hour
	MaxScaleToZeroAfter = 24 * time.Hour
)

// The bounds of the Spec's figures. A target below MinTarget or a rate
// above MaxScaleRate asks for counts no group has (8 in flight at a target
// of 1e-18 is 8e18 workers); Knative's default up rate is 1000.
const (
	MinTarget    = 0.01
	MaxScaleRate = 1e6
)

// Spec is one group's scaling policy: the scale block of golb's config.
// WithDefaults fills every zero field; Validate names the first conflict.
type Spec struct {
	// Min and Max bound the desired count. Min 0 allows scaling to zero.
	Min, Max int
	// TargetInflight is the in-flight requests one worker should carry:
	// desired = ceil(average in-flight / TargetInflight). Default 10; at
	// least MinTarget (0.01). Conflicts with TargetRPS.
	TargetInflight float64
	// TargetRPS scales on requests per second instead: desired =
	// ceil(average rps / TargetRPS). Default 0: off; else at least
	// MinTarget (0.01). Conflicts with TargetInflight.
	TargetRPS float64
	// StableWindow is the span of the average that stable mode scales on,
	// and how long panic mode lasts after its last breach. Default 60s;
	// 1s to MaxStableWindow (1h).
	StableWindow time.Duration
	// PanicWindow is the span of the average that detects a burst and
	// that panic mode scales on. Default 6s; at most StableWindow.
	PanicWindow time.Duration
	// PanicThreshold: panic mode begins when the panic-window desired count
	// is at least PanicThreshold × ready workers. Default 2.0; above 1.
	PanicThreshold float64
	// ScaleDownDelay is how long a lower desired count must hold before
	// the group scales down to it. Default 30s (when 0); a negative value
	// means none: scale down at once. At most MaxScaleDownDelay (1h).
	ScaleDownDelay time.Duration
	// MaxScaleUpRate caps a rise at ready × MaxScaleUpRate workers (it
	// never lowers the count). Default 1000; 1 to MaxScaleRate (1e6).
	MaxScaleUpRate float64
	// MaxScaleDownRate floors a fall at ready / MaxScaleDownRate workers
	// (it never raises the count). Default 2; 1 to MaxScaleRate (1e6).
	MaxScaleDownRate float64
	// ScaleToZeroAfter is how long a group at Min 0 must see no request
	// before it goes to 0 workers. Default StableWindow; at most
	// MaxScaleToZeroAfter (24h). Only with Min 0.
	ScaleToZeroAfter time.Duration
}

// WithDefaults returns s with each zero field at its default (TargetRPS
// stays 0, and TargetInflight stays 0 when TargetRPS is set).
func (s Spec) WithDefaults() Spec {
	if s.TargetInflight == 0 && s.TargetRPS == 0 {
		s.TargetInflight = DefaultTargetInflight
	}
	if s.StableWindow == 0 {
		s.StableWindow = DefaultStableWindow
	}
	if s.PanicWindow == 0 {
		s.PanicWindow = min(DefaultPanicWindow, s.StableWindow)
	}
	if s.PanicThreshold == 0 {
		s.PanicThreshold = DefaultPanicThreshold
	}
	if s.ScaleDownDelay == 0 {
		s.ScaleDownDelay = DefaultScaleDownDelay
	}
	if s.MaxScaleUpRate == 0 {
		s.MaxScaleUpRate = DefaultMaxScaleUpRate
	}
	if s.MaxScaleDownRate == 0 {
		s.MaxScaleDownRate = DefaultMaxScaleDownRate
	}
	if s.ScaleToZeroAfter == 0 && s.Min == 0 {
		s.ScaleToZeroAfter = s.StableWindow
	}
	return s
}

// Validate reports the first field that is out of range or conflicts
// with another, as an error wrapping ErrSpec.
func (s Spec) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrSpec, fmt.Sprintf(format, args...))
	}
	switch {
	case s.Min < 0 || s.Max < 1 || s.Min > s.Max:
		return bad("min %d and max %d must satisfy 0 <= min <= max, max >= 1", s.Min, s.Max)
	case s.TargetInflight > 0 && s.TargetRPS > 0:
		return bad("target_inflight and target_rps are both set")
	case s.TargetInflight < 0 || s.TargetRPS < 0 || s.TargetInflight+s.TargetRPS == 0:
		return bad("the target must be above 0")
	case !(s.TargetInflight+s.TargetRPS >= MinTarget) || math.IsInf(s.TargetInflight+s.TargetRPS, 0):
		return bad("the target %g must be at least %g, and finite", s.TargetInflight+s.TargetRPS, MinTarget)
	case s.StableWindow < time.Second || s.StableWindow > MaxStableWindow:
		return bad("stable_window %s must be between 1s and %s", s.StableWindow, MaxStableWindow)
	case s.PanicWindow < time.Second || s.PanicWindow > s.StableWindow:
		return bad("panic_window %s must be between 1s and stable_window %s", s.PanicWindow, s.StableWindow)
	case !(s.PanicThreshold > 1):
		return bad("panic_threshold %g must be above 1", s.PanicThreshold)
	case s.ScaleDownDelay > MaxScaleDownDelay:
		return bad("scale_down_delay %s is over %s", s.ScaleDownDelay, MaxScaleDownDelay)
	case !(s.MaxScaleUpRate >= 1 && s.MaxScaleUpRate <= MaxScaleRate && s.MaxScaleDownRate >= 1 && s.MaxScaleDownRate <= MaxScaleRate):
		return bad("max_scale_up_rate %g and max_scale_down_rate %g must be between 1 and %g", s.MaxScaleUpRate, s.MaxScaleDownRate, MaxScaleRate)
	case s.ScaleToZeroAfter != 0 && s.Min > 0:
		return bad("scale_to_zero_after needs min = 0 (min is %d)", s.Min)
	case s.ScaleToZeroAfter < 0:
		return bad("scale_to_zero_after %s is negative", s.ScaleToZeroAfter)
	case s.ScaleToZeroAfter > MaxScaleToZeroAfter:
		return bad("scale_to_zero_after %s is over %s", s.ScaleToZeroAfter, MaxScaleToZeroAfter)
	}
	return nil
}

// target is the figure desired counts divide by, and the metric it is of.
func (s Spec) target() (float64, Metric) {
	if s.TargetRPS > 0 {
		return s.TargetRPS, MetricRPS
	}
	return s.TargetInflight, MetricInflight
}

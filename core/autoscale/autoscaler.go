// Package autoscale is golb's scaling decision, as a pure function of time:
// samples of a group's in-flight requests (and arrivals) go in with the time
// they were taken, and each Decide returns the desired worker count with its
// mode, reason and figures. It follows Knative's KPA: a stable and a panic
// window, rate limits, a scale-down delay and scale to zero. It reads no
// clock and starts no goroutine, so tests drive it with a fake clock.
package autoscale

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Sample is one reading of a group, summed over its balancers.
type Sample struct {
	// InFlight is the requests being proxied or held for a worker.
	InFlight float64
	// Requests is how many requests arrived (or ended) since the last sample.
	Requests uint64
}

// Autoscaler decides one group's desired count. Its methods are safe for
// concurrent use; every method takes the time explicitly.
type Autoscaler struct {
	mu   sync.Mutex
	spec Spec
	win  *window
	// recent is the span of the newest samples, the figure panic mode also
	// scales on: two buckets (the current one and the last full one).
	recent time.Duration

	panicking  bool
	lastBreach time.Time // the last decision whose panic-window desired breached the threshold
	maxPanic   int       // the highest count decided in this panic

	delay      maxWindow // the counts decided over scale_down_delay
	started    time.Time // New's now: the count in force at the first Decide holds from it
	seeded     bool      // delay holds that count
	lastActive time.Time // the last sample with a request in flight or arriving
	// poked is set by a sample with a request in flight (held) or
	// counted, and cleared by Decide: at zero it wakes the group.
	poked      bool
	floor      int // set by golb scale until floorUntil
	floorUntil time.Time
	last       Decision
}

// New returns an autoscaler for spec (WithDefaults applied, then
// validated) whose idle time counts from now.
func New(spec Spec, now time.Time) (*Autoscaler, error) {
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	gran := min(max(spec.PanicWindow/6, minGran), time.Second)
	return &Autoscaler{
		spec:       spec,
		win:        newWindow(spec.StableWindow, gran, now),
		recent:     2 * gran,
		delay:      maxWindow{span: spec.ScaleDownDelay},
		started:    now,
		lastActive: now,
	}, nil
}

// Spec is the spec in force, defaults filled.
func (a *Autoscaler) Spec() Spec {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.spec
}

// Record adds a sample taken at now.
func (a *Autoscaler) Record(now time.Time, s Sample) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.win.record(now, s)
	if s.InFlight > 0 || s.Requests > 0 {
		a.lastActive, a.poked = now, true
	}
}

// SetFloor keeps the desired count at n or more (within min and max) for
// one stable window from now: `golb scale` on an autoscaled group. It
// returns n clamped and when the floor ends.
func (a *Autoscaler) SetFloor(now time.Time, n int) (int, time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.floor = max(a.spec.Min, min(a.spec.Max, n))
	a.floorUntil = now.Add(a.spec.StableWindow)
	return a.floor, a.floorUntil
}

// Floor is the floor SetFloor set and when it ends.
func (a *Autoscaler) Floor() (int, time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.floor, a.floorUntil
}

// Last is the last decision Decide returned (zero before the first).
func (a *Autoscaler) Last() Decision {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// Mode is ModePanic while panicking, else ModeStable.
func (a *Autoscaler) Mode() Mode {
	if a.Panicking() {
		return ModePanic
	}
	return ModeStable
}

// Panicking reports whether the autoscaler is in panic mode.
func (a *Autoscaler) Panicking() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.panicking
}

// Decide returns the desired count at now, given the count desired so far
// (current) and the workers ready to serve (ready).
func (a *Autoscaler) Decide(now time.Time, current, ready int) Decision {
	a.mu.Lock()
	defer a.mu.Unlock()
	poked := a.poked
	a.poked = false
	s := a.spec
	target, metric := s.target()
	st := a.win.averages(now, s.StableWindow)
	pa := a.win.averages(now, s.PanicWindow)
	re := a.win.averages(now, a.recent)
	if !a.seeded {
		// The count the group started with (count, or min) is a count
		// decided at the start: a lower one waits scale_down_delay as
		// after any decision, not cut at the first.
		a.delay.record(a.started, current)
		a.seeded = true
	}
	d := Decision{
		Time: now, From: current, Mode: ModeStable,
		Figures: Figures{
			Metric: metric, Target: target, Ready: ready,
			StableInflight: st.inflight, PanicInflight: pa.inflight, StableRPS: st.rps, PanicRPS: pa.rps,
		},
	}
	if a.panicking {
		d.Mode = ModePanic
	}
	if !st.ok {
		d.To, d.NoData, d.Direction = current, true, None
		d.Reason = "no samples yet: keeping the current count"
		a.last = d
		return d
	}
	stableVal, panicVal, recentVal := st.inflight, pa.inflight, re.inflight
	if metric == MetricRPS {
		stableVal, panicVal, recentVal = st.rps, pa.rps, re.rps
	}
	readyF := math.Max(1, float64(ready))
	wantStable := count(stableVal / target)
	wantPanic := count(panicVal / target)

	// Panic begins on a breach, is extended by each one, and ends one
	// stable window after the last.
	breach := float64(wantPanic) >= s.PanicThreshold*readyF
	switch {
	case breach:
		if !a.panicking {
			a.panicking, a.maxPanic = true, current
		}
		a.lastBreach = now
	case a.panicking && now.Sub(a.lastBreach) >= s.StableWindow:
		a.panicking, a.maxPanic = false, 0
	}

	want := wantStable
	reason := fmt.Sprintf("stable %s %.3g over %s / target %g = %d", metric, stableVal, s.StableWindow, target, wantStable)
	if a.panicking {
		d.Mode = ModePanic
		if wantPanic > want {
			want = wantPanic
			reason = fmt.Sprintf("panic %s %.3g over %s / target %g = %d", metric, panicVal, s.PanicWindow, target, wantPanic)
		}
		// In panic the newest samples count too: a step is followed in
		// seconds, not once it fills the window. Panic never scales down,
		// so a peak costs at most one stable window of extra workers.
		if wantRecent := count(recentVal / target); wantRecent > want {
			want = wantRecent
			reason = fmt.Sprintf("panic %s %.3g over the last %s / target %g = %d", metric, recentVal, a.recent, target, wantRecent)
		}
		if breach {
			reason += fmt.Sprintf(" (panic: %d >= %g x %d ready)", wantPanic, s.PanicThreshold, ready)
		}
		if hold := max(a.maxPanic, current); want < hold {
			want = hold
			reason = fmt.Sprintf("panic mode never scales down: keeping %d until %s after the last burst (at %s)",
				hold, s.StableWindow, a.lastBreach.Format(time.TimeOnly))
		}
		a.maxPanic = max(a.maxPanic, want)
	}

	// A lower count waits scale_down_delay: the largest count decided
	// over the delay is the one kept.
	if s.ScaleDownDelay > 0 {
		a.delay.record(now, want)
		if held, since := a.delay.current(now); held > want {
			want = held
			reason += fmt.Sprintf("; waiting scale_down_delay %s at the lower figure (keeping %d decided at %s)",
				s.ScaleDownDelay, held, since.Format(time.TimeOnly))
		}
	}

	// Rates: a rise to at most ready × up rate, a fall to at least ready /
	// down rate. Each limits a change its way only: while workers are
	// still starting (ready < current) the up cap must not lower the count
	// and stop them.
	if hi := max(count(s.MaxScaleUpRate*readyF), current); want > current && want > hi {
		want = hi
		reason += fmt.Sprintf("; limited by max_scale_up_rate %g x %d ready", s.MaxScaleUpRate, ready)
	}
	if lo := min(int(math.Floor(readyF/s.MaxScaleDownRate)), current); want < current && want < lo {
		want = lo
		reason += fmt.Sprintf("; limited by max_scale_down_rate: %d ready / %g", ready, s.MaxScaleDownRate)
	}

	// Zero only after scale_to_zero_after with no request; until then a
	// group with workers keeps one. A group at zero wakes on any request
	// since the last decision, held or counted (Knative's activator pokes
	// the same way): held requests are not yet counted, so the rps metric
	// is 0, and a request refused at once (hold_max = 0) is never in
	// flight.
	if s.Min == 0 {
		idle := now.Sub(a.lastActive)
		switch {
		case poked && want == 0 && current == 0:
			want = 1
			reason = "a request at zero: waking the group with 1 worker"
		case idle >= s.ScaleToZeroAfter && !a.panicking && !poked:
			if current > 0 || want > 0 {
				reason = fmt.Sprintf("no request for %s (scale_to_zero_after %s): scaling to zero", idle.Round(time.Second), s.ScaleToZeroAfter)
			}
			want = 0
		case want == 0 && current > 0:
			want = 1
			reason += fmt.Sprintf("; keeping 1 until scale_to_zero_after %s without requests", s.ScaleToZeroAfter)
		}
	}

	if now.Before(a.floorUntil) && want < a.floor {
		want = a.floor
		reason = fmt.Sprintf("floor %d set by golb scale until %s", a.floor, a.floorUntil.Format(time.TimeOnly))
	}
	switch {
	case want > s.Max:
		want = s.Max
		reason += fmt.Sprintf("; clamped to max %d", s.Max)
	case want < s.Min:
		want = s.Min
		reason += fmt.Sprintf("; clamped to min %d", s.Min)
	}
	d.To, d.Direction, d.Reason = want, DirectionOf(current, want), reason
	a.last = d
	return d
}

// maxCount bounds the counts figured from floats before they are ints:
// ceil(8 / 1e-18) or ceil(1e19 × ready) do not fit one (they converted to
// math.MinInt64, so a group under load sat at min or halved). Far above
// any max.
const maxCount = math.MaxInt32

// count is ceil(f) as a count of workers, within [0, maxCount].
func count(f float64) int {
	switch {
	case !(f > 0): // NaN too
		return 0
	case f >= maxCount:
		return maxCount
	}
	return int(math.Ceil(f))
}

package autoscale

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// TestStartingCountWaitsForScaleDownDelay: a scaled group started with
// count = 3 (min 1) and no load was cut to 1 at the first decision, a
// second after the start: scale_down_delay held only counts the
// autoscaler had decided, not the one the group started with.
func TestStartingCountWaitsForScaleDownDelay(t *testing.T) {
	a, err := New(Spec{Min: 1, Max: 4, TargetInflight: 10, ScaleDownDelay: 30 * time.Second}, t0)
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	for ; now.Before(t0.Add(29 * time.Second)); now = now.Add(time.Second) {
		a.Record(now, Sample{})
		if d := a.Decide(now.Add(time.Second), 3, 3); d.To != 3 {
			t.Fatalf("%s after the start, idle: To = %d (%s), want the starting 3 kept for scale_down_delay", now.Add(time.Second).Sub(t0), d.To, d.Reason)
		} else if !d.NoData && !strings.Contains(d.Reason, "scale_down_delay") {
			t.Fatalf("kept 3 without saying why: %s", d.Reason)
		}
	}
	later := t0.Add(31 * time.Second)
	a.Record(later, Sample{})
	if d := a.Decide(later, 3, 3); d.To >= 3 || d.Direction != Down {
		t.Errorf("idle past scale_down_delay: To = %d %s (%s), want lower", d.To, d.Direction, d.Reason)
	}
}

// TestZeroWakesOnRequestsRefusedAtOnce: with hold_max = 0 a group at zero
// answers every request 503 at once, so it shows Requests (the balancer's
// Unavailable count) and never InFlight, and on the inflight metric it
// stayed at zero forever.
func TestZeroWakesOnRequestsRefusedAtOnce(t *testing.T) {
	a, err := New(Spec{Min: 0, Max: 5, TargetInflight: 1}, t0)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(2 * time.Minute) // idle past scale_to_zero_after
	a.Record(now, Sample{})
	if d := a.Decide(now, 0, 0); d.To != 0 {
		t.Fatalf("idle at zero: To = %d (%s)", d.To, d.Reason)
	}
	now = now.Add(250 * time.Millisecond)
	a.Record(now, Sample{Requests: 1}) // one request refused
	d := a.Decide(now.Add(750*time.Millisecond), 0, 0)
	if d.To != 1 || d.Direction != Up || !strings.Contains(d.Reason, "at zero") {
		t.Errorf("a request refused at zero: To = %d %s (%s), want 1 up", d.To, d.Direction, d.Reason)
	}
}

// TestZeroWakesOnRequestsHeldOnTargetRPS: on target_rps the feeder's
// Requests are completions, so requests held at zero add nothing to rps:
// the group was never woken and every held request waited out
// hold_timeout for its 503.
func TestZeroWakesOnRequestsHeldOnTargetRPS(t *testing.T) {
	a, err := New(Spec{Min: 0, Max: 5, TargetRPS: 10}, t0)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(250 * time.Millisecond)
	a.Record(now, Sample{InFlight: 3}) // 3 requests held
	if d := a.Decide(now, 0, 0); d.To != 1 || d.Direction != Up {
		t.Errorf("3 requests held at zero on target_rps 10: To = %d (%s), want 1", d.To, d.Reason)
	}
}

// TestZeroWakesWithinAShortScaleToZeroAfter: with scale_to_zero_after
// shorter than the time between decisions, a request at zero is older
// than it by the next decision; the group must still wake rather than be
// counted idle.
func TestZeroWakesWithinAShortScaleToZeroAfter(t *testing.T) {
	a, err := New(Spec{Min: 0, Max: 5, TargetInflight: 10, ScaleToZeroAfter: 100 * time.Millisecond}, t0)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(10 * time.Second)
	a.Record(now, Sample{Requests: 2})
	if d := a.Decide(now.Add(time.Second), 0, 0); d.To != 1 {
		t.Errorf("2 requests at zero a second ago: To = %d (%s), want 1", d.To, d.Reason)
	}
	// Idle since, it goes back to zero.
	now = now.Add(2 * time.Second)
	a.Record(now, Sample{})
	if d := a.Decide(now, 1, 1); d.To != 0 {
		t.Errorf("idle 2 s past a 100ms scale_to_zero_after: To = %d (%s), want 0", d.To, d.Reason)
	}
}

// TestUpRateCapNeverLowersTheCountWhileWorkersStart: the up-rate cap,
// ceil(rate x ready), was applied whatever the count: with 8 desired and 2
// of them ready it lowered the count to 4, even in panic, and stopped
// workers still starting; at rate 1 each crash removed a worker for good.
func TestUpRateCapNeverLowersTheCountWhileWorkersStart(t *testing.T) {
	cases := []struct {
		name                 string
		rate, load           float64
		current, ready, want int
	}{
		{"panic, 8 desired, 2 ready, rate 2", 2, 8, 8, 2, 8},
		{"rate 1, one of 4 crashed", 1, 4, 4, 3, 4},
		{"a rise is still capped, at the count", 2, 10, 3, 1, 3},
		{"a rise is still capped, at rate x ready", 2, 10, 3, 2, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := New(Spec{Min: 1, Max: 20, TargetInflight: 1, MaxScaleUpRate: c.rate}, t0)
			if err != nil {
				t.Fatal(err)
			}
			now := t0
			for i := 1; i <= 8; i++ {
				now = t0.Add(time.Duration(i) * 250 * time.Millisecond)
				a.Record(now, Sample{InFlight: c.load})
			}
			if d := a.Decide(now, c.current, c.ready); d.To != c.want {
				t.Errorf("%g in flight, target 1, %d desired, %d ready: To = %d, mode %s (%s), want %d",
					c.load, c.current, c.ready, d.To, d.Mode, d.Reason, c.want)
			}
		})
	}
	// The down-rate floor limits a fall only: it never raises the count.
	a, _ := New(Spec{Min: 1, Max: 20, TargetInflight: 1, ScaleDownDelay: -1, MaxScaleDownRate: 1}, t0)
	a.Record(t0, Sample{InFlight: 2})
	if d := a.Decide(t0, 2, 6); d.To != 2 {
		t.Errorf("2 in flight, 2 desired, 6 ready (rate 1): To = %d (%s), want 2", d.To, d.Reason)
	}
}

// TestHugeScaleUpRateOverflowedToMinInt: max_scale_up_rate 1e19 was
// accepted, and ceil(rate x ready) converted to math.MinInt64: "limited by
// max_scale_up_rate" pulled a loaded group down. Such a rate is refused
// now, and the figure is clamped before it is an int.
func TestHugeScaleUpRateOverflowedToMinInt(t *testing.T) {
	if _, err := New(Spec{Min: 1, Max: 10, MaxScaleUpRate: 1e19}, t0); !errors.Is(err, ErrSpec) {
		t.Errorf("max_scale_up_rate 1e19: %v, want ErrSpec", err)
	}
	for _, r := range []float64{MaxScaleRate * 2, math.NaN(), math.Inf(1)} {
		if _, err := New(Spec{Min: 1, Max: 10, MaxScaleDownRate: r}, t0); !errors.Is(err, ErrSpec) {
			t.Errorf("max_scale_down_rate %g: %v, want ErrSpec", r, err)
		}
	}
	a, err := New(Spec{Min: 1, Max: 10, TargetInflight: 1, ScaleDownDelay: -1}, t0)
	if err != nil {
		t.Fatal(err)
	}
	a.spec.MaxScaleUpRate = 1e19 // past Validate: the clamp alone
	now := t0
	for i := 1; i <= 8; i++ {
		now = t0.Add(time.Duration(i) * 250 * time.Millisecond)
		a.Record(now, Sample{InFlight: 8})
	}
	if d := a.Decide(now, 4, 4); d.To != 8 || strings.Contains(d.Reason, "-9223") {
		t.Errorf("8 in flight, target 1, 4 ready: To = %d (%s), want 8", d.To, d.Reason)
	}
}

// TestTinyTargetOverflowedToMinInt: target_inflight 1e-18 was accepted,
// and ceil(in-flight / target) converted to math.MinInt64: the group sat
// at min under load, its reason printing -9223372036854775808. Targets
// below MinTarget are refused now, and at MinTarget a huge figure is
// clamped before it is an int.
func TestTinyTargetOverflowedToMinInt(t *testing.T) {
	for _, s := range []Spec{{Min: 1, Max: 10, TargetInflight: 1e-18}, {Min: 1, Max: 10, TargetRPS: 0.001}, {Min: 1, Max: 10, TargetInflight: math.NaN()}} {
		if _, err := New(s, t0); !errors.Is(err, ErrSpec) {
			t.Errorf("target %g/%g: %v, want ErrSpec", s.TargetInflight, s.TargetRPS, err)
		}
	}
	a, err := New(Spec{Min: 1, Max: 10, TargetInflight: MinTarget, ScaleDownDelay: -1}, t0)
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	for i := 1; i <= 8; i++ {
		now = t0.Add(time.Duration(i) * 250 * time.Millisecond)
		a.Record(now, Sample{InFlight: 1e17}) // 1e19 workers' worth
	}
	if d := a.Decide(now, 2, 2); d.To != 10 || strings.Contains(d.Reason, "-9223") {
		t.Errorf("1e17 in flight, target 0.01: To = %d (%s), want max 10", d.To, d.Reason)
	}
	for f, want := range map[float64]int{-1: 0, 0: 0, 0.2: 1, 3: 3, 1e19: maxCount, math.NaN(): 0, math.Inf(1): maxCount} {
		if got := count(f); got != want {
			t.Errorf("count(%g) = %d, want %d", f, got, want)
		}
	}
}

// TestWallClockStepBackForgotTheStableWindow: the window's slots came from
// t.UnixNano(), the wall clock, while every other span is monotonic: a
// step back (NTP, a VM resumed) put every bucket "in the future", the
// stable window forgot its history at once and the group dropped to the
// newest sample's figure.
func TestWallClockStepBackForgotTheStableWindow(t *testing.T) {
	for name, start := range map[string]time.Time{"fake clock": t0, "time.Now": time.Now()} {
		t.Run(name, func(t *testing.T) {
			a, err := New(Spec{Min: 1, Max: 20, TargetInflight: 10, ScaleDownDelay: -1, MaxScaleDownRate: 100}, start)
			if err != nil {
				t.Fatal(err)
			}
			now := start
			for i := 1; i <= 80; i++ { // 20 s at 40 in flight
				now = start.Add(time.Duration(i) * 250 * time.Millisecond)
				a.Record(now, Sample{InFlight: 40})
			}
			if d := a.Decide(now, 4, 4); d.To != 4 {
				t.Fatalf("before the step: To = %d (%s)", d.To, d.Reason)
			}
			// The wall clock steps back 30 s (a time without a
			// monotonic reading: a real one never goes back), then
			// runs on: 4 s at 0 in flight.
			step := now.Round(0).Add(250*time.Millisecond - 30*time.Second)
			for i := range 16 {
				a.Record(step.Add(time.Duration(i)*250*time.Millisecond), Sample{InFlight: 0})
			}
			// 20 s at 40 and 4 s at 0 average 33: still 4.
			if d := a.Decide(step.Add(3750*time.Millisecond), 4, 4); d.To != 4 || d.StableInflight < 30 {
				t.Errorf("4 s after a 30 s wall-clock step back: To = %d, stable %.3g (%s), want 4 from about 33", d.To, d.StableInflight, d.Reason)
			}
			// And the window moves on: a minute later only the
			// newest samples count.
			later := step.Add(4 * time.Second)
			for i := range 240 {
				a.Record(later.Add(time.Duration(i)*250*time.Millisecond), Sample{InFlight: 0})
			}
			if d := a.Decide(later.Add(59750*time.Millisecond), 4, 4); d.To != 1 {
				t.Errorf("a minute at 0 after the step: To = %d (%s), want 1", d.To, d.Reason)
			}
		})
	}
}

// TestWindowSlotsAreMonotonicOffsets: with time.Now()'s readings (as the
// agent's feeder has them) the slots are the time since the window's
// epoch, as on the fake clock, and a re-bucketed window keeps its clock.
func TestWindowSlotsAreMonotonicOffsets(t *testing.T) {
	start := time.Now()
	w := newWindow(10*time.Second, time.Second, start)
	for i := range 40 { // 10 s: 1 in flight, then 3 from 5 s
		v := 1.0
		if i >= 20 {
			v = 3
		}
		w.record(start.Add(time.Duration(i)*250*time.Millisecond), Sample{InFlight: v, Requests: 5})
	}
	now := start.Add(9900 * time.Millisecond)
	if a := w.averages(now, 10*time.Second); !a.ok || a.inflight != 2 || a.rps != 20 {
		t.Errorf("10 s: %+v, want 2 in flight, 20 rps", a)
	}
	if got := w.slot(now); got != 9 {
		t.Errorf("slot 9.9 s after the epoch = %d, want 9", got)
	}
	if got := w.slot(start.Add(-time.Hour)); got != 39/4 {
		t.Errorf("slot before the last record = %d, want the last record's, %d", got, 39/4)
	}
	nw := w.rebucket(newWindow(20*time.Second, 2*time.Second, now), now)
	if a := nw.averages(now, 10*time.Second); !a.ok || a.inflight != 2 || a.rps != 20 {
		t.Errorf("re-bucketed in 2 s: %+v, want 2 in flight, 20 rps", a)
	}
}

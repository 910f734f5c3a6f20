package autoscale

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// t0 is the fake clock's start.
var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// sim drives an Autoscaler on a fake clock as golb's feeder does: a sample
// every 250 ms, a decision every second, and workers that become ready one
// decision after they are desired.
type sim struct {
	t       *testing.T
	a       *Autoscaler
	now     time.Time
	desired int
	ready   int
	changes []Decision // the decisions that moved the count
}

func newSim(t *testing.T, spec Spec, start int) *sim {
	t.Helper()
	a, err := New(spec, t0)
	if err != nil {
		t.Fatal(err)
	}
	return &sim{t: t, a: a, now: t0, desired: start, ready: start}
}

// run advances the clock by d under load, a function of the time since
// the run began giving the in-flight requests (and as many arrivals a
// second as it returns, for the rps tests).
func (s *sim) run(d time.Duration, load func(since time.Duration) float64) {
	start := s.now
	for end := s.now.Add(d); s.now.Before(end); {
		s.now = s.now.Add(250 * time.Millisecond)
		v := load(s.now.Sub(start))
		s.a.Record(s.now, Sample{InFlight: v, Requests: uint64(v / 4)})
		if s.now.Sub(t0)%time.Second == 0 {
			s.ready = s.desired
			dec := s.a.Decide(s.now, s.desired, s.ready)
			if dec.Changed() {
				s.changes = append(s.changes, dec)
			}
			s.desired = dec.To
		}
	}
}

func steady(v float64) func(time.Duration) float64 { return func(time.Duration) float64 { return v } }

// firstReach is when the desired count first reached n, or -1.
func (s *sim) firstReach(n int) time.Duration {
	for _, d := range s.changes {
		if d.To >= n {
			return d.Time.Sub(t0)
		}
	}
	return -1
}

func base() Spec { return Spec{Min: 1, Max: 10, TargetInflight: 4} }

func TestStepLoadScalesUpInPanic(t *testing.T) {
	s := newSim(t, base(), 1)
	s.run(30*time.Second, steady(2))
	if len(s.changes) != 0 {
		t.Fatalf("2 in flight at target 4 moved the count: %+v", s.changes)
	}
	s.run(10*time.Second, steady(32))
	if s.desired != 8 {
		t.Fatalf("desired %d after 10 s at 32 in flight, want 8", s.desired)
	}
	first := s.changes[0]
	if first.Mode != ModePanic || first.Direction != Up || !strings.Contains(first.Reason, "panic") {
		t.Errorf("the step's first decision is %+v, want an up in panic mode", first)
	}
	if got := first.Time.Sub(t0) - 30*time.Second; got > 2*time.Second {
		t.Errorf("scaled up %s into the step, want within 2 s", got)
	}
	// Panic follows the newest samples: 8 within 3 s of the step, not
	// once the 6 s panic window has filled.
	if got := s.firstReach(8) - 30*time.Second; got < 0 || got > 3*time.Second {
		t.Errorf("reached 8 workers %s into the step, want within 3 s", got)
	}
}

func TestNoScaleDownInPanic(t *testing.T) {
	s := newSim(t, base(), 1)
	s.run(10*time.Second, steady(32))
	if !s.a.Panicking() {
		t.Fatal("32 in flight on 1 worker did not panic")
	}
	s.run(50*time.Second, steady(0))
	for _, d := range s.changes {
		if d.Direction == Down {
			t.Fatalf("scaled down in panic mode: %+v", d)
		}
	}
}

func TestPanicEndsOneStableWindowAfterLastBreach(t *testing.T) {
	spec := base()
	spec.ScaleDownDelay = -1 // none: only panic holds the count here
	s := newSim(t, spec, 1)
	s.run(3*time.Second, steady(32)) // the breach: 8 >= 2 x 1
	if !s.a.Panicking() {
		t.Fatal("no panic")
	}
	lastBreach := s.a.lastBreach
	s.run(45*time.Second, steady(0))
	if !s.a.Panicking() {
		t.Fatalf("panic ended %s after the last breach, before one stable window", s.now.Sub(lastBreach))
	}
	s.run(20*time.Second, steady(0))
	if s.a.Panicking() {
		t.Fatalf("still panicking %s after the last breach", s.now.Sub(lastBreach))
	}
	for _, d := range s.changes {
		if d.Direction == Down && d.Time.Sub(lastBreach) < spec.WithDefaults().StableWindow {
			t.Errorf("scaled down %s after the last breach: %+v", d.Time.Sub(lastBreach), d)
		}
	}
}

func TestScaleDownWaitsForScaleDownDelay(t *testing.T) {
	spec := base()
	spec.PanicThreshold = 100 // stable mode only
	s := newSim(t, spec, 1)
	s.run(90*time.Second, steady(32))
	if s.desired != 8 {
		t.Fatalf("desired %d at a steady 32, want 8", s.desired)
	}
	s.changes = nil
	stop := s.now
	s.run(150*time.Second, steady(0))
	if len(s.changes) == 0 || s.desired != 1 {
		t.Fatalf("desired %d after the load stopped, want 1; changes %+v", s.desired, s.changes)
	}
	// The stable average first asks for 7 a few seconds after the stop;
	// the count must stay until 30 s after that.
	first := s.changes[0]
	if got := first.Time.Sub(stop); got < 30*time.Second {
		t.Errorf("first scale-down %s after the load stopped, before scale_down_delay: %+v", got, first)
	}
	last := s.changes[len(s.changes)-1]
	if got, limit := last.Time.Sub(stop), 60*time.Second+30*time.Second+15*time.Second; got > limit {
		t.Errorf("back to min %s after the load stopped, want within %s", got, limit)
	}
	t.Logf("scale-downs after the stop: first at %s, at min at %s", first.Time.Sub(stop), last.Time.Sub(stop))
}

func TestRateLimits(t *testing.T) {
	cases := []struct {
		name          string
		spec          Spec
		current, want int
		load          float64
	}{
		{"up at most ready x up rate", Spec{Min: 1, Max: 100, TargetInflight: 1, MaxScaleUpRate: 2, PanicThreshold: 1000}, 3, 6, 50},
		{"up from zero ready counts as one", Spec{Min: 0, Max: 100, TargetInflight: 1, MaxScaleUpRate: 3, PanicThreshold: 1000}, 0, 3, 50},
		{"down at least ready / down rate", Spec{Min: 1, Max: 100, TargetInflight: 1, MaxScaleDownRate: 2, ScaleDownDelay: -1}, 9, 4, 0.5},
		{"down rate 1 never scales down", Spec{Min: 1, Max: 100, TargetInflight: 1, MaxScaleDownRate: 1, ScaleDownDelay: -1}, 9, 9, 0.5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := New(c.spec, t0)
			if err != nil {
				t.Fatal(err)
			}
			a.Record(t0, Sample{InFlight: c.load})
			d := a.Decide(t0, c.current, c.current)
			if d.To != c.want {
				t.Errorf("To = %d, want %d (%s)", d.To, c.want, d.Reason)
			}
			if !strings.Contains(d.Reason, "rate") {
				t.Errorf("reason %q does not name the rate", d.Reason)
			}
		})
	}
}

func TestBoundsClampAndSayWhy(t *testing.T) {
	a, _ := New(Spec{Min: 2, Max: 5, TargetInflight: 1, PanicThreshold: 1000}, t0)
	a.Record(t0, Sample{InFlight: 50})
	if d := a.Decide(t0, 5, 5); d.To != 5 || !strings.Contains(d.Reason, "clamped to max 5") {
		t.Errorf("got %d (%s), want 5 clamped to max", d.To, d.Reason)
	}
	b, _ := New(Spec{Min: 2, Max: 5, TargetInflight: 1, ScaleDownDelay: -1}, t0)
	b.Record(t0, Sample{InFlight: 0})
	if d := b.Decide(t0, 2, 2); d.To != 2 || !strings.Contains(d.Reason, "min 2") {
		t.Errorf("got %d (%s), want 2 clamped to min", d.To, d.Reason)
	}
}

func TestTargetRPS(t *testing.T) {
	a, err := New(Spec{Min: 1, Max: 10, TargetRPS: 100, PanicThreshold: 1000}, t0)
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	for range 40 { // 10 s at 450 requests a second
		now = now.Add(250 * time.Millisecond)
		a.Record(now, Sample{InFlight: 1, Requests: 112})
	}
	d := a.Decide(now, 1, 1)
	if d.Metric != MetricRPS || d.To != 5 {
		t.Errorf("rps %.1f gave %d (%s), want 5 on the rps metric", d.StableRPS, d.To, d.Reason)
	}
	if d.StableRPS < 400 || d.StableRPS > 500 {
		t.Errorf("stable rps %.1f, want about 450", d.StableRPS)
	}
}

func TestScaleToZeroAfterIdle(t *testing.T) {
	spec := Spec{Min: 0, Max: 10, TargetInflight: 4, ScaleToZeroAfter: 20 * time.Second}
	s := newSim(t, spec, 1)
	s.run(5*time.Second, steady(1))
	s.run(18*time.Second, steady(0))
	if s.desired != 1 {
		t.Fatalf("desired %d 18 s after the last request, want 1 until scale_to_zero_after", s.desired)
	}
	s.run(5*time.Second, steady(0))
	if s.desired != 0 {
		t.Fatalf("desired %d 23 s after the last request, want 0", s.desired)
	}
	last := s.changes[len(s.changes)-1]
	if !strings.Contains(last.Reason, "scale_to_zero_after") {
		t.Errorf("reason %q does not name scale_to_zero_after", last.Reason)
	}
	// Idle at zero stays at zero, and says nothing.
	n := len(s.changes)
	s.run(2*time.Minute, steady(0))
	if len(s.changes) != n || s.desired != 0 {
		t.Errorf("idle at zero changed the count: %+v", s.changes[n:])
	}
}

func TestFromZeroScalesUpOnTheFirstRequest(t *testing.T) {
	a, _ := New(Spec{Min: 0, Max: 10, TargetInflight: 4}, t0)
	now := t0
	for range 240 { // a minute idle at zero
		now = now.Add(250 * time.Millisecond)
		a.Record(now, Sample{})
		if d := a.Decide(now, 0, 0); d.To != 0 {
			t.Fatalf("idle at zero decided %d: %s", d.To, d.Reason)
		}
	}
	now = now.Add(10 * time.Millisecond)
	a.Record(now, Sample{InFlight: 1}) // one held request
	if d := a.Decide(now, 0, 0); d.To < 1 || d.Direction != Up {
		t.Fatalf("a held request at zero decided %d: %s", d.To, d.Reason)
	}
}

func TestFloorFromGolbScale(t *testing.T) {
	spec := base()
	spec.ScaleDownDelay = -1 // none: the floor alone holds the count
	a, _ := New(spec, t0)
	a.Record(t0, Sample{})
	n, until := a.SetFloor(t0, 50)
	if n != 10 || !until.Equal(t0.Add(DefaultStableWindow)) {
		t.Fatalf("SetFloor(50) = %d until %s, want max 10 for one stable window", n, until)
	}
	if d := a.Decide(t0.Add(time.Second), 10, 10); d.To != 10 || !strings.Contains(d.Reason, "floor") {
		t.Errorf("with a floor: %d (%s)", d.To, d.Reason)
	}
	later := t0.Add(DefaultStableWindow + time.Second)
	a.Record(later, Sample{})
	if d := a.Decide(later, 10, 10); d.To == 10 {
		t.Errorf("the floor outlived its stable window: %s", d.Reason)
	}
}

// TestNoFlappingAtAWorkerBoundary pins a steady load exactly at 2 workers'
// target (8 in flight, target 4, with the dips between a response and the
// next request): 2 minutes give no down-then-up pair.
func TestNoFlappingAtAWorkerBoundary(t *testing.T) {
	s := newSim(t, base(), 2)
	i := 0
	s.run(2*time.Minute, func(time.Duration) float64 {
		i++
		return []float64{8, 8, 7, 8, 6, 8}[i%6]
	})
	for i := 1; i < len(s.changes); i++ {
		if s.changes[i-1].Direction == Down && s.changes[i].Direction == Up {
			t.Fatalf("flapped: %+v then %+v", s.changes[i-1], s.changes[i])
		}
	}
	if s.desired != 2 {
		t.Errorf("desired %d, want 2 (changes %+v)", s.desired, s.changes)
	}
}

func TestBurstAfterIdlePanicsAndHolds(t *testing.T) {
	s := newSim(t, base(), 1)
	s.run(5*time.Minute, steady(2))
	burst := s.now
	s.run(2*time.Second, steady(32))
	s.run(2*time.Minute, steady(2))
	if len(s.changes) == 0 || s.changes[0].Mode != ModePanic || s.changes[0].Direction != Up {
		t.Fatalf("the burst did not scale up in panic: %+v", s.changes)
	}
	for _, d := range s.changes {
		if d.Direction == Down && d.Time.Sub(burst) < DefaultStableWindow {
			t.Errorf("scaled down %s after the burst, before the stable window: %+v", d.Time.Sub(burst), d)
		}
	}
	if s.desired != 1 {
		t.Errorf("desired %d two minutes after the burst, want 1", s.desired)
	}
}

func TestNoDataKeepsTheCount(t *testing.T) {
	a, _ := New(base(), t0)
	if d := a.Decide(t0, 3, 3); d.To != 3 || !d.NoData {
		t.Errorf("no samples: %+v", d)
	}
}

func TestSpecValidate(t *testing.T) {
	cases := []struct {
		name string
		spec Spec
		bad  string // "" for valid
	}{
		{"defaults", Spec{Min: 1, Max: 3}, ""},
		{"to zero", Spec{Min: 0, Max: 3, ScaleToZeroAfter: time.Minute}, ""},
		{"both targets", Spec{Min: 1, Max: 3, TargetInflight: 1, TargetRPS: 2}, "both"},
		{"min over max", Spec{Min: 4, Max: 3}, "min"},
		{"panic over stable", Spec{Min: 1, Max: 3, StableWindow: 10 * time.Second, PanicWindow: 20 * time.Second}, "panic_window"},
		{"threshold 1", Spec{Min: 1, Max: 3, PanicThreshold: 1}, "panic_threshold"},
		{"up rate below 1", Spec{Min: 1, Max: 3, MaxScaleUpRate: 0.5}, "rate"},
		{"down rate below 1", Spec{Min: 1, Max: 3, MaxScaleDownRate: 0.5}, "rate"},
		{"to zero with min 1", Spec{Min: 1, Max: 3, ScaleToZeroAfter: time.Minute}, "scale_to_zero_after"},
		{"no delay", Spec{Min: 1, Max: 3, ScaleDownDelay: -time.Second}, ""},
		{"stable window at the cap", Spec{Min: 1, Max: 3, StableWindow: MaxStableWindow}, ""},
		{"stable window over the cap", Spec{Min: 1, Max: 3, StableWindow: MaxStableWindow + time.Second}, "stable_window"},
		{"delay at the cap", Spec{Min: 1, Max: 3, ScaleDownDelay: MaxScaleDownDelay}, ""},
		{"delay over the cap", Spec{Min: 1, Max: 3, ScaleDownDelay: MaxScaleDownDelay + time.Second}, "scale_down_delay"},
		{"to zero at the cap", Spec{Min: 0, Max: 3, ScaleToZeroAfter: MaxScaleToZeroAfter}, ""},
		{"to zero over the cap", Spec{Min: 0, Max: 3, ScaleToZeroAfter: MaxScaleToZeroAfter + time.Second}, "scale_to_zero_after"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.spec.WithDefaults().Validate()
			switch {
			case c.bad == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case c.bad != "" && (err == nil || !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), c.bad)):
				t.Errorf("error %v, want ErrSpec naming %q", err, c.bad)
			}
		})
	}
}

package autoscale

import (
	"errors"
	"math"
	"testing"
	"time"
)

// TestSetSpecKeepsHistoryAndTakesTheNewTarget: under a steady 16 in
// flight at target 4 a group holds 4; a new target of 2 moves it to 8 at the
// first decision after SetSpec (the stable window's samples are kept: no
// "no samples" pause), and a new max of 6 clamps it there.
func TestSetSpecKeepsHistoryAndTakesTheNewTarget(t *testing.T) {
	s := newSim(t, Spec{Min: 1, Max: 10, TargetInflight: 4, StableWindow: 20 * time.Second, ScaleDownDelay: -1}, 4)
	s.run(30*time.Second, steady(16))
	if s.desired != 4 {
		t.Fatalf("desired %d at 16 in flight / target 4", s.desired)
	}
	if err := s.a.SetSpec(s.now, Spec{Min: 1, Max: 10, TargetInflight: 2, StableWindow: 20 * time.Second, ScaleDownDelay: -1}); err != nil {
		t.Fatal(err)
	}
	if l := s.a.Last(); l.Target != 2 || l.Metric != MetricInflight {
		t.Errorf("Last after SetSpec: target %g %s, want 2 inflight", l.Target, l.Metric)
	}
	d := s.a.Decide(s.now, s.desired, s.desired)
	if d.NoData || d.To != 8 {
		t.Fatalf("first decision after the new target: %+v, want 8 from the kept window", d)
	}
	if err := s.a.SetSpec(s.now, Spec{Min: 2, Max: 6, TargetInflight: 2, StableWindow: 20 * time.Second, ScaleDownDelay: -1}); err != nil {
		t.Fatal(err)
	}
	if l := s.a.Last(); l.To != 6 {
		t.Errorf("Last().To = %d after max 6, want it clamped to 6", l.To)
	}
	if d := s.a.Decide(s.now, 8, 8); d.To != 6 {
		t.Errorf("decision at max 6: %+v", d)
	}
	if got := s.a.Spec(); got.Min != 2 || got.Max != 6 {
		t.Errorf("Spec() = %+v", got)
	}
}

// TestSetSpecRebucketsOnNewWindows: a shorter panic window (a finer
// bucket) and a longer stable window keep the averages of the samples
// taken so far.
func TestSetSpecRebucketsOnNewWindows(t *testing.T) {
	s := newSim(t, Spec{Min: 1, Max: 20, TargetInflight: 4, StableWindow: 20 * time.Second, PanicWindow: 6 * time.Second}, 2)
	s.run(25*time.Second, steady(8))
	before := s.a.Decide(s.now, s.desired, s.desired)
	if err := s.a.SetSpec(s.now, Spec{Min: 1, Max: 20, TargetInflight: 4, StableWindow: 40 * time.Second, PanicWindow: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	after := s.a.Decide(s.now, s.desired, s.desired)
	if after.NoData || math.Abs(after.StableInflight-before.StableInflight) > 0.01 || math.Abs(after.PanicInflight-8) > 0.01 {
		t.Errorf("figures before %+v, after the new windows %+v: want the same averages", before.Figures, after.Figures)
	}
	if after.To != 2 {
		t.Errorf("desired %d after the new windows, want 2", after.To)
	}
}

// TestSetSpecScaleToZeroCountsFromTheLastRequest: a group given min 0
// and scale_to_zero_after 5s goes to zero 5s after its last request, not
// 5s after SetSpec.
func TestSetSpecScaleToZeroCountsFromTheLastRequest(t *testing.T) {
	s := newSim(t, Spec{Min: 1, Max: 4, TargetInflight: 4, StableWindow: 10 * time.Second, ScaleDownDelay: -1}, 1)
	s.run(5*time.Second, steady(2))
	last := s.now
	s.run(3*time.Second, steady(0))
	if err := s.a.SetSpec(s.now, Spec{Min: 0, Max: 4, TargetInflight: 4, StableWindow: 10 * time.Second, ScaleDownDelay: -1, ScaleToZeroAfter: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	s.run(3*time.Second, steady(0))
	if s.desired != 0 {
		t.Fatalf("desired %d %v after the last request, want 0 (scale_to_zero_after 5s)", s.desired, s.now.Sub(last))
	}
	for _, d := range s.changes {
		if d.To == 0 && d.Time.Sub(last) > 6*time.Second {
			t.Errorf("scaled to zero %v after the last request", d.Time.Sub(last))
		}
	}
}

// TestSetSpecInvalidChangesNothing: an invalid spec is refused with
// ErrSpec and the old one stays in force.
func TestSetSpecInvalidChangesNothing(t *testing.T) {
	a, err := New(base(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetSpec(t0, Spec{Min: 3, Max: 2}); !errors.Is(err, ErrSpec) {
		t.Fatalf("SetSpec(min 3 max 2) = %v, want ErrSpec", err)
	}
	if got := a.Spec(); got.Min != 1 || got.Max != 10 || got.TargetInflight != 4 {
		t.Errorf("Spec() after an invalid SetSpec = %+v", got)
	}
}

// TestSetSpecClampsTheFloor: a floor set by golb scale is clamped to new
// bounds.
func TestSetSpecClampsTheFloor(t *testing.T) {
	a, err := New(base(), t0)
	if err != nil {
		t.Fatal(err)
	}
	a.SetFloor(t0, 8)
	if err := a.SetSpec(t0, Spec{Min: 1, Max: 5, TargetInflight: 4}); err != nil {
		t.Fatal(err)
	}
	if f, _ := a.Floor(); f != 5 {
		t.Errorf("floor %d after max 5, want 5", f)
	}
}

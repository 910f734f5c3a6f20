package autoscale

import (
	"errors"
	"testing"
	"time"
)

func TestWindowAverages(t *testing.T) {
	w := newWindow(10*time.Second, time.Second, t0)
	for i := range 10 { // 1 in flight for 5 s, then 3 for 5 s; 4 samples a second
		for j := range 4 {
			v := 1.0
			if i >= 5 {
				v = 3
			}
			w.record(t0.Add(time.Duration(i)*time.Second+time.Duration(j)*250*time.Millisecond), Sample{InFlight: v, Requests: 5})
		}
	}
	now := t0.Add(9*time.Second + 900*time.Millisecond)
	if a := w.averages(now, 10*time.Second); !a.ok || a.inflight != 2 || a.rps != 20 {
		t.Errorf("10 s: %+v, want 2 in flight, 20 rps", a)
	}
	if a := w.averages(now, 2*time.Second); a.inflight != 3 {
		t.Errorf("2 s: %+v, want 3 in flight", a)
	}
	// Samples older than the span drop out.
	if a := w.averages(now.Add(30*time.Second), 10*time.Second); a.ok {
		t.Errorf("30 s later: %+v, want no data", a)
	}
}

func TestMaxWindow(t *testing.T) {
	m := maxWindow{span: 10 * time.Second}
	m.record(t0, 5)
	m.record(t0.Add(2*time.Second), 3)
	if v, _ := m.current(t0.Add(5 * time.Second)); v != 5 {
		t.Errorf("within the span: %d, want 5", v)
	}
	if v, _ := m.current(t0.Add(11 * time.Second)); v != 3 {
		t.Errorf("past 5's span: %d, want 3", v)
	}
	m.record(t0.Add(12*time.Second), 7)
	if v, _ := m.current(t0.Add(12 * time.Second)); v != 7 {
		t.Errorf("a higher value: %d, want 7", v)
	}
}

func TestEventsKeepTheNewest(t *testing.T) {
	e := NewEvents(3)
	for i := range 5 {
		e.Add(Decision{Group: "g", From: i, To: i + 1, Direction: Up, Mode: ModeStable})
	}
	l := e.List("g")
	if len(l) != 3 || l[0].To != 5 || l[2].To != 3 {
		t.Errorf("List = %+v, want the 3 newest, newest first", l)
	}
	if d, ok := e.Last("g"); !ok || d.To != 5 {
		t.Errorf("Last = %+v %v", d, ok)
	}
	if n := e.Counts()[CountKey{"g", Up, ModeStable}]; n != 5 {
		t.Errorf("counted %d ups, want 5 (counts outlive the kept log)", n)
	}
	if _, ok := e.Last("other"); ok {
		t.Error("Last of an unknown group")
	}
}

// Regression: stable_window = "200000h" made New allocate a bucket per
// second, 23 GB, and a reload to it crashed a running agent. New and
// SetSpec refuse a window over MaxStableWindow (the old spec stays), and
// newWindow never holds more than maxBuckets buckets.
func TestHugeStableWindowAllocates23GB(t *testing.T) {
	huge := Spec{Min: 1, Max: 2, StableWindow: 200000 * time.Hour}
	if _, err := New(huge, t0); !errors.Is(err, ErrSpec) {
		t.Fatalf("New(stable_window 200000h) = %v, want ErrSpec", err)
	}
	a, err := New(Spec{Min: 1, Max: 2, StableWindow: MaxStableWindow, PanicWindow: time.Second}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(a.win.buckets); n > maxBuckets {
		t.Errorf("a 1h window with the shortest buckets has %d buckets, over %d", n, maxBuckets)
	}
	if err := a.SetSpec(t0, huge); !errors.Is(err, ErrSpec) {
		t.Fatalf("SetSpec(stable_window 200000h) = %v, want ErrSpec", err)
	}
	if got := a.Spec().StableWindow; got != MaxStableWindow {
		t.Errorf("stable window after a refused SetSpec = %s, want %s", got, MaxStableWindow)
	}
	for _, gran := range []time.Duration{time.Second, time.Nanosecond, 0} {
		if n := len(newWindow(200000*time.Hour, gran, t0).buckets); n != maxBuckets {
			t.Errorf("newWindow(200000h, %s) has %d buckets, want the most, %d", gran, n, maxBuckets)
		}
	}
}

package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/golb/golb/core"
	"github.com/golb/golb/core/autoscale"
)

// TestAutoscalerTable: golb status shows each autoscaled group's mode,
// figures and last decision with its reason, and nothing for the others.
func TestAutoscalerTable(t *testing.T) {
	var buf bytes.Buffer
	if autoscalerTable(&buf, []core.GroupView{{Name: "plain"}}) || buf.Len() != 0 {
		t.Fatalf("a group without a scale block printed %q", buf.String())
	}
	d := autoscale.Decision{Time: time.Date(2026, 1, 1, 12, 0, 3, 0, time.UTC), From: 1, To: 8, Direction: autoscale.Up, Mode: autoscale.ModePanic,
		Reason: "panic inflight 30.12 over 6s / target 4 = 8"}
	groups := []core.GroupView{{Name: "plain"}, {Name: "hello", Autoscaler: &core.AutoscalerView{
		Mode:    autoscale.ModePanic,
		Figures: autoscale.Figures{Metric: autoscale.MetricInflight, Target: 4, StableInflight: 9.51, PanicInflight: 30.12, Ready: 8},
		Held:    3, LastDecision: &d,
	}}}
	if !autoscalerTable(&buf, groups) {
		t.Fatal("no table for an autoscaled group")
	}
	out := buf.String()
	for _, want := range []string{"AUTOSCALER", "LAST DECISION", "hello", "panic", "9.51", "30.12", "4 inflight", "1 -> 8 up: panic inflight 30.12 over 6s / target 4 = 8"} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "plain") {
		t.Errorf("the table shows a group without a scale block:\n%s", out)
	}
}

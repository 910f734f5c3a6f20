package config

import (
	"os"
	"testing"
	"time"

	"github.com/golb/golb/core/autoscale"
)

// scaleGolden is a scale block as the testdata/valid goldens show it:
// every field with its default filled.
func scaleGolden(s *Scale) any {
	type scale struct {
		Min              int      `json:"min"`
		Max              int      `json:"max"`
		TargetInflight   *float64 `json:"target_inflight,omitempty"`
		TargetRPS        *float64 `json:"target_rps,omitempty"`
		StableWindow     string   `json:"stable_window"`
		PanicWindow      string   `json:"panic_window"`
		PanicThreshold   float64  `json:"panic_threshold"`
		ScaleDownDelay   string   `json:"scale_down_delay"`
		MaxScaleUpRate   float64  `json:"max_scale_up_rate"`
		MaxScaleDownRate float64  `json:"max_scale_down_rate"`
		ScaleToZeroAfter string   `json:"scale_to_zero_after"`
		HoldMax          int      `json:"hold_max"`
		HoldTimeout      string   `json:"hold_timeout"`
	}
	return scale{s.Min, s.Max, s.TargetInflight, s.TargetRPS, s.StableWindowDur.String(), s.PanicWindowDur.String(),
		*s.PanicThreshold, s.ScaleDownDelayDur.String(), *s.MaxScaleUpRate, *s.MaxScaleDownRate,
		s.ScaleToZeroAfterDur.String(), *s.HoldMax, s.HoldTimeoutDur.String()}
}

// TestScaleSpecIsValid: every scale block Parse accepts gives a Spec that
// core/autoscale accepts, with the file's figures.
func TestScaleSpecIsValid(t *testing.T) {
	for _, src := range []string{
		"group \"g\" {\n  port = 6000\n  scale {\n    min = 1\n    max = 3\n  }\n}\n",
		"group \"g\" {\n  port = 6000\n  scale {\n    min = 0\n    max = 3\n    target_rps = 50\n    stable_window = \"20s\"\n    scale_down_delay = \"0s\"\n  }\n}\n",
		// Every duration at its cap.
		"group \"g\" {\n  port = 6000\n  scale {\n    min = 0\n    max = 3\n    stable_window = \"1h\"\n    panic_window = \"1h\"\n    scale_down_delay = \"1h\"\n    scale_to_zero_after = \"24h\"\n    hold_timeout = \"1h\"\n  }\n}\n",
	} {
		cfg, _, diags := Parse("t.hcl", []byte(src))
		if diags.HasErrors() {
			t.Fatalf("%s: %v", src, diags)
		}
		spec := cfg.Groups[0].Scale.Spec()
		if err := spec.WithDefaults().Validate(); err != nil {
			t.Errorf("%s: Spec %+v: %v", src, spec, err)
		}
		if _, err := autoscale.New(spec, time.Now()); err != nil {
			t.Errorf("autoscale.New: %v", err)
		}
	}
	cfg, _, _ := Parse("t.hcl", []byte("group \"g\" {\n  port = 6000\n  scale {\n    min = 0\n    max = 3\n    target_rps = 50\n    stable_window = \"20s\"\n    scale_down_delay = \"0s\"\n  }\n}\n"))
	s := cfg.Groups[0].Scale.Spec()
	if s.TargetRPS != 50 || s.TargetInflight != 0 || s.ScaleDownDelay >= 0 || s.ScaleToZeroAfter != 20*time.Second || s.PanicWindow != 6*time.Second {
		t.Errorf("Spec = %+v: want target_rps 50 only, no scale-down delay, scale_to_zero_after = stable_window", s)
	}
}

// TestAutoscaleExampleParses keeps examples/autoscale.hcl valid, with every
// scale field it shows set as written.
func TestAutoscaleExampleParses(t *testing.T) {
	src, err := os.ReadFile("../../examples/autoscale.hcl")
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, diags := Parse("examples/autoscale.hcl", src)
	if diags.HasErrors() {
		t.Fatalf("examples/autoscale.hcl: %v", diags)
	}
	s := cfg.Groups[0].Scale
	if s.Min != 0 || *s.TargetInflight != 4 || s.ScaleToZeroAfterDur != time.Minute || *s.HoldMax != 1000 || s.HoldTimeoutDur != 30*time.Second {
		t.Errorf("examples/autoscale.hcl decodes to %+v", s)
	}
}

// Regression: stable_window = "200000h" validated, then golb run died
// allocating 23 GB in autoscale.New (a slot per second), and a reload to
// it crashed a running agent. Each scale duration has a cap, the one
// autoscale.Spec.Validate enforces where it has one, named in its diagnostic.
func TestStableWindow200000hRunsOutOfMemory(t *testing.T) {
	for _, tc := range []struct{ attr, val, want string }{
		{"stable_window", "200000h", "stable_window must be at most 1h"},
		{"scale_down_delay", "2h", "scale_down_delay must be at most 1h"},
		{"scale_to_zero_after", "100000h", "scale_to_zero_after must be at most 24h"},
		{"hold_timeout", "1h0m1s", "hold_timeout must be at most 1h"},
	} {
		src := "group \"g\" {\n  port = 6000\n  scale {\n    min = 0\n    max = 3\n    " + tc.attr + " = \"" + tc.val + "\"\n  }\n}\n"
		diags := errorsOf(t, src)
		if diags[0].Summary != tc.want || diags[0].Subject.Start.Line != 6 {
			t.Errorf("%s = %q: got %q at %v, want %q at line 6", tc.attr, tc.val, diags[0].Summary, diags[0].Subject, tc.want)
		}
	}
}

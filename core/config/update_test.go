package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestUpdateBlockDefaults: a group without an update block rolls over one
// worker at a time with a 60 s healthy deadline.
func TestUpdateBlockDefaults(t *testing.T) {
	cfg, _, diags := Parse("t.hcl", []byte(`group "g" { port = 21100 }`))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	u := cfg.Groups[0].Update
	if *u.MaxParallel != 1 || u.HealthyDeadlineDur != 60*time.Second {
		t.Fatalf("update = %d, %v; want 1, 60s", *u.MaxParallel, u.HealthyDeadlineDur)
	}
}

func TestUpdateBlockValues(t *testing.T) {
	cfg, _, diags := Parse("t.hcl", []byte(`group "g" {
  port = 21100
  update {
    max_parallel     = 3
    healthy_deadline = "5s"
  }
}`))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	u := cfg.Groups[0].Update
	if *u.MaxParallel != 3 || u.HealthyDeadlineDur != 5*time.Second {
		t.Fatalf("update = %d, %v; want 3, 5s", *u.MaxParallel, u.HealthyDeadlineDur)
	}
}

func TestUpdateBlockInvalid(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`max_parallel = 0`, "4: update.max_parallel must be between 1 and 1000"},
		{`healthy_deadline = "10ms"`, "4: healthy_deadline must be at least 1s"},
		{`healthy_deadline = "soon"`, `4: Invalid duration "soon" for healthy_deadline`},
	} {
		src := "group \"g\" {\n  port = 21100\n  update {\n    " + tc.body + "\n  }\n}\n"
		_, _, diags := Parse("t.hcl", []byte(src))
		if !diags.HasErrors() {
			t.Fatalf("%s: no error", tc.body)
		}
		got := fmt.Sprintf("%d: %s", diags[0].Subject.Start.Line, diags[0].Summary)
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.body, got, tc.want)
		}
	}
}

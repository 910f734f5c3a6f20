package core

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// lineOf is the 1-based line of the first line of src containing s.
func lineOf(t *testing.T, src, s string) int {
	t.Helper()
	for i, l := range strings.Split(src, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%q not in the config", s)
	return 0
}

func prepare(t *testing.T, src string) hcl.Diagnostics {
	t.Helper()
	ta := newTestAgent(t, parseConfig(t, src))
	defer ta.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return ta.Prepare(ctx)
}

// errorAt finds the one error diagnostic whose summary has summary, and
// checks that it points at line.
func errorAt(t *testing.T, diags hcl.Diagnostics, summary string, line int) *hcl.Diagnostic {
	t.Helper()
	var found *hcl.Diagnostic
	for _, d := range diags {
		if d.Severity == hcl.DiagError && strings.Contains(d.Summary, summary) {
			if found != nil {
				t.Fatalf("two diagnostics about %q: %s", summary, diags.Error())
			}
			found = d
		}
	}
	if found == nil {
		t.Fatalf("no error diagnostic about %q; got: %v", summary, diags)
	}
	if found.Subject == nil || found.Subject.Start.Line != line {
		t.Fatalf("diagnostic %q at %v, want line %d", found.Summary, found.Subject, line)
	}
	if found.Subject.Filename != "test.hcl" {
		t.Errorf("diagnostic %q in file %q, want test.hcl", found.Summary, found.Subject.Filename)
	}
	return found
}

// An unknown driver is an error at the group's driver attribute that names
// the built-in drivers and where an external one would be.
func TestPrepareUnknownDriver(t *testing.T) {
	dir := t.TempDir()
	src := header(dir, "") + fmt.Sprintf(`
group "web" {
  port   = %d
  driver = "nosuch"
}
`, freePorts(t, 1))
	diags := prepare(t, src)
	d := errorAt(t, diags, `Driver "nosuch" not found`, lineOf(t, src, `driver = "nosuch"`))
	if !strings.Contains(d.Detail, "golb-driver-nosuch") || !strings.Contains(d.Detail, "process") {
		t.Errorf("detail does not say how to fix it: %q", d.Detail)
	}
	if d.Subject.Start.Column != strings.Index(`  driver = "nosuch"`, `"`)+1 {
		t.Errorf("diagnostic at column %d, want the attribute's value", d.Subject.Start.Column)
	}
}

// The process driver's ValidateConfig and the schema check of a config block
// both come back as diagnostics at the attribute concerned, from a real
// plugin subprocess.
func TestPrepareConfigBlockDiagnostics(t *testing.T) {
	dir := t.TempDir()
	base := freePorts(t, 10)
	src := header(dir, "") + fmt.Sprintf(`
group "missing" {
  port = %d
  config {
    command = ["/nonexistent/golb-test-server", "-v"]
  }
}

group "unknown" {
  port = %d
  config {
    nope = 1
  }
}

group "fine" {
  port = %d
  config {
    env = { A = "b" }
  }
}

group "shadowed" {
  port = %d
  config {
    env = { GOLB_FAILURE_RATE = "bogus" }
  }
}
`, base, base+3, base+6, base+8)
	diags := prepare(t, src)
	d := errorAt(t, diags, `program "/nonexistent/golb-test-server" not found`, lineOf(t, src, "command = "))
	if !strings.HasPrefix(d.Summary, "process driver:") {
		t.Errorf("summary %q does not name the driver", d.Summary)
	}
	d = errorAt(t, diags, "Unsupported argument", lineOf(t, src, "nope = 1"))
	for _, name := range []string{"command", "env", "dir"} {
		if !strings.Contains(d.Detail, name) {
			t.Errorf("unknown attribute: detail %q does not list %q", d.Detail, name)
		}
	}
	// The app block's settings would silently win over the built-in
	// worker's env: an error, not a surprise.
	errorAt(t, diags, "env sets GOLB_FAILURE_RATE", lineOf(t, src, "GOLB_FAILURE_RATE = "))
	if n := len(diags.Errs()); n != 3 {
		t.Errorf("%d errors, want 3 (group \"fine\" is fine): %s", n, diags.Error())
	}
}

// A valid config prepares with no diagnostic and records the driver.
func TestPrepareValid(t *testing.T) {
	src := header(t.TempDir(), "") + groupHCL("ok", 1, freePorts(t, 1), "1ms")
	ta := newTestAgent(t, parseConfig(t, src))
	defer ta.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if diags := ta.Prepare(ctx); len(diags) != 0 {
		t.Fatalf("diagnostics on a valid config: %s", diags.Error())
	}
	ds, _ := ta.Store().Drivers(nil)
	if len(ds) != 1 || ds[0].Name != "process" || !ds[0].Running || ds[0].PluginPID == 0 || !ds[0].Fingerprint.Healthy {
		t.Fatalf("driver record: %+v", ds)
	}
	if !alive(ds[0].PluginPID) {
		t.Fatalf("plugin pid %d not running", ds[0].PluginPID)
	}
	spec := ta.groups["ok"]
	if spec == nil || spec.hash == "" || spec.env["GOLB_AVG_DELAY"] != "1ms" || spec.env["GOLB_FAILURE_RATE"] != "0" {
		t.Fatalf("group spec: %+v", spec)
	}
	ta.Close()
	deadline := time.Now().Add(10 * time.Second)
	for alive(ds[0].PluginPID) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(ds[0].PluginPID) {
		t.Errorf("Close left the plugin (pid %d) running", ds[0].PluginPID)
	}
}

// Regression: config { env = { GOLB_DRAIN_TIMEOUT = "bogus" } } validated,
// and then every built-in worker exited on it; PORT or BIND_ADDR in env
// were silently overridden. What golb sets is an error at its name: PORT,
// BIND_ADDR and GOLB_WORKER_ID for any group, every GOLB_* name for the
// built-in worker. A group running its own program keeps other GOLB_*
// names: they are its own (TestOwnCommandGetsItsOwnEnv).
func TestEnvGolbDrainTimeoutBogusCrashesTheWorker(t *testing.T) {
	dir := t.TempDir()
	base := freePorts(t, 4)
	src := header(dir, "") + fmt.Sprintf(`
group "builtin" {
  port = %d
  config {
    env = {
      GOLB_DRAIN_TIMEOUT = "bogus"
      PORT               = "1"
      LOG_LEVEL          = "debug"
    }
  }
}

group "own" {
  port = %d
  config {
    command = [%q, "worker"]
    env = {
      GOLB_FAILURE_RATE = "1"
      BIND_ADDR         = "0.0.0.0"
    }
  }
}
`, base, base+2, os.Args[0])
	diags := prepare(t, src)
	errorAt(t, diags, "env sets GOLB_DRAIN_TIMEOUT, a setting golb keeps", lineOf(t, src, "GOLB_DRAIN_TIMEOUT = "))
	errorAt(t, diags, "env sets PORT, which golb sets", lineOf(t, src, `PORT               = "1"`))
	errorAt(t, diags, "env sets BIND_ADDR, which golb sets", lineOf(t, src, "BIND_ADDR "))
	if n := len(diags.Errs()); n != 3 {
		t.Errorf("%d errors, want 3 (LOG_LEVEL, and the own program's GOLB_FAILURE_RATE, are fine): %s", n, diags.Error())
	}
}

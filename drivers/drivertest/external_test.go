package drivertest_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/drivertest"
)

// exampleDir is the out-of-tree driver of examples/custom-driver: a module of
// its own, built here with the go tool exactly as its author would build it.
const exampleDir = "../../examples/custom-driver"

// TestExternalDriverBwrap builds the example bwrap driver (a separate module
// that imports only the SDK) and runs the conformance suite against the
// resulting golb-driver-bwrap binary, as golb would run it from plugin_dir.
func TestExternalDriverBwrap(t *testing.T) {
	dir, err := filepath.Abs(exampleDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		// A copy of golb from the module cache has no nested modules.
		t.Skipf("the example driver is not here (%v)", err)
	}
	if _, err := exec.LookPath("bwrap"); err != nil {
		skipOrFail(t, "bwrap not found on PATH: install bubblewrap (apt-get install bubblewrap)")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go tool is needed to build the example driver: %v", err)
	}

	bin := t.TempDir()
	plugin, worker := filepath.Join(bin, "golb-driver-bwrap"), filepath.Join(bin, "worker")
	for _, b := range []struct{ out, pkg string }{
		{plugin, "./cmd/golb-driver-bwrap"},
		{worker, "./testdata/worker"},
	} {
		cmd := exec.Command(goTool, "build", "-o", b.out, b.pkg)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s in %s: %v\n%s", b.pkg, dir, err, out)
		}
	}

	launch := func(t *testing.T) *drivers.Client {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := drivers.Launch(ctx, drivers.ClientConfig{Cmd: exec.Command(plugin)})
		if err != nil {
			t.Fatalf("launching %s: %v", plugin, err)
		}
		return c
	}

	// The driver's own Fingerprint says whether bwrap can sandbox here.
	probe := launch(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	fp, err := probe.Fingerprint(ctx)
	cancel()
	probe.Kill()
	if err != nil {
		t.Fatalf("Fingerprint: %v", err)
	}
	if !fp.Healthy {
		skipOrFail(t, fp.Detail)
	}
	t.Logf("runtime: %s", fp.Detail)

	cfg := func(v map[string]any) json.RawMessage {
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	drivertest.Run(t, drivertest.Harness{
		Launch:      launch,
		Serving:     cfg(map[string]any{"command": []string{worker}}),
		IgnoresTERM: cfg(map[string]any{"command": []string{worker}, "env": map[string]string{"GOLB_TEST_IGNORE_TERM": "1"}}),
		BadConfig:   cfg(map[string]any{"command": []string{"/no/such/program"}}),
		Crashing:    cfg(map[string]any{"command": []string{"sh", "-c", "echo 'worker: bad setting, giving up' >&2; sleep 1; exit 3"}}),
		CrashOutput: "worker: bad setting, giving up",
		IdentityKey: "pid",
	})
}

// skipOrFail skips with reason, or fails when GOLB_REQUIRE (a comma list)
// names bwrap, as CI sets it.
func skipOrFail(t *testing.T, reason string) {
	t.Helper()
	for _, name := range strings.Split(os.Getenv("GOLB_REQUIRE"), ",") {
		if strings.TrimSpace(name) == "bwrap" {
			t.Fatalf("GOLB_REQUIRE names bwrap, but bwrap cannot be used: %s", reason)
		}
	}
	t.Skipf("bwrap cannot be used (set GOLB_REQUIRE=bwrap to fail instead): %s", reason)
}

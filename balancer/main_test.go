package balancer

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// busyEnv, set to 1, runs the package's tests as if many connections were
// open: every wait then goes the way a busy balancer's does (no read
// buffer held while waiting, and an answer a watch deadline late waited
// for on a goroutine of its own, suspend.go), so that every behaviour the
// tests check is checked on that path too. TestEverythingWhenBusy runs
// them so.
const busyEnv = "GOLB_TEST_BUSY"

func TestMain(m *testing.M) {
	if os.Getenv(heldWorkerEnv) == "1" {
		heldWorker() // BenchmarkHeldConns's child process
	}
	if os.Getenv(busyEnv) == "1" {
		busyConns.Store(-1)
	}
	os.Exit(m.Run())
}

// TestEverythingWhenBusy runs this package's tests again, in a child
// process with busyEnv set.
func TestEverythingWhenBusy(t *testing.T) {
	if os.Getenv(busyEnv) == "1" {
		t.Skip("this is the busy run")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	timeout := 10 * time.Minute
	if d, ok := t.Deadline(); ok {
		timeout = time.Until(d) - 30*time.Second
	}
	cmd := exec.Command(os.Args[0], "-test.count=1", "-test.timeout="+timeout.String())
	cmd.Env = append(os.Environ(), busyEnv+"=1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the tests with %s=1: %v\n%s", busyEnv, err, out)
	}
	if !strings.Contains(string(out), "PASS") {
		t.Fatalf("the tests with %s=1 did not pass:\n%s", busyEnv, out)
	}
	t.Logf("every test passed again with %s=1, in %s", busyEnv, time.Since(start).Round(time.Second))
}

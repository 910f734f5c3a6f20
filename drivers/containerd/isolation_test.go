package containerd_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/containerd"
	"github.com/golb/golb/drivers/containerd/ctrdtest"
	"github.com/golb/golb/drivers/drivertest"
	"github.com/golb/golb/internal/testutil"
)

// TestEnvTeardownLeavesNothing: a test that ends with a task running and
// its plugin killed still leaves nothing once its Env is cleaned: no task
// process, no mount, no cgroup, no runc state, no namespace.
func TestEnvTeardownLeavesNothing(t *testing.T) {
	var env ctrdtest.Env
	var pid string
	t.Run("leaky", func(t *testing.T) {
		env = ctrdtest.NewEnv(t)
		c := launchIn(t, env, map[string]string{"worker_binary": staticWorker(t)})
		spec := drivers.WorkerSpec{ID: "leaky", Group: "g", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1"}
		h, err := c.Start(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		drivertest.WaitHTTP(t, "http://"+h.Address+"/healthz", 30*time.Second)
		st, err := c.Inspect(context.Background(), spec.ID)
		if err != nil {
			t.Fatal(err)
		}
		pid = st.Details["pid"]
		if err := syscall.Kill(c.Pid(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if ctrdtest.MountsUnder(env.Daemon.Dir) == nil {
			t.Fatal("a running task has no rootfs mount under the daemon's state")
		}
	})
	if _, err := os.Stat(filepath.Join("/proc", pid)); err == nil {
		t.Fatalf("task pid %s still runs after the Env was cleaned", pid)
	}
	if left := env.Leftovers(); left != "" {
		t.Fatalf("left behind: %s", left)
	}
	for _, m := range ctrdtest.MountsUnder(env.Daemon.Dir) {
		if strings.Contains(m, env.Namespace) {
			t.Fatalf("mount %s left behind", m)
		}
	}
	if _, err := os.Stat(env.RuncRoot); !os.IsNotExist(err) {
		t.Fatalf("runc root %s left behind (%v)", env.RuncRoot, err)
	}
	cli := env.Daemon.Client(t, env.Namespace)
	nss, err := cli.NamespaceService().List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range nss {
		if ns == env.Namespace {
			t.Fatalf("namespace %s left behind", ns)
		}
	}
}

// TestDaemonRestartKeepsWatching: containerd restarted under a running
// worker (as `systemctl restart containerd` does) keeps the task, and the
// driver still sees its exit: the Wait stream is opened again.
func TestDaemonRestartKeepsWatching(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a daemon of its own")
	}
	ctrdtest.Shared(t) // skips or fails as the other tests do
	d, err := ctrdtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	})
	env := ctrdtest.EnvOn(t, d)
	// In-process, to read its log: the plugin path is the conformance
	// suite's.
	var logs testutil.SyncBuffer
	c := containerd.New(slog.New(slog.NewTextHandler(&logs, nil)))
	ctx := context.Background()
	if err := c.SetConfig(ctx, pluginConfig(t, env.Settings(map[string]string{"worker_binary": staticWorker(t)}))); err != nil {
		t.Fatal(err)
	}
	spec := drivers.WorkerSpec{ID: "survivor", Group: "g", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1"}
	h, err := c.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	drivertest.WaitHTTP(t, "http://"+h.Address+"/healthz", 30*time.Second)
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	drivertest.WaitHTTP(t, "http://"+h.Address+"/healthz", 5*time.Second)
	if st, err := c.Inspect(ctx, spec.ID); err != nil || st.State != drivers.StateRunning {
		t.Fatalf("Inspect after the daemon's restart: %+v, %v", st, err)
	}
	waited := make(chan drivers.ExitResult, 1)
	go func() {
		res, _ := c.Wait(ctx, spec.ID)
		waited <- res
	}()
	if err := c.Stop(ctx, spec.ID, "SIGTERM", 10*time.Second); err != nil {
		t.Fatalf("Stop after the daemon's restart: %v", err)
	}
	select {
	case res := <-waited:
		if !res.Successful() {
			t.Fatalf("exit after SIGTERM: %v, want 0", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after Stop: the exit was missed across the daemon's restart")
	}
	if !strings.Contains(logs.String(), "stream cut, waiting again") {
		t.Errorf("the daemon's restart did not cut the Wait stream; log:\n%s", logs.String())
	}
	if err := c.Destroy(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
}

// TestHostileHandles: handles golb did not make (another version, garbage
// state, a container id that is a path) are stale, never a panic.
func TestHostileHandles(t *testing.T) {
	d := containerd.New(nil)
	ctx := context.Background()
	for _, hd := range []*drivers.Handle{
		nil,
		{ID: "x", StateVersion: 99, State: []byte(`{}`)},
		{ID: "x", StateVersion: 1, State: []byte(`not json`)},
		{ID: "x", StateVersion: 1, State: []byte(`{"container_id":""}`)},
		{ID: "x", StateVersion: 1, State: []byte(`{"container_id":"../../etc"}`)},
		{ID: "x", StateVersion: 1, State: json.RawMessage(`{"container_id":"` + strings.Repeat("a", 100) + `"}`)},
	} {
		if err := d.Recover(ctx, hd); !errors.Is(err, drivers.ErrStaleHandle) {
			t.Errorf("Recover(%+v) = %v, want ErrStaleHandle", hd, err)
		}
	}
}

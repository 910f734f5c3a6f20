package containerd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/oci"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/containerd"
	"github.com/golb/golb/drivers/containerd/ctrdtest"
	"github.com/golb/golb/drivers/drivertest"
	"github.com/golb/golb/internal/testutil"
)

// inProcess is a driver in this process, configured for env with its data
// in dataDir.
func inProcess(t *testing.T, env ctrdtest.Env, dataDir string, logger *slog.Logger) *containerd.Driver {
	t.Helper()
	d := containerd.New(logger)
	raw := mustJSON(env.Settings(map[string]string{"worker_binary": staticWorker(t)}))
	if err := d.SetConfig(context.Background(), drivers.PluginConfig{DataDir: dataDir, Settings: raw}); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPruneKeepsLogOfUnrecoveredWorker: pruning took every log whose worker
// this plugin instance did not track for a gone worker's and kept the 20
// newest, so after a plugin restart, with 20 newer logs of gone workers (a
// crash-looping group), destroying one worker unlinked the live log of a
// quiet one not recovered yet. Workers with a container are live now.
func TestPruneKeepsLogOfUnrecoveredWorker(t *testing.T) {
	env := ctrdtest.NewEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	first := inProcess(t, env, dataDir, nil)
	var hs []*drivers.Handle
	for _, id := range []string{"quiet", "unwanted"} {
		h, err := first.Start(ctx, drivers.WorkerSpec{ID: id, Group: "prune", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	drivertest.WaitHTTP(t, "http://"+hs[0].Address+"/healthz", 30*time.Second)
	logs := filepath.Join(dataDir, "logs")
	quiet := filepath.Join(logs, "quiet.log")
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(quiet, old, old); err != nil {
		t.Fatal(err)
	}
	for i := range 25 { // a crash-looping group's
		p := filepath.Join(logs, fmt.Sprintf("crashed-%d.log", i))
		if err := os.WriteFile(p, []byte("bad setting\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The plugin restarts; core destroys the unwanted worker before it
	// recovers the quiet one.
	second := inProcess(t, env, dataDir, nil)
	if err := second.Destroy(ctx, "unwanted"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(quiet); err != nil {
		t.Fatalf("the live log of the unrecovered worker was pruned: %v", err)
	}
	ents, _ := os.ReadDir(logs)
	if len(ents) != 20+1 {
		t.Fatalf("%d logs left, want the 20 newest of gone workers and quiet's", len(ents))
	}
	if err := second.Recover(ctx, hs[0]); err != nil {
		t.Fatal(err)
	}
	if err := second.Destroy(ctx, "quiet"); err != nil {
		t.Fatal(err)
	}
}

// TestWorkerLabelOutsideLogDirIsSkipped: the log path was built from the
// golb.worker label unchecked, so a container labelled
// "../../../etc/shadow" had another file's tail read as its worker's
// output into `golb status`. Such a container is skipped, logged once.
func TestWorkerLabelOutsideLogDirIsSkipped(t *testing.T) {
	env := ctrdtest.NewEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli := env.Daemon.Client(t, env.Namespace)
	labels := map[string]string{drivers.LabelManaged: "true", drivers.LabelGroup: "evil", drivers.LabelWorker: "../../../etc/shadow",
		"golb.address": "127.0.0.1:1", "golb.instance": "evil"}
	if _, err := cli.NewContainer(ctx, "golb-evil", client.WithContainerLabels(labels),
		client.WithRuntime("io.containerd.runc.v2", nil), client.WithSpec(&oci.Spec{Version: "1.0.2"})); err != nil {
		t.Fatal(err)
	}
	var logs testutil.SyncBuffer
	d := inProcess(t, env, t.TempDir(), slog.New(slog.NewTextHandler(&logs, nil)))
	for range 2 {
		hs, err := d.List(ctx, map[string]string{drivers.LabelManaged: "true", "golb.instance": "evil"})
		if err != nil || len(hs) != 0 {
			t.Fatalf("List = %v, %v; want the container skipped", hs, err)
		}
	}
	if n := strings.Count(logs.String(), "golb-evil"); n != 1 {
		t.Fatalf("the skipped container is logged %d times, want once:\n%s", n, logs.String())
	}
	hd := &drivers.Handle{ID: "../../../etc/shadow", Driver: containerd.Name, StateVersion: 1,
		State: json.RawMessage(`{"version":1,"container_id":"golb-evil"}`)}
	if err := d.Recover(ctx, hd); !errors.Is(err, drivers.ErrStaleHandle) {
		t.Fatalf("Recover(handle of a bad id) = %v, want ErrStaleHandle", err)
	}
}

// TestNonLoopbackBindAddrRefused: Start bound the worker to whatever
// BindAddr said, though golb's workers listen on loopback only: another
// address is a config error, refused before containerd is asked anything.
func TestNonLoopbackBindAddrRefused(t *testing.T) {
	d := containerd.New(nil)
	for _, addr := range []string{"0.0.0.0", "192.0.2.7", "::", "example.com"} {
		_, err := d.Start(context.Background(), drivers.WorkerSpec{ID: "bind-1", Group: "bind", Port: 1, BindAddr: addr})
		if !errors.Is(err, drivers.ErrBadConfig) || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("Start with BindAddr %q: %v, want ErrBadConfig about loopback", addr, err)
		}
	}
}

package containerd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/containerd"
	"github.com/golb/golb/drivers/containerd/ctrdtest"
	"github.com/golb/golb/drivers/drivertest"
	golbimage "github.com/golb/golb/drivers/internal/image"
)

func TestFingerprintReportsDaemonVersion(t *testing.T) {
	env := ctrdtest.NewEnv(t)
	c := launchIn(t, env, nil)
	fp, err := c.Fingerprint(context.Background())
	if err != nil || !fp.Healthy {
		t.Fatalf("Fingerprint = %+v, %v; want healthy", fp, err)
	}
	if !strings.Contains(fp.Detail, env.Daemon.Version) || fp.Attrs["version"] != env.Daemon.Version || fp.Attrs["namespace"] != env.Namespace {
		t.Fatalf("Fingerprint %+v does not report containerd %s in namespace %s", fp, env.Daemon.Version, env.Namespace)
	}
	t.Logf("fingerprint: %s", fp.Detail)
}

// TestMissingImageNamesFix: golb never pulls, so a missing image is a config
// error that says how to get the image into the namespace.
func TestMissingImageNamesFix(t *testing.T) {
	env := ctrdtest.NewEnv(t)
	c := launchIn(t, env, nil)
	ctx := context.Background()
	raw := json.RawMessage(`{"image":"golb-no-such-image:1"}`)
	diags, err := c.ValidateConfig(ctx, raw)
	if err != nil || len(diags) != 1 || diags[0].Attribute != "image" || !strings.Contains(diags[0].Detail, "ctr -n "+env.Namespace+" images import") {
		t.Fatalf("ValidateConfig = %v, %v; want one image diagnostic naming ctr images import", diags, err)
	}
	spec := drivers.WorkerSpec{ID: "missing-image", Group: "g", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1", Config: raw}
	_, err = c.Start(ctx, spec)
	if !errors.Is(err, drivers.ErrBadConfig) {
		t.Fatalf("Start with a missing image: %v, want ErrBadConfig", err)
	}
	for _, want := range []string{"golb-no-such-image:1", "ctr -n " + env.Namespace + " images import"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// TestConfigImageRuns: `config { image = "name:tag" }` runs an image a user
// imported into the namespace (named as `ctr images import` names it).
func TestConfigImageRuns(t *testing.T) {
	env := ctrdtest.NewEnv(t)
	img, err := golbimage.Build(staticWorker(t), golbimage.Options{Repository: "golb-test-app"})
	if err != nil {
		t.Fatal(err)
	}
	cli := env.Daemon.Client(t, env.Namespace)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(img.WriteDockerArchive(pw)) }()
	if _, err := cli.Import(context.Background(), pr); err != nil {
		t.Fatalf("importing the app image: %v", err)
	}
	c := launchIn(t, env, nil) // no worker_binary: the image is all it needs
	ctx := context.Background()
	raw := json.RawMessage(`{"image":"` + img.Tag + `","env":{"GOLB_AVG_DELAY":"1ms"}}`)
	if diags, err := c.ValidateConfig(ctx, raw); err != nil || len(diags) != 0 {
		t.Fatalf("ValidateConfig: %v, %v", diags, err)
	}
	spec := drivers.WorkerSpec{ID: "app", Group: "g", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1", Config: raw}
	h, err := c.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	drivertest.WaitHTTP(t, "http://"+h.Address+"/healthz", 30*time.Second)
	st, err := c.Inspect(ctx, spec.ID)
	if err != nil || !strings.HasSuffix(st.Details["image"], img.Tag) {
		t.Fatalf("Inspect = %+v, %v; want image %s", st, err, img.Tag)
	}
	if err := c.Destroy(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
}

// TestWorkerImageImportedOnce: the worker image is imported once per
// binary: not again by the same instance, nor by a new one (it is found by
// its config digest), but again when the binary changes.
func TestWorkerImageImportedOnce(t *testing.T) {
	env := ctrdtest.NewEnv(t)
	bin := filepath.Join(t.TempDir(), "worker")
	data, err := os.ReadFile(staticWorker(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	newDriver := func() *containerd.Driver {
		d := containerd.New(nil)
		if err := d.SetConfig(ctx, pluginConfig(t, env.Settings(map[string]string{"worker_binary": bin}))); err != nil {
			t.Fatal(err)
		}
		return d
	}
	ensure := func(d *containerd.Driver, wantImported bool) string {
		t.Helper()
		begin := time.Now()
		name, imported, err := d.WorkerImage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if imported != wantImported {
			t.Fatalf("WorkerImage imported = %v, want %v", imported, wantImported)
		}
		t.Logf("%s (imported %v) in %v", name, imported, time.Since(begin))
		return name
	}
	d := newDriver()
	first := ensure(d, true)
	ensure(d, false)
	ensure(newDriver(), false)
	// A rebuilt binary: new content, a new image.
	if err := os.WriteFile(bin, append(data, []byte("golb-test-rebuilt")...), 0o755); err != nil {
		t.Fatal(err)
	}
	if second := ensure(d, true); second == first {
		t.Fatalf("a changed binary kept image %s", first)
	}
}

// TestExitedMeanwhileIsReported: a task that exits while no plugin runs is
// listed, refused by Recover with how it ended, and Destroy then leaves no
// container, task or snapshot of it.
func TestExitedMeanwhileIsReported(t *testing.T) {
	env := ctrdtest.NewEnv(t)
	first := launchIn(t, env, map[string]string{"worker_binary": staticWorker(t)})
	ctx := context.Background()
	spec := drivers.WorkerSpec{ID: "meanwhile", Group: "gone", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1",
		Labels: map[string]string{"golb.instance": "test"}}
	h, err := first.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	drivertest.WaitHTTP(t, "http://"+h.Address+"/healthz", 30*time.Second)
	if err := syscall.Kill(first.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	cli := env.Daemon.Client(t, env.Namespace)
	cid := containerd.ContainerID(spec.ID)
	ctr, err := cli.LoadContainer(ctx, cid)
	if err != nil {
		t.Fatal(err)
	}
	labels, err := ctr.Labels(ctx)
	if err != nil || labels["golb.managed"] != "true" || labels["golb.group"] != "gone" || labels["golb.worker"] != spec.ID || labels["golb.instance"] != "test" {
		t.Fatalf("container labels %v, %v: want golb's", labels, err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	exited, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited

	second := launchIn(t, env, nil)
	hs, err := second.List(ctx, map[string]string{"golb.managed": "true", "golb.instance": "test"})
	if err != nil || len(hs) != 1 || hs[0].ID != spec.ID || hs[0].Address != h.Address {
		t.Fatalf("List = %v, %v; want the exited worker, so that golb hears of it", hs, err)
	}
	err = second.Recover(ctx, hs[0])
	if !errors.Is(err, drivers.ErrStaleHandle) || !strings.Contains(err.Error(), "exited meanwhile") || !strings.Contains(err.Error(), fmt.Sprintf("signal %d", syscall.SIGKILL)) {
		t.Fatalf("Recover of an exited task: %v, want ErrStaleHandle saying how it ended", err)
	}
	t.Logf("recover: %v", err)
	if err := second.Destroy(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.LoadContainer(ctx, cid); !errdefs.IsNotFound(err) {
		t.Fatalf("container %s still there after Destroy (%v)", cid, err)
	}
	if _, err := cli.SnapshotService("overlayfs").Stat(ctx, cid); !errdefs.IsNotFound(err) {
		t.Fatalf("snapshot %s still there after Destroy (%v)", cid, err)
	}
	if hs, err := second.List(ctx, map[string]string{"golb.instance": "test"}); err != nil || len(hs) != 0 {
		t.Fatalf("List after Destroy = %v, %v", hs, err)
	}
}

// BenchmarkStartToFirst200 measures Start through the plugin until the new
// task answers GET /healthz with 200 (worker image already imported).
func BenchmarkStartToFirst200(b *testing.B) {
	env := ctrdtest.NewEnv(b)
	c := launchIn(b, env, map[string]string{"worker_binary": staticWorker(b)})
	ctx := context.Background()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	run := func() {
		spec := drivers.WorkerSpec{ID: fmt.Sprintf("bench-%d", time.Now().UnixNano()), Group: "bench", Port: drivertest.FreePort(b), BindAddr: "127.0.0.1"}
		h, err := c.Start(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		defer func() {
			b.StopTimer()
			_ = c.Destroy(ctx, spec.ID)
			b.StartTimer()
		}()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			resp, err := client.Get("http://" + h.Address + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
		b.Fatalf("worker %s never answered 200", spec.ID)
	}
	run() // import the worker image outside the measurement
	for b.Loop() {
		run()
	}
}

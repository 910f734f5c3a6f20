package docker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/docker"
	"github.com/golb/golb/drivers/drivertest"
	golbimage "github.com/golb/golb/drivers/internal/image"
)

// newDriver is an in-process driver (no plugin) whose worker image comes from bin.
func newDriver(t testing.TB, bin string) *docker.Driver {
	t.Helper()
	d := docker.New(nil)
	if err := d.SetConfig(context.Background(), settings(t, map[string]string{"worker_binary": bin})); err != nil {
		t.Fatal(err)
	}
	return d
}

// removeImage removes ref (if no container uses it) and reports whether it was there.
func removeImage(t testing.TB, cli *client.Client, ref string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
		t.Fatalf("removing image %s: %v", ref, err)
	}
}

// TestWorkerImageLoadedOnce: the engine's image ID is the builder's
// (reproducible: computed here independently), the image is loaded once, a
// new driver instance finds it instead of loading again, and a changed binary
// gets a new image.
func TestWorkerImageLoadedOnce(t *testing.T) {
	cli := testClient(t)
	ctx := context.Background()
	bin := filepath.Join(t.TempDir(), "worker")
	copyFile(t, staticWorker(t), bin, 0o755)
	want, err := golbimage.Build(bin, golbimage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	removeImage(t, cli, want.Tag)

	d := newDriver(t, bin)
	ref, loaded, err := d.WorkerImage(ctx)
	if err != nil || !loaded || ref != want.Tag {
		t.Fatalf("first WorkerImage = %s, loaded %v, %v; want %s loaded", ref, loaded, err, want.Tag)
	}
	ins, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if ins.ID != want.ID || ins.Os != "linux" || ins.Architecture != want.Arch {
		t.Fatalf("engine has %s %s/%s, builder made %s linux/%s", ins.ID, ins.Os, ins.Architecture, want.ID, want.Arch)
	}
	if _, loaded, err := d.WorkerImage(ctx); err != nil || loaded {
		t.Fatalf("second WorkerImage: loaded %v, %v; want no load", loaded, err)
	}
	if ref2, loaded, err := newDriver(t, bin).WorkerImage(ctx); err != nil || loaded || ref2 != ref {
		t.Fatalf("new instance: %s loaded %v, %v; want the same image, not loaded", ref2, loaded, err)
	}

	// A changed binary (one byte appended) is a new image.
	data, _ := os.ReadFile(bin)
	if err := os.WriteFile(bin, append(data, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	ref3, loaded, err := d.WorkerImage(ctx)
	if err != nil || !loaded || ref3 == ref {
		t.Fatalf("after the binary changed: %s loaded %v, %v; want a new image loaded", ref3, loaded, err)
	}
	removeImage(t, cli, ref3)
	removeImage(t, cli, ref)
}

// TestDynamicBinaryRunsInEngine: a dynamically linked binary gets its loader
// and libraries (here also one needed only by another library:
// /bin/ls -> libselinux -> libpcre2), and runs in the otherwise empty image.
func TestDynamicBinaryRunsInEngine(t *testing.T) {
	cli := testClient(t)
	ctx := context.Background()
	img, err := golbimage.Build("/bin/ls", golbimage.Options{})
	if errors.Is(err, golbimage.ErrNotELF) {
		t.Skipf("no usable /bin/ls: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !img.Dynamic {
		t.Skip("/bin/ls is static here")
	}
	d := newDriver(t, "/bin/ls")
	spec := drivers.WorkerSpec{
		ID: "dynamic-ls", Group: "dynamic", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1",
		// The entrypoint would be `ls worker`; list the loader instead.
		Config: json.RawMessage(`{"command":["/golb","-d","/lib64","/tmp"]}`),
	}
	if _, err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.Destroy(context.Background(), spec.ID)
		removeImage(t, cli, img.Tag)
	})
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := d.Wait(wctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Successful() {
		t.Fatalf("/bin/ls in the worker image: %v; see `docker logs golb-%s`", res, spec.ID)
	}
	t.Logf("/bin/ls ran in an image of %d files: %v", len(img.Files), res)
}

// TestDynamicWorkerServes runs the test binary itself, dynamically linked when
// built with -race or cgo, as the worker: it must serve in the empty image.
func TestDynamicWorkerServes(t *testing.T) {
	cli := testClient(t)
	ctx := context.Background()
	img, err := golbimage.Build(os.Args[0], golbimage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !img.Dynamic {
		t.Skip("the test binary is statically linked (run with -race to cover this)")
	}
	d := newDriver(t, os.Args[0])
	spec := drivers.WorkerSpec{ID: "dynamic-worker", Group: "dynamic", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1",
		Env: map[string]string{"GOLB_AVG_DELAY": "1ms"}}
	h, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.Destroy(context.Background(), spec.ID)
		removeImage(t, cli, img.Tag)
	})
	begin := time.Now()
	drivertest.WaitHTTP(t, "http://"+h.Address+"/healthz", 60*time.Second)
	t.Logf("dynamic worker (%d files in the image) served after %v", len(img.Files), time.Since(begin))
}

// TestImageLoadSurfacesErrors: the engine answers 200 to a load and reports
// failure in its message stream; the failure must come back as an error.
func TestImageLoadSurfacesErrors(t *testing.T) {
	cli := testClient(t)
	ctx := context.Background()

	// A tar whose manifest names files that are not in it.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	manifest := []byte(`[{"Config":"sha256:0000000000000000000000000000000000000000000000000000000000000000","RepoTags":["golb-corrupt:1"],"Layers":["missing.tar"]}]`)
	_ = tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(manifest)), Typeflag: tar.TypeReg})
	_, _ = tw.Write(manifest)
	_ = tw.Close()

	for name, archive := range map[string][]byte{
		"garbage":         bytes.Repeat([]byte("not a tar archive "), 100),
		"missing entries": buf.Bytes(),
		"empty":           nil,
	} {
		loaded, err := docker.LoadArchive(ctx, cli, bytes.NewReader(archive))
		if err == nil {
			t.Errorf("%s archive: loaded %v without an error", name, loaded)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s archive: error is not one line: %q", name, err)
		}
		t.Logf("%s archive: %v", name, err)
	}
	if _, err := cli.ImageInspect(ctx, "golb-corrupt:1"); !cerrdefs.IsNotFound(err) {
		t.Errorf("corrupt archive left image golb-corrupt:1 (%v)", err)
		removeImage(t, cli, "golb-corrupt:1")
	}
}

// BenchmarkImageBuildLoad measures building the worker image from the static
// test worker and loading it into an engine that does not have it.
func BenchmarkImageBuildLoad(b *testing.B) {
	cli := testClient(b)
	ctx := context.Background()
	bin := staticWorker(b)
	want, err := golbimage.Build(bin, golbimage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		b.StopTimer()
		removeImage(b, cli, want.Tag)
		d := newDriver(b, bin)
		b.StartTimer()
		ref, loaded, err := d.WorkerImage(ctx)
		if err != nil || !loaded || ref != want.Tag {
			b.Fatalf("WorkerImage = %s, loaded %v, %v", ref, loaded, err)
		}
	}
	if st, err := os.Stat(bin); err == nil {
		b.ReportMetric(float64(st.Size())/(1<<20), "binary-MiB")
	}
}

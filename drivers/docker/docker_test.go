package docker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/docker"
	"github.com/golb/golb/drivers/drivertest"
	golbimage "github.com/golb/golb/drivers/internal/image"
	"github.com/golb/golb/workerapp"
)

// TestMain lets the test binary play the plugin (GOLB_TEST_PLUGIN=docker) and
// the built-in worker ("worker" argument, also inside a container), as the
// golb binary does for real.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		os.Exit(workerapp.Main(os.Args[2:], os.Getenv, os.Stderr))
	}
	if os.Getenv("GOLB_TEST_PLUGIN") == "docker" {
		drivers.Serve(docker.New(nil))
		os.Exit(0)
	}
	code := m.Run()
	if worker.path != "" {
		removeWorkerImage(worker.path)
	}
	if worker.dir != "" {
		os.RemoveAll(worker.dir)
	}
	os.Exit(code)
}

var engine struct {
	once sync.Once
	err  error
}

// requireDocker skips the test when no Docker engine answers, and fails it
// instead when GOLB_REQUIRE (a comma list) names docker, as CI sets it.
func requireDocker(t testing.TB) {
	t.Helper()
	engine.once.Do(func() {
		cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			engine.err = err
			return
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, engine.err = cli.Ping(ctx)
	})
	if engine.err == nil {
		return
	}
	for _, name := range strings.Split(os.Getenv("GOLB_REQUIRE"), ",") {
		if strings.TrimSpace(name) == "docker" {
			t.Fatalf("GOLB_REQUIRE names docker, but no Docker engine is reachable: %v", engine.err)
		}
	}
	t.Skipf("no Docker engine reachable (set GOLB_REQUIRE=docker to fail instead): %v", engine.err)
}

// testClient is the test's own Engine API client, for checks and cleanup.
func testClient(t testing.TB) *client.Client {
	t.Helper()
	requireDocker(t)
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

var worker struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// staticWorker builds testdata/worker once per test run with cgo off: a
// static binary that runs the worker app as `worker`.
func staticWorker(t testing.TB) string {
	t.Helper()
	worker.once.Do(func() {
		worker.dir, worker.err = os.MkdirTemp("", "golb-docker-test-")
		if worker.err != nil {
			return
		}
		out := filepath.Join(worker.dir, "worker")
		cmd := exec.Command(goTool(), "build", "-o", out, "./testdata/worker")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			worker.err = fmt.Errorf("%v\n%s", err, msg)
			return
		}
		worker.path = out
	})
	if worker.err != nil {
		t.Fatalf("building the static test worker: %v", worker.err)
	}
	return worker.path
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// removeWorkerImage removes the image built from bin, if no container uses it.
func removeWorkerImage(bin string) {
	img, err := golbimage.Build(bin, golbimage.Options{})
	if err != nil {
		return
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = cli.ImageRemove(ctx, img.Tag, image.RemoveOptions{PruneChildren: true})
}

func launch(t testing.TB) *drivers.Client {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "GOLB_TEST_PLUGIN=docker")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := drivers.Launch(ctx, drivers.ClientConfig{Cmd: cmd})
	if err != nil {
		t.Fatalf("launching docker driver plugin: %v", err)
	}
	return c
}

// settings is a plugin config with the given `driver "docker" { }` block.
func settings(t testing.TB, block map[string]string) drivers.PluginConfig {
	raw, _ := json.Marshal(block)
	return drivers.PluginConfig{DataDir: t.TempDir(), Settings: raw}
}

func TestConformance(t *testing.T) {
	cli := testClient(t)
	drivertest.Run(t, drivertest.Harness{
		Launch:      func(t *testing.T) *drivers.Client { return launch(t) },
		Plugin:      settings(t, map[string]string{"worker_binary": staticWorker(t)}),
		IgnoresTERM: json.RawMessage(`{"env":{"GOLB_TEST_IGNORE_TERM":"1"}}`),
		BadConfig:   json.RawMessage(`{"image":"golb-no-such-image:1"}`),
		// golb's worker refuses an argument with one line on stderr and
		// exits 2 at once: the container is gone before Wait is called.
		Crashing:     json.RawMessage(`{"command":["/golb","worker","--bogus"]}`),
		CrashOutput:  `golb worker: unexpected argument "--bogus"`,
		IdentityKey:  "container_id",
		StartTimeout: 30 * time.Second,
		// The engine's own containers of the worker, not what List says.
		Leftovers: engineLeftovers(cli),
	})
}

func TestFingerprintReportsEngineVersion(t *testing.T) {
	cli := testClient(t)
	v, err := cli.ServerVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := launch(t)
	defer c.Kill()
	ctx := context.Background()
	if err := c.SetConfig(ctx, settings(t, nil)); err != nil {
		t.Fatal(err)
	}
	fp, err := c.Fingerprint(ctx)
	if err != nil || !fp.Healthy {
		t.Fatalf("Fingerprint = %+v, %v; want healthy", fp, err)
	}
	if !strings.Contains(fp.Detail, v.Version) || fp.Attrs["version"] != v.Version || fp.Attrs["api_version"] != v.APIVersion {
		t.Fatalf("Fingerprint %+v does not report engine %s (API %s)", fp, v.Version, v.APIVersion)
	}
	t.Logf("fingerprint: %s", fp.Detail)
}

// TestUnreachableDaemon: a host where no daemon listens gives an unhealthy
// fingerprint with a one-line reason, and Start fails with
// ErrRuntimeUnavailable. It needs no engine.
func TestUnreachableDaemon(t *testing.T) {
	c := launch(t)
	defer c.Kill()
	ctx := context.Background()
	host := "unix://" + filepath.Join(t.TempDir(), "nonexistent.sock")
	if err := c.SetConfig(ctx, settings(t, map[string]string{"host": host, "worker_binary": "/bin/true"})); err != nil {
		t.Fatal(err)
	}
	checkUnavailable(t, c, host, "systemctl start docker")
}

// TestPermissionDeniedOnSocket runs the plugin as nobody against a socket only
// root may open: the fingerprint and Start name the fix.
func TestPermissionDeniedOnSocket(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to run the plugin as another user")
	}
	dir, err := os.MkdirTemp("", "golb-docker-perm-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Chmod(sock, 0o600); err != nil {
		t.Fatal(err)
	}
	// The plugin binary must be executable by nobody: copy it out of the
	// build cache's private directory.
	bin := filepath.Join(dir, "plugin")
	copyFile(t, os.Args[0], bin, 0o755)

	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "GOLB_TEST_PLUGIN=docker", "TMPDIR=/tmp")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := drivers.Launch(ctx, drivers.ClientConfig{Cmd: cmd})
	if err != nil {
		t.Fatalf("launching the plugin as nobody: %v", err)
	}
	defer c.Kill()
	host := "unix://" + sock
	if err := c.SetConfig(ctx, settings(t, map[string]string{"host": host, "worker_binary": "/bin/true"})); err != nil {
		t.Fatal(err)
	}
	checkUnavailable(t, c, "permission denied", "docker group")
}

// checkUnavailable asserts an unhealthy one-line fingerprint holding each of
// want, and a Start refused with ErrRuntimeUnavailable.
func checkUnavailable(t *testing.T, c *drivers.Client, want ...string) {
	t.Helper()
	ctx := context.Background()
	fp, err := c.Fingerprint(ctx)
	if err != nil {
		t.Fatalf("Fingerprint: %v", err)
	}
	if fp.Healthy || strings.Contains(fp.Detail, "\n") {
		t.Fatalf("Fingerprint = %+v, want unhealthy with a one-line detail", fp)
	}
	for _, w := range want {
		if !strings.Contains(fp.Detail, w) {
			t.Errorf("Fingerprint detail %q lacks %q", fp.Detail, w)
		}
	}
	t.Logf("fingerprint: %s", fp.Detail)
	spec := drivers.WorkerSpec{ID: "unreachable", Group: "g", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1"}
	if _, err := c.Start(ctx, spec); !errors.Is(err, drivers.ErrRuntimeUnavailable) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Start: %v, want one line wrapping ErrRuntimeUnavailable", err)
	} else {
		t.Logf("start: %v", err)
	}
	spec.Config = json.RawMessage(`{"image":"myapp:1"}`)
	if _, err := c.Start(ctx, spec); !errors.Is(err, drivers.ErrRuntimeUnavailable) {
		t.Fatalf("Start with an image: %v, want ErrRuntimeUnavailable", err)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateConfig(t *testing.T) {
	requireDocker(t)
	c := launch(t)
	defer c.Kill()
	ctx := context.Background()
	if err := c.SetConfig(ctx, settings(t, nil)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		config string
		attr   string
	}{
		{`{"command":[]}`, "command"},
		{`{"image":"Not A Reference"}`, "image"},
		{`{"image":"golb-no-such-image:1"}`, "image"},
		{`{"env":{"A=B":"c"}}`, "env"},
	} {
		diags, err := c.ValidateConfig(ctx, json.RawMessage(tc.config))
		if err != nil {
			t.Fatal(err)
		}
		if len(diags) != 1 || diags[0].Attribute != tc.attr {
			t.Errorf("ValidateConfig(%s) = %v, want one diagnostic on %q", tc.config, diags, tc.attr)
		}
	}
	diags, err := c.ValidateConfig(ctx, json.RawMessage(`{"command":["/golb","worker"],"env":{"A":"b"}}`))
	if err != nil || len(diags) != 0 {
		t.Errorf("valid config: %v, %v", diags, err)
	}
}

// TestMissingImageNamesFix: golb never pulls, so a missing image is a config
// error that says how to get the image into the engine.
func TestMissingImageNamesFix(t *testing.T) {
	requireDocker(t)
	c := launch(t)
	defer c.Kill()
	ctx := context.Background()
	if err := c.SetConfig(ctx, settings(t, nil)); err != nil {
		t.Fatal(err)
	}
	spec := drivers.WorkerSpec{ID: "missing-image", Group: "g", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1",
		Config: json.RawMessage(`{"image":"golb-no-such-image:1"}`)}
	_, err := c.Start(ctx, spec)
	if !errors.Is(err, drivers.ErrBadConfig) {
		t.Fatalf("Start with a missing image: %v, want ErrBadConfig", err)
	}
	for _, want := range []string{"golb-no-such-image:1", "docker load", "docker build"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// TestDaemonPortConflict: when the port is taken between golb's own check and
// the container start, the daemon's "port is already allocated" is
// ErrPortInUse too, and the half-made container is removed.
func TestDaemonPortConflict(t *testing.T) {
	cli := testClient(t)
	ctx := context.Background()
	d := docker.New(nil)
	if err := d.SetConfig(ctx, settings(t, map[string]string{"worker_binary": staticWorker(t)})); err != nil {
		t.Fatal(err)
	}
	d.SkipPortCheck()
	port := drivertest.FreePort(t)
	first := drivers.WorkerSpec{ID: fmt.Sprintf("portholder-%d", port), Group: "portconflict", Port: port, BindAddr: "127.0.0.1"}
	if _, err := d.Start(ctx, first); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Destroy(context.Background(), first.ID) })
	second := drivers.WorkerSpec{ID: fmt.Sprintf("portthief-%d", port), Group: "portconflict", Port: port, BindAddr: "127.0.0.1"}
	_, err := d.Start(ctx, second)
	t.Cleanup(func() { _ = d.Destroy(context.Background(), second.ID) })
	if !errors.Is(err, drivers.ErrPortInUse) {
		t.Fatalf("second Start on port %d: %v, want ErrPortInUse", port, err)
	}
	t.Logf("daemon conflict: %v", err)
	if _, err := cli.ContainerInspect(ctx, "golb-"+second.ID); !cerrdefs.IsNotFound(err) {
		t.Fatalf("the failed start left container golb-%s behind (%v)", second.ID, err)
	}
}

// BenchmarkStartToFirst200 measures Start through the plugin until the new
// container answers GET /healthz with 200 (worker image already loaded).
func BenchmarkStartToFirst200(b *testing.B) {
	requireDocker(b)
	c := launch(b)
	defer c.Kill()
	ctx := context.Background()
	if err := c.SetConfig(ctx, settings(b, map[string]string{"worker_binary": staticWorker(b)})); err != nil {
		b.Fatal(err)
	}
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
	run() // load the worker image outside the measurement
	for b.Loop() {
		run()
	}
}

package containerd_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/containerd"
	"github.com/golb/golb/drivers/drivertest"
)

// TestHostileSettings: settings no daemon could use are refused by
// SetConfig with ErrBadConfig and one line, never a panic. It needs no
// daemon.
func TestHostileSettings(t *testing.T) {
	ctx := context.Background()
	long := "/" + strings.Repeat("a", 200)
	for _, raw := range []string{
		`[1,2]`,
		`{"address":"relative.sock"}`,
		`{"address":"` + long + `"}`,
		`{"address":"/run/x\u0000y"}`,
		`{"address":7}`,
		`{"namespace":"../moby"}`,
		`{"namespace":"a b"}`,
		`{"namespace":"moby"}`,
		`{"namespace":"k8s.io"}`,
		`{"namespace":"-x"}`,
		`{"namespace":"` + strings.Repeat("n", 80) + `"}`,
		`{"runc_root":"relative/dir"}`,
		`{"cgroup_parent":"golb"}`,
		`{"cgroup_parent":"/golb/../../x"}`,
		`{"cgroup_parent":"/a:b"}`,
		`{"worker_binary":"/nonexistent/golb"}`,
		`{"worker_binary":"/"}`,
	} {
		d := containerd.New(nil)
		err := d.SetConfig(ctx, drivers.PluginConfig{DataDir: t.TempDir(), Settings: json.RawMessage(raw)})
		if !errors.Is(err, drivers.ErrBadConfig) || strings.Contains(err.Error(), "\n") {
			t.Errorf("SetConfig(%s) = %v, want one line wrapping ErrBadConfig", raw, err)
		}
	}
	d := containerd.New(nil)
	if err := d.SetConfig(ctx, drivers.PluginConfig{Settings: json.RawMessage(`{"address":"unix:///run/containerd/containerd.sock","namespace":"golb.prod-1","cgroup_parent":"/golb/"}`)}); err != nil {
		t.Fatalf("valid settings refused: %v", err)
	}
}

// TestHostileGroupConfig: config blocks and image names no daemon could use
// are diagnostics or ErrBadConfig, never a panic or a call to the daemon.
func TestHostileGroupConfig(t *testing.T) {
	ctx := context.Background()
	d := containerd.New(nil)
	sock := filepath.Join(t.TempDir(), "none.sock")
	if err := d.SetConfig(ctx, drivers.PluginConfig{DataDir: t.TempDir(), Settings: json.RawMessage(`{"address":"` + sock + `"}`)}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ config, attr string }{
		{`{"command":[]}`, "command"},
		{`{"command":[""]}`, "command"},
		{`{"image":"Not A Reference"}`, "image"},
		{`{"image":"Upper:1"}`, "image"},
		{`{"image":"a\u0000b"}`, "image"},
		{`{"image":"` + strings.Repeat("x", 600) + `"}`, "image"},
		{`{"image":"app@sha256:1234"}`, "image"},
		{`{"env":{"A=B":"c"}}`, "env"},
		{`{"env":{"":"c"}}`, "env"},
		{`{"env":{"A":"b\u0000c"}}`, "env"},
		{`{"command":["/app","a\u0000b"]}`, "command"},
		{`{"image":3}`, ""},
	} {
		diags, err := d.ValidateConfig(ctx, json.RawMessage(tc.config))
		if err != nil {
			t.Fatal(err)
		}
		if len(diags) != 1 || diags[0].Attribute != tc.attr {
			t.Errorf("ValidateConfig(%s) = %v, want one diagnostic on %q", tc.config, diags, tc.attr)
		}
		spec := drivers.WorkerSpec{ID: "hostile", Group: "g", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1", Config: json.RawMessage(tc.config)}
		if _, err := d.Start(ctx, spec); !errors.Is(err, drivers.ErrBadConfig) {
			t.Errorf("Start with %s: %v, want ErrBadConfig", tc.config, err)
		}
	}
	if diags, err := d.ValidateConfig(ctx, json.RawMessage(`{"image":"myapp:1.2","command":["/app","-v"],"env":{"A":"b"}}`)); err != nil || len(diags) != 0 {
		t.Errorf("valid config: %v, %v (an unreachable daemon is Fingerprint's to report)", diags, err)
	}
}

// TestUnreachableDaemon: a missing socket, and a socket nothing listens on,
// give an unhealthy fingerprint naming the fix, and Start fails with
// ErrRuntimeUnavailable. It needs no daemon.
func TestUnreachableDaemon(t *testing.T) {
	dir := t.TempDir()
	c := launch(t)
	defer c.Kill()
	missing := filepath.Join(dir, "missing.sock")
	if err := c.SetConfig(context.Background(), pluginConfig(t, map[string]string{"address": missing, "worker_binary": "/bin/true"})); err != nil {
		t.Fatal(err)
	}
	checkUnavailable(t, c, missing, "does not exist", "systemctl start containerd", `driver "containerd" { address`)

	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if err := c.SetConfig(context.Background(), pluginConfig(t, map[string]string{"address": stale, "worker_binary": "/bin/true"})); err != nil {
		t.Fatal(err)
	}
	checkUnavailable(t, c, stale, "nothing listens", "systemctl start containerd")
}

// TestDaemonTooOld: a daemon older than 1.6 is named with its version; one
// that lacks the version service says what it lacks.
func TestDaemonTooOld(t *testing.T) {
	dir := t.TempDir()
	old := fakeDaemon(t, filepath.Join(dir, "old.sock"), &oldVersion{version: "1.5.18"})
	bare := fakeDaemon(t, filepath.Join(dir, "bare.sock"), nil)
	c := launch(t)
	defer c.Kill()
	ctx := context.Background()
	if err := c.SetConfig(ctx, pluginConfig(t, map[string]string{"address": old, "worker_binary": "/bin/true"})); err != nil {
		t.Fatal(err)
	}
	checkUnavailable(t, c, "containerd 1.5.18", "too old", "1.6 or newer")
	if err := c.SetConfig(ctx, pluginConfig(t, map[string]string{"address": bare, "worker_binary": "/bin/true"})); err != nil {
		t.Fatal(err)
	}
	checkUnavailable(t, c, "does not implement", "1.6 or newer")
}

// TestNotContainerd: a socket that speaks something else (an HTTP/1.1
// server, as Docker's API socket is) is one line, within the fingerprint's
// bound, and never a hang.
func TestNotContainerd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "http.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_, _ = conn.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
				_, _ = io.Copy(io.Discard, conn)
			}()
		}
	}()
	c := launch(t)
	defer c.Kill()
	if err := c.SetConfig(context.Background(), pluginConfig(t, map[string]string{"address": sock, "worker_binary": "/bin/true"})); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	checkUnavailable(t, c, sock, "is this containerd's gRPC socket?")
	if took := time.Since(begin); took > 40*time.Second {
		t.Fatalf("a socket that is not containerd took %v to refuse", took)
	}
}

type oldVersion struct {
	versionapi.UnimplementedVersionServer
	version string
}

func (v *oldVersion) Version(context.Context, *emptypb.Empty) (*versionapi.VersionResponse, error) {
	return &versionapi.VersionResponse{Version: v.version, Revision: "fake"}, nil
}

// fakeDaemon serves gRPC on a unix socket at path with only srv's version
// service (none when srv is nil), until the end of t.
func fakeDaemon(t *testing.T, path string, srv versionapi.VersionServer) string {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	if srv != nil {
		versionapi.RegisterVersionServer(s, srv)
	}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return path
}

// TestPermissionDeniedOnSocket runs the plugin as nobody against a socket
// only root may open: the fingerprint and Start name the fix.
func TestPermissionDeniedOnSocket(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to run the plugin as another user")
	}
	dir, err := os.MkdirTemp("", "golb-ctrd-perm-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "containerd.sock")
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
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "GOLB_TEST_PLUGIN=containerd", "TMPDIR=/tmp")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := drivers.Launch(ctx, drivers.ClientConfig{Cmd: cmd})
	if err != nil {
		t.Fatalf("launching the plugin as nobody: %v", err)
	}
	defer c.Kill()
	logs := filepath.Join(dir, "data")
	if err := os.Mkdir(logs, 0o777); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(map[string]string{"address": sock, "worker_binary": "/bin/true"})
	if err := c.SetConfig(ctx, drivers.PluginConfig{DataDir: logs, Settings: raw}); err != nil {
		t.Fatal(err)
	}
	checkUnavailable(t, c, "permission denied", sock, "run golb as root")
}

// checkUnavailable asserts an unhealthy one-line fingerprint holding each of
// want, and a Start refused with ErrRuntimeUnavailable in one line.
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
	}
	spec.Config = json.RawMessage(`{"image":"myapp:1"}`)
	if _, err := c.Start(ctx, spec); !errors.Is(err, drivers.ErrRuntimeUnavailable) {
		t.Fatalf("Start with an image: %v, want ErrRuntimeUnavailable", err)
	}
}

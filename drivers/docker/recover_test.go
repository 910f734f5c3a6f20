package docker_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/go-connections/nat"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/docker"
	"github.com/golb/golb/drivers/drivertest"
)

// removeLabelled removes, at the end of the test, every container carrying
// golb.test=value.
func removeLabelled(t *testing.T, value string) {
	cli := testClient(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cs, _ := cli.ContainerList(ctx, container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", "golb.test="+value))})
		for _, c := range cs {
			_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
	})
}

// adoptLikeCore does what core's adoption does with a new plugin instance:
// List, Recover each, and for one it cannot recover, Stop and Destroy. It
// returns the Recover errors by worker id.
func adoptLikeCore(t *testing.T, ctx context.Context, d *docker.Driver, instance string) map[string]error {
	t.Helper()
	hs, err := d.List(ctx, map[string]string{drivers.LabelManaged: "true", "golb.instance": instance})
	if err != nil {
		t.Fatal(err)
	}
	errs := map[string]error{}
	for _, h := range hs {
		if err := d.Recover(ctx, h); err != nil {
			errs[h.ID] = err
			if err := d.Stop(ctx, h.ID, "", 5*time.Second); err != nil && !errors.Is(err, drivers.ErrNotFound) {
				t.Fatalf("Stop(%s): %v", h.ID, err)
			}
			if err := d.Destroy(ctx, h.ID); err != nil {
				t.Fatalf("Destroy(%s): %v", h.ID, err)
			}
		}
	}
	return errs
}

// TestExitedContainerIsListedAndRemoved: List skipped every container that
// was not running, and core adopts (and removes) only what List returns, so
// a worker that exited while golb was down (SIGKILLed: no Wait, no Destroy)
// stayed in `docker ps -a` for ever. It is listed now, and Recover refuses it
// with ErrStaleHandle and how it ended, so that core removes it.
func TestExitedContainerIsListedAndRemoved(t *testing.T) {
	cli := testClient(t)
	removeLabelled(t, "exitedleak")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := settings(t, map[string]string{"worker_binary": staticWorker(t)})
	first := docker.New(nil)
	if err := first.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	spec := drivers.WorkerSpec{ID: "exitedleak-1", Group: "leak", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1",
		Labels: map[string]string{"golb.test": "exitedleak", "golb.instance": "exitedleak"},
		Config: json.RawMessage(`{"command":["/golb","worker","--bogus"]}`)}
	if _, err := first.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Wait(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	// golb is SIGKILLed here: no Destroy. The next run's plugin instance:
	second := docker.New(nil)
	if err := second.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	errs := adoptLikeCore(t, ctx, second, "exitedleak")
	err, listed := errs[spec.ID]
	if !listed {
		t.Fatalf("the exited container was not listed, or was recovered: %v", errs)
	}
	if !errors.Is(err, drivers.ErrStaleHandle) || !strings.Contains(err.Error(), "exit code 2") || !strings.Contains(err.Error(), `unexpected argument "--bogus"`) {
		t.Fatalf("Recover = %v, want ErrStaleHandle with exit code 2 and the worker's last line", err)
	}
	t.Log(err)
	if _, err := cli.ContainerInspect(ctx, "golb-"+spec.ID); !cerrdefs.IsNotFound(err) {
		t.Fatalf("container golb-%s still exists after adoption: %v", spec.ID, err)
	}
}

// TestCreatedContainerIsListedAndRemoved: golb dying between the create and
// the start of a container left a "created" one that no List returned; it is
// listed and removed like an exited one.
func TestCreatedContainerIsListedAndRemoved(t *testing.T) {
	cli := testClient(t)
	removeLabelled(t, "createdleak")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := docker.New(nil)
	if err := d.SetConfig(ctx, settings(t, map[string]string{"worker_binary": staticWorker(t)})); err != nil {
		t.Fatal(err)
	}
	ref, _, err := d.WorkerImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, port := "createdleak-1", strconv.Itoa(drivertest.FreePort(t))
	p := nat.Port(port + "/tcp")
	_, err = cli.ContainerCreate(ctx, &container.Config{
		Image: ref,
		Labels: map[string]string{drivers.LabelManaged: "true", drivers.LabelGroup: "leak", drivers.LabelWorker: id,
			"golb.instance": "createdleak", "golb.test": "createdleak"},
		ExposedPorts: nat.PortSet{p: struct{}{}},
	}, &container.HostConfig{PortBindings: nat.PortMap{p: {{HostIP: "127.0.0.1", HostPort: port}}}}, nil, nil, "golb-"+id)
	if err != nil {
		t.Fatal(err)
	}
	errs := adoptLikeCore(t, ctx, d, "createdleak")
	if err, listed := errs[id]; !listed || !errors.Is(err, drivers.ErrStaleHandle) || !strings.Contains(err.Error(), "never started") {
		t.Fatalf("Recover errors %v, want ErrStaleHandle for %s saying it never started", errs, id)
	}
	if _, err := cli.ContainerInspect(ctx, "golb-"+id); !cerrdefs.IsNotFound(err) {
		t.Fatalf("container golb-%s still exists after adoption: %v", id, err)
	}
}

// TestNonLoopbackBindAddrRefused: Start published the worker's port on
// whatever BindAddr said, though golb publishes on loopback only: another
// address is a config error, and nothing is created.
func TestNonLoopbackBindAddrRefused(t *testing.T) {
	d := docker.New(nil)
	for _, addr := range []string{"0.0.0.0", "192.0.2.7", "::", "example.com"} {
		spec := drivers.WorkerSpec{ID: "bind-1", Group: "bind", Port: 1, BindAddr: addr}
		_, err := d.Start(context.Background(), spec)
		if !errors.Is(err, drivers.ErrBadConfig) || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("Start with BindAddr %q: %v, want ErrBadConfig about loopback", addr, err)
		}
	}
}

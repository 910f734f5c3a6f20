package docker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/docker"
	"github.com/golb/golb/drivers/drivertest"
	golbimage "github.com/golb/golb/drivers/internal/image"
)

// volumeImage loads into the engine a copy of the worker image (built from
// bin) whose config declares VOLUME dir, tagged for this run only, and
// removes it at the end of the test. Nothing is pulled.
func volumeImage(t *testing.T, cli *client.Client, bin, dir string) string {
	t.Helper()
	base, err := golbimage.Build(bin, golbimage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := base.V1().ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := cf.Config.DeepCopy()
	cfg.Volumes = map[string]struct{}{dir: {}}
	img, err := mutate.Config(base.V1(), *cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A tag of its own: removing it leaves the image to any other run
	// that tagged the same content.
	ref := fmt.Sprintf("golb-test-volume:%d", time.Now().UnixNano())
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	if err := tarball.Write(tag, img, &archive); err != nil {
		t.Fatalf("writing image archive %s: %v", ref, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Cleanup(func() { removeImage(t, cli, ref) })
	if _, err := docker.LoadArchive(ctx, cli, &archive); err != nil {
		t.Fatalf("loading image %s: %v", ref, err)
	}
	return ref
}

// TestDestroyRemovesAnonymousVolumes: Destroy left one anonymous volume (the image's VOLUME) behind per destroyed worker.
func TestDestroyRemovesAnonymousVolumes(t *testing.T) {
	cli := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ref := volumeImage(t, cli, staticWorker(t), "/data")

	d := docker.New(nil)
	if err := d.SetConfig(ctx, settings(t, nil)); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("volumes-%d", time.Now().UnixNano()%1e9)
	config, _ := json.Marshal(map[string]string{"image": ref})
	spec := drivers.WorkerSpec{ID: id, Group: "volumes", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1",
		Labels: map[string]string{"golb.test": "volumes"}, Config: config}
	var volume string
	t.Cleanup(func() {
		// Whatever the test left: the container, then its volume.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = d.Destroy(ctx, id)
		if err := cli.ContainerRemove(ctx, "golb-"+id, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup: removing container golb-%s: %v", id, err)
		}
		if volume == "" {
			return
		}
		if err := cli.VolumeRemove(ctx, volume, true); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup: removing volume %s: %v", volume, err)
		} else if err == nil {
			t.Logf("cleanup: removed volume %s", volume)
		}
	})
	h, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	drivertest.WaitHTTP(t, "http://"+h.Address+"/healthz", 30*time.Second)

	ins, err := cli.ContainerInspect(ctx, "golb-"+id)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ins.Mounts {
		if m.Type == "volume" && m.Destination == "/data" {
			volume = m.Name
		}
	}
	if volume == "" {
		t.Fatalf("container golb-%s has no volume on /data (mounts %+v): the image's VOLUME was not applied", id, ins.Mounts)
	}
	if _, err := cli.VolumeInspect(ctx, volume); err != nil {
		t.Fatalf("the worker's volume %s, before Destroy: %v", volume, err)
	}

	if err := d.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerInspect(ctx, "golb-"+id); !cerrdefs.IsNotFound(err) {
		t.Fatalf("container golb-%s still exists after Destroy (%v)", id, err)
	}
	if v, err := cli.VolumeInspect(ctx, volume); !cerrdefs.IsNotFound(err) {
		t.Fatalf("Destroy left the worker's anonymous volume %.12s (for /data, at %s) behind (%v)", volume, v.Mountpoint, err)
	}
}

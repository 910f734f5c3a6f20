package containerd_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/oci"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/containerd"
	"github.com/golb/golb/drivers/containerd/ctrdtest"
	"github.com/golb/golb/drivers/drivertest"
)

// workerSnapshotter is the snapshotter the driver keeps each worker's root
// filesystem in, under the key of its container's id.
const workerSnapshotter = "overlayfs"

// engineLeftovers is the conformance suite's Harness.Leftovers: it asks the
// daemon, through cli (a client of env's namespace), and not the driver,
// what of worker id is in env's namespace, one line each: the containers
// whose id is the driver's for id or whose golb.worker label is id; the
// tasks of those ids, stopped or not (a task is what runs, and can outlive
// its container's record); the snapshots of those ids (the driver makes
// one per worker, its root filesystem); and the root filesystems of those
// ids still mounted under the daemon's state directory. The image is shared
// by all workers, and the worker's log in DataDir/logs is kept on purpose,
// so neither is listed.
func engineLeftovers(env ctrdtest.Env, cli *client.Client) func(t *testing.T, id string) []string {
	return func(t *testing.T, id string) []string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ask := func(what string, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("asking containerd (namespace %s) for the %s of worker %s: %v", env.Namespace, what, id, err)
			}
		}
		ids := map[string]bool{containerd.ContainerID(id): true}
		var out []string
		cs, err := cli.ContainerService().List(ctx)
		ask("containers", err)
		for _, c := range cs {
			if c.ID == containerd.ContainerID(id) || c.Labels[drivers.LabelWorker] == id {
				ids[c.ID] = true
				img := "no image"
				if c.Image != "" {
					img = "image " + c.Image
				}
				out = append(out, fmt.Sprintf("container %s (%s, created %s)", c.ID, img, c.CreatedAt.Format(time.RFC3339)))
			}
		}
		ts, err := cli.TaskService().List(ctx, &tasks.ListTasksRequest{})
		ask("tasks", err)
		for _, p := range ts.GetTasks() {
			if ids[p.GetID()] || ids[p.GetContainerID()] {
				out = append(out, fmt.Sprintf("task %s (pid %d, %s)", p.GetID(), p.GetPid(), strings.ToLower(p.GetStatus().String())))
			}
		}
		err = cli.SnapshotService(workerSnapshotter).Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			if ids[info.Name] {
				line := fmt.Sprintf("snapshot %s (%s, %s", info.Name, workerSnapshotter, strings.ToLower(info.Kind.String()))
				if info.Parent != "" {
					line += fmt.Sprintf(", parent %.19s", info.Parent)
				}
				out = append(out, line+")")
			}
			return nil
		})
		ask(workerSnapshotter+" snapshots", err)
		for _, m := range ctrdtest.MountsUnder(filepath.Join(env.Daemon.Dir, "state")) {
			for cid := range ids {
				if strings.Contains(m, "/"+env.Namespace+"/"+cid+"/") {
					out = append(out, "mount "+m)
				}
			}
		}
		return out
	}
}

// TestLeftoversSeesAContainer: engineLeftovers finds what the driver lost
// track of: a container by its id alone, one by its label alone, a snapshot
// alone, and the container, task, snapshot and mount of a worker that runs;
// nothing for an id that only prefixes theirs, and nothing once they are
// gone. A leak check that cannot see a leftover passes every driver.
func TestLeftoversSeesAContainer(t *testing.T) {
	env := ctrdtest.NewEnv(t)
	cli := env.Daemon.Client(t, env.Namespace)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	leftovers := engineLeftovers(env, cli)
	base := fmt.Sprintf("left%d", time.Now().UnixNano()%1e9)
	named, labelled, snapped, running := base+"-named", base+"-labelled", base+"-snapped", base+"-running"
	all := []string{named, labelled, snapped, running, base}
	for _, id := range all {
		if left := leftovers(t, id); left != nil {
			t.Fatalf("before anything ran, leftovers of %s = %q, want nil", id, left)
		}
	}

	byID, err := cli.NewContainer(ctx, containerd.ContainerID(named), client.WithSpec(&oci.Spec{}))
	if err != nil {
		t.Fatal(err)
	}
	byLabel, err := cli.NewContainer(ctx, "stray-"+labelled, client.WithSpec(&oci.Spec{}),
		client.WithContainerLabels(map[string]string{drivers.LabelManaged: "true", drivers.LabelWorker: labelled}))
	if err != nil {
		t.Fatal(err)
	}
	ss := cli.SnapshotService(workerSnapshotter)
	// A gc root: no container or lease holds it.
	if _, err := ss.Prepare(ctx, containerd.ContainerID(snapped), "", snapshots.WithLabels(map[string]string{"containerd.io/gc.root": "leftovers test"})); err != nil {
		t.Fatal(err)
	}
	d := containerd.New(nil)
	if err := d.SetConfig(ctx, pluginConfig(t, env.Settings(map[string]string{"worker_binary": staticWorker(t)}))); err != nil {
		t.Fatal(err)
	}
	spec := drivers.WorkerSpec{ID: running, Group: "leftovers", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1"}
	t.Cleanup(func() { _ = d.Destroy(context.Background(), spec.ID) })
	if _, err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}

	want := map[string][]string{
		named:    {"container " + containerd.ContainerID(named) + " "},
		labelled: {"container stray-" + labelled + " "},
		snapped:  {"snapshot " + containerd.ContainerID(snapped) + " "},
		running: {
			"container " + containerd.ContainerID(running) + " ",
			"task " + containerd.ContainerID(running) + " (pid ",
			"snapshot " + containerd.ContainerID(running) + " ",
			"mount ",
		},
	}
	for id, prefixes := range want {
		left := leftovers(t, id)
		t.Logf("leftovers of %s: %q", id, left)
		if len(left) != len(prefixes) {
			t.Errorf("leftovers of %s = %q, want %d lines starting %q", id, left, len(prefixes), prefixes)
			continue
		}
		for i, p := range prefixes {
			if !strings.HasPrefix(left[i], p) {
				t.Errorf("leftovers of %s, line %d = %q, want it to start %q", id, i, left[i], p)
			}
		}
	}
	if left := leftovers(t, running); len(left) > 1 && !strings.Contains(left[1], "running") {
		t.Errorf("the running worker's task line %q does not say it runs", left[1])
	}
	if left := leftovers(t, base); left != nil {
		t.Errorf("leftovers of %s = %q, want nil: its id only prefixes the others'", base, left)
	}

	if err := d.Destroy(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	for _, c := range []client.Container{byID, byLabel} {
		if err := c.Delete(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := ss.Remove(ctx, containerd.ContainerID(snapped)); err != nil {
		t.Fatal(err)
	}
	for _, id := range all {
		if left := leftovers(t, id); left != nil {
			t.Errorf("once all is removed, leftovers of %s = %q, want nil", id, left)
		}
	}
}

package docker_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/docker"
)

// engineLeftovers is the conformance suite's Harness.Leftovers: it asks the
// Docker engine, not the driver, for the containers of worker id, running or
// not: those named as the driver names them (golb-ID) and those labelled
// golb.worker=ID, one line each with the name, the id's prefix and the state.
// Containers are all the driver makes per worker: no network (the default
// bridge), no volume (none mounted, and the worker image declares none), and
// the image is shared by all workers.
func engineLeftovers(cli *client.Client) func(t *testing.T, id string) []string {
	return func(t *testing.T, id string) []string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		name := "/golb-" + id
		found := map[string]container.Summary{}
		for _, args := range []filters.Args{
			filters.NewArgs(filters.Arg("label", drivers.LabelWorker+"="+id)),
			// The engine matches names as regular expressions, with or
			// without their leading '/' depending on its version.
			filters.NewArgs(filters.Arg("name", "^/?"+regexp.QuoteMeta(name[1:])+"$")),
		} {
			cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: args})
			if err != nil {
				t.Fatalf("asking the Docker engine for the containers of worker %s: %v", id, err)
			}
			for _, c := range cs {
				if c.Labels[drivers.LabelWorker] == id || slices.Contains(c.Names, name) {
					found[c.ID] = c
				}
			}
		}
		var out []string
		for _, c := range found {
			names := make([]string, 0, len(c.Names))
			for _, n := range c.Names {
				names = append(names, strings.TrimPrefix(n, "/"))
			}
			out = append(out, fmt.Sprintf("container %s (%.12s, %s: %s)", strings.Join(names, ","), c.ID, c.State, c.Status))
		}
		sort.Strings(out)
		return out
	}
}

// TestLeftoversSeesAContainer: engineLeftovers finds what the driver lost
// track of, stopped or not, by name alone and by label alone, and nothing
// for an id that only prefixes theirs; a leak check that cannot see a
// leftover passes every driver.
func TestLeftoversSeesAContainer(t *testing.T) {
	cli := testClient(t)
	removeLabelled(t, "leftovers")
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
	leftovers := engineLeftovers(cli)
	base := fmt.Sprintf("leftovers%d", time.Now().UnixNano()%1e9)
	named, labelled := base+"-named", base+"-labelled"
	for _, id := range []string{named, labelled, base} {
		if left := leftovers(t, id); left != nil {
			t.Fatalf("before any container, leftovers of %s = %q, want nil", id, left)
		}
	}
	create := func(name string, labels map[string]string) string {
		t.Helper()
		labels["golb.test"] = "leftovers"
		c, err := cli.ContainerCreate(ctx, &container.Config{Image: ref, Labels: labels}, nil, nil, nil, name)
		if err != nil {
			t.Fatalf("creating container %s: %v", name, err)
		}
		return c.ID
	}
	// Created, never started: the engine keeps them as it keeps an exited one.
	byName := create("golb-"+named, map[string]string{})
	byLabel := create("stray-"+labelled, map[string]string{drivers.LabelManaged: "true", drivers.LabelWorker: labelled})

	for id, want := range map[string]string{named: "container golb-" + named + " (", labelled: "container stray-" + labelled + " ("} {
		left := leftovers(t, id)
		if len(left) != 1 || !strings.HasPrefix(left[0], want) || !strings.Contains(left[0], "created") {
			t.Errorf("leftovers of %s = %q, want one line starting %q, in state created", id, left, want)
		}
		t.Logf("leftovers of %s: %q", id, left)
	}
	if left := leftovers(t, base); left != nil {
		t.Errorf("leftovers of %s = %q, want nil: its id only prefixes the others'", base, left)
	}

	for _, cid := range []string{byName, byLabel} {
		if err := cli.ContainerRemove(ctx, cid, container.RemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{named, labelled} {
		if left := leftovers(t, id); left != nil {
			t.Errorf("after removing the containers, leftovers of %s = %q, want nil", id, left)
		}
	}
}

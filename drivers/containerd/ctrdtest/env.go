package ctrdtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
)

// Env is one test's share of the daemon: a namespace, a runc root and a
// cgroup parent of its own, so that its tasks clash with nobody's.
type Env struct {
	Daemon       *Daemon
	Namespace    string
	RuncRoot     string
	CgroupParent string
}

// NewEnv gives t an Env on the shared daemon, and cleans it at the end of t:
// every task killed, every container deleted with its snapshot, images,
// content and snapshots removed, then the namespace, the runc root and the
// cgroups. The test fails if a mount or a process of the namespace is left.
func NewEnv(t testing.TB) Env {
	t.Helper()
	return EnvOn(t, Shared(t))
}

// EnvOn is NewEnv on daemon d (one a test started with Start).
func EnvOn(t testing.TB, d *Daemon) Env {
	t.Helper()
	name := fmt.Sprintf("golbtest-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
	e := Env{
		Daemon:       d,
		Namespace:    name,
		RuncRoot:     filepath.Join(d.Dir, "runc", name),
		CgroupParent: "/golbtest/" + name,
	}
	t.Cleanup(func() {
		if err := e.Clean(); err != nil {
			t.Errorf("cleaning containerd namespace %s: %v", name, err)
		}
		if left := e.Leftovers(); left != "" {
			t.Errorf("namespace %s left behind: %s", name, left)
		}
	})
	return e
}

// Settings is the containerd driver's settings block for this Env, as JSON
// fields; extra ones are merged in.
func (e Env) Settings(extra map[string]string) map[string]string {
	s := map[string]string{
		"address":       e.Daemon.Address,
		"namespace":     e.Namespace,
		"runc_root":     e.RuncRoot,
		"cgroup_parent": e.CgroupParent,
	}
	for k, v := range extra {
		s[k] = v
	}
	return s
}

// Clean removes everything in the namespace and the namespace itself.
func (e Env) Clean() error {
	c, err := client.New(e.Daemon.Address, client.WithDefaultNamespace(e.Namespace))
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var errs []string
	note := func(what string, err error) {
		if err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, what+": "+err.Error())
		}
	}
	cs, err := c.Containers(ctx)
	note("listing containers", err)
	for _, ctr := range cs {
		if task, err := ctr.Task(ctx, nil); err == nil {
			if ch, err := task.Wait(ctx); err == nil {
				_ = task.Kill(ctx, syscall.SIGKILL)
				select {
				case <-ch:
				case <-time.After(10 * time.Second):
				}
			}
			_, err := task.Delete(ctx)
			note("deleting task "+ctr.ID(), err)
		}
		note("deleting container "+ctr.ID(), ctr.Delete(ctx, client.WithSnapshotCleanup))
	}
	imgs, err := c.ImageService().List(ctx)
	note("listing images", err)
	for _, img := range imgs {
		note("deleting image "+img.Name, c.ImageService().Delete(ctx, img.Name))
	}
	for _, sn := range []string{"overlayfs", "native"} {
		ss := c.SnapshotService(sn)
		var keys []string
		_ = ss.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			keys = append(keys, info.Name)
			return nil
		})
		// Children first: a parent cannot go while a child exists.
		for range len(keys) + 1 {
			var left []string
			for _, k := range keys {
				if err := ss.Remove(ctx, k); err != nil && !errdefs.IsNotFound(err) {
					left = append(left, k)
				}
			}
			keys = left
		}
		if len(keys) > 0 {
			errs = append(errs, fmt.Sprintf("%d %s snapshots could not be removed", len(keys), sn))
		}
	}
	ls, err := c.LeasesService().List(ctx)
	note("listing leases", err)
	for _, l := range ls {
		note("deleting lease", c.LeasesService().Delete(ctx, l))
	}
	_ = c.ContentStore().Walk(ctx, func(info content.Info) error {
		note("deleting content", c.ContentStore().Delete(ctx, info.Digest))
		return nil
	})
	note("deleting namespace", c.NamespaceService().Delete(ctx, e.Namespace))
	_ = os.RemoveAll(e.RuncRoot)
	removeCgroups(e.CgroupParent)
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// Leftovers says what of the Env is still there: mounts of its containers,
// processes naming its runc root, its cgroups. "" when nothing is.
func (e Env) Leftovers() string {
	var out []string
	for _, m := range MountsUnder(filepath.Join(e.Daemon.Dir, "state")) {
		if strings.Contains(m, "/"+e.Namespace+"/") {
			out = append(out, "mount "+m)
		}
	}
	for _, pid := range ProcessesUnder(e.RuncRoot) {
		out = append(out, fmt.Sprintf("process %d", pid))
	}
	for _, dir := range cgroupDirs(e.CgroupParent) {
		out = append(out, "cgroup "+dir)
	}
	return strings.Join(out, ", ")
}

// cgroupDirs are the directories of parent in every mounted hierarchy.
func cgroupDirs(parent string) []string {
	ents, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return nil
	}
	var dirs []string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil { // v2
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", parent)); err == nil {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", parent))
		}
		return dirs
	}
	for _, ent := range ents {
		p := filepath.Join("/sys/fs/cgroup", ent.Name(), parent)
		if _, err := os.Stat(p); err == nil {
			dirs = append(dirs, p)
		}
	}
	return dirs
}

// removeCgroups removes parent's cgroup directories (empty once their tasks
// are gone), deepest first, and the shared /golbtest when it is empty.
func removeCgroups(parent string) {
	for _, dir := range cgroupDirs(parent) {
		var sub []string
		_ = filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
			if err == nil && de.IsDir() {
				sub = append(sub, p)
			}
			return nil
		})
		slices.SortFunc(sub, func(a, b string) int { return len(b) - len(a) })
		for _, s := range sub {
			_ = syscall.Rmdir(s)
		}
		_ = syscall.Rmdir(filepath.Dir(dir)) // fails while another test uses it
	}
}

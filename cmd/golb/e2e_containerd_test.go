package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golb/golb/drivers/containerd/ctrdtest"
)

// ctrCLI runs ctr against the test's private containerd and namespace.
type ctrCLI struct {
	t   *testing.T
	env ctrdtest.Env
}

func (c ctrCLI) run(args ...string) string {
	c.t.Helper()
	full := append([]string{"--address", c.env.Daemon.Address, "-n", c.env.Namespace}, args...)
	out, err := exec.Command("ctr", full...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// rows are the lines of a ctr listing after its header, split in fields.
func (c ctrCLI) rows(args ...string) [][]string {
	c.t.Helper()
	lines := strings.Split(strings.TrimSpace(c.run(args...)), "\n")
	var out [][]string
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > 0 {
			out = append(out, f)
		}
	}
	return out
}

// tasks maps each task's container to its pid, for the running ones.
func (c ctrCLI) tasks() map[string]string {
	c.t.Helper()
	m := map[string]string{}
	for _, f := range c.rows("tasks", "ls") {
		if len(f) == 3 && f[2] == "RUNNING" {
			m[f[0]] = f[1]
		}
	}
	return m
}

// allTasks are the containers of every task, running or not.
func (c ctrCLI) allTasks() []string {
	c.t.Helper()
	var ids []string
	for _, f := range c.rows("tasks", "ls") {
		ids = append(ids, f[0])
	}
	return ids
}

func (c ctrCLI) containers() []string {
	c.t.Helper()
	return strings.Fields(c.run("containers", "ls", "-q"))
}

// activeSnapshots are the containers' snapshots (the image's committed
// layer stays, so that the next start needs no unpacking).
func (c ctrCLI) activeSnapshots() []string {
	c.t.Helper()
	var keys []string
	for _, f := range c.rows("snapshots", "--snapshotter", "overlayfs", "ls") {
		if f[len(f)-1] == "Active" {
			keys = append(keys, f[0])
		}
	}
	return keys
}

func (c ctrCLI) labels(container string) map[string]string {
	c.t.Helper()
	var info struct{ Labels map[string]string }
	if err := json.Unmarshal([]byte(c.run("containers", "info", container)), &info); err != nil {
		c.t.Fatalf("ctr containers info %s: %v", container, err)
	}
	return info.Labels
}

// TestContainerdExample runs examples/containerd.hcl with the real golb
// binary against a private containerd, on ports and in a namespace the test
// picks: 3 tasks serve through both listeners, ctr shows them with golb's
// labels, a task killed with `ctr tasks kill -s SIGKILL` is replaced, golb
// SIGKILLed and run again adopts the same tasks (same pids), a task that
// exits while no golb runs is removed and replaced by the next run, and
// Ctrl-C leaves no container, task or container snapshot.
func TestContainerdExample(t *testing.T) {
	if _, err := exec.LookPath("ctr"); err != nil {
		ctrdtest.SkipOrFail(t, err)
	}
	d, err := ctrdtest.Start()
	if err != nil {
		ctrdtest.SkipOrFail(t, err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	})
	env := ctrdtest.EnvOn(t, d)
	ctr := ctrCLI{t: t, env: env}

	dir := t.TempDir()
	bin := buildGolb(t, dir)
	example, err := os.ReadFile("../../examples/containerd.hcl")
	if err != nil {
		t.Fatal(err)
	}
	pt := newPorts(t)
	src := onTestPorts(t, "examples/containerd.hcl", string(example), pt)
	block := "address   = \"/run/containerd/containerd.sock\"\n  namespace = \"golb\"\n"
	if strings.Count(src, block) != 1 {
		t.Fatalf("examples/containerd.hcl no longer sets the default address and namespace once:\n%s", src)
	}
	src = strings.Replace(src, block, "address   = \""+env.Daemon.Address+"\"\n  namespace = \""+env.Namespace+"\"\n"+
		"  runc_root = \""+env.RuncRoot+"\"\n  cgroup_parent = \""+env.CgroupParent+"\"\n", 1)
	mustWrite(t, filepath.Join(dir, "containerd.hcl"), src)
	admin := pt.adminAddr()

	out, err := exec.Command(bin, "drivers", filepath.Join(dir, "containerd.hcl")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "containerd "+env.Daemon.Version) {
		t.Fatalf("golb drivers does not list containerd %s: %v\n%s", env.Daemon.Version, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "containerd ") {
			t.Logf("golb drivers: %s", line)
		}
	}

	start := func() *golbProc {
		p := &golbProc{t: t, out: &syncBuffer{}, admin: admin, done: make(chan struct{})}
		p.cmd = exec.Command(bin, "run", "containerd.hcl")
		p.cmd.Dir = dir
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.err = p.cmd.Wait(); close(p.done) }()
		t.Cleanup(func() {
			select {
			case <-p.done:
			default:
				_ = p.cmd.Process.Signal(syscall.SIGTERM)
				<-p.done
			}
			if t.Failed() {
				t.Logf("golb output:\n%s", p.out.String())
			}
		})
		return p
	}

	p := start()
	took := p.waitHealthy(3, 90*time.Second)
	t.Logf("3 containerd workers healthy %v after start (includes building and importing the image)", took)
	for _, port := range []string{itoa(pt.lb), itoa(pt.lb + 1)} {
		eventually(t, 10*time.Second, "a 200 via :"+port, func() bool {
			code, body, err := get("http://127.0.0.1:" + port + "/api/v1/hello")
			return err == nil && code == 200 && strings.Contains(body, "hello from container: hello-")
		})
	}

	// ctr shows the 3 tasks, with the pids golb reports, and golb's labels.
	tasks := ctr.tasks()
	ws := p.workers()
	if len(tasks) != 3 || len(ws) != 3 || len(ctr.containers()) != 3 {
		t.Fatalf("ctr shows %d running tasks and %d containers, golb %d workers; want 3 of each", len(tasks), len(ctr.containers()), len(ws))
	}
	for _, w := range ws {
		cid := w.Details["container_id"]
		if tasks[cid] == "" || tasks[cid] != w.Details["pid"] {
			t.Fatalf("worker %s: ctr tasks ls shows %s with pid %q, golb says %q", w.ID, cid, tasks[cid], w.Details["pid"])
		}
		logDir := filepath.Join(dir, ".golb-containerd", "drivers", "containerd", "logs")
		if log := w.Details["log"]; filepath.Dir(log) != logDir || !strings.Contains(mustRead(t, log), "worker listening") {
			t.Fatalf("worker %s: log %q is not in %s or lacks the worker's output", w.ID, log, logDir)
		}
		l := ctr.labels(cid)
		if l["golb.managed"] != "true" || l["golb.group"] != "hello" || l["golb.worker"] != w.ID || l["golb.instance"] == "" || l["golb.spec"] == "" {
			t.Fatalf("container %s labels %v lack golb's", cid, l)
		}
	}
	if n := len(strings.Fields(ctr.run("containers", "ls", "-q", `labels."golb.managed"==true`))); n != 3 {
		t.Fatalf("ctr containers ls by label golb.managed=true shows %d, want 3", n)
	}

	// ctr tasks kill -s SIGKILL: replaced. The deadline is the margin a busy
	// 2-core CI machine needs; the figure logged is the README's.
	victim := p.healthyWorkers()[0]
	ctr.run("tasks", "kill", "-s", "SIGKILL", victim.Details["container_id"])
	took = p.waitReplaced(victim.ID, 3, 60*time.Second)
	t.Logf("SIGKILLed task replaced and healthy after %v (issue: within 3 s)", took)
	eventually(t, 20*time.Second, "the killed worker's container removed", func() bool { return len(ctr.containers()) == 3 })

	// SIGKILL golb (its plugin dies with it), run again: the same tasks
	// are adopted, with the same pids, and none is added.
	before := ctr.tasks()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p2 := start()
	p2.waitHealthy(3, 60*time.Second)
	time.Sleep(time.Second)
	for _, w := range p2.workers() {
		if pid := before[w.Details["container_id"]]; pid == "" || pid != w.Details["pid"] || !w.Adopted {
			t.Fatalf("worker %s (container %s, pid %s, adopted %v) is not one of the tasks %v", w.ID, w.Details["container_id"], w.Details["pid"], w.Adopted, before)
		}
	}
	if after := ctr.tasks(); len(after) != 3 || len(ctr.containers()) != 3 {
		t.Fatalf("after the restart ctr shows tasks %v and %d containers, want the same 3 (no duplicates)", after, len(ctr.containers()))
	} else {
		for cid, pid := range before {
			if after[cid] != pid {
				t.Fatalf("task %s has pid %s after the restart, was %s", cid, after[cid], pid)
			}
		}
	}
	if code, _, err := get("http://127.0.0.1:" + itoa(pt.lb) + "/api/v1/hello"); err != nil || (code != 200 && code != 500) {
		t.Fatalf("adopted workers do not serve: %d %v", code, err)
	}

	// SIGKILL golb again and kill a task while no golb runs: the next run
	// hears it exited, removes it and starts another; the rest are adopted.
	if err := p2.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p2.done
	var gone string
	for cid := range before {
		gone = cid
		break
	}
	ctr.run("tasks", "kill", "-s", "SIGKILL", gone)
	eventually(t, 10*time.Second, "the task killed meanwhile stopped", func() bool { return ctr.tasks()[gone] == "" })
	p3 := start()
	p3.waitHealthy(3, 60*time.Second)
	eventually(t, 20*time.Second, "the exited container removed", func() bool { return !slices.Contains(ctr.containers(), gone) })
	kept := 0
	for _, w := range p3.workers() {
		cid := w.Details["container_id"]
		if cid == gone {
			t.Fatalf("the task that exited meanwhile was adopted: %+v", w)
		}
		if before[cid] != "" {
			kept++
			if before[cid] != w.Details["pid"] {
				t.Fatalf("worker %s has pid %s, was %s", w.ID, w.Details["pid"], before[cid])
			}
		}
	}
	if kept != 2 || len(ctr.containers()) != 3 || !strings.Contains(p3.out.String(), "exited meanwhile") {
		t.Fatalf("after a task exited meanwhile: %d of the 2 others adopted, %d containers, golb said:\n%s", kept, len(ctr.containers()), p3.out.String())
	}

	// Ctrl-C: nothing of golb's left in the namespace.
	if err := p3.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p3.done:
	case <-time.After(60 * time.Second):
		t.Fatal("golb did not exit after Ctrl-C")
	}
	if p3.err != nil {
		t.Fatalf("golb exit after Ctrl-C: %v", p3.err)
	}
	if cs, ts, ss := ctr.containers(), ctr.allTasks(), ctr.activeSnapshots(); len(cs)+len(ts)+len(ss) != 0 {
		t.Fatalf("after Ctrl-C: containers %v, tasks %v, container snapshots %v; want none", cs, ts, ss)
	}
}

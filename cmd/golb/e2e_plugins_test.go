package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDriversAdminShowsRestarts: `golb drivers` had no --admin, so a user
// could not see a plugin restarting (its pid and restart count were only at
// GET /v1/drivers). `golb drivers --admin [ADDR]` shows both, and why the
// plugin last died.
func TestDriversAdminShowsRestarts(t *testing.T) {
	dir := t.TempDir()
	pt := newPorts(t)
	p := golb(t, dir, pt.adminAddr(), "run", writeConfig(t, dir, pt, 1, ""))
	p.waitHealthy(1, 60*time.Second)
	ds := p.drivers()
	if len(ds) != 1 || ds[0].PID == 0 {
		t.Fatalf("GET /v1/drivers: %+v", ds)
	}
	first := ds[0].PID
	row := func(out string) []string {
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] == "process" {
				return f
			}
		}
		t.Fatalf("no process row in:\n%s", out)
		return nil
	}
	// The flag alone asks $GOLB_ADMIN (golb() sets it to the test's).
	out, code := runGolb(t, dir, pt.adminAddr(), "drivers", "--admin")
	if f := row(out); code != 0 || f[2] != "running" || f[3] != strconv.Itoa(first) || f[4] != "0" {
		t.Fatalf("golb drivers --admin: exit %d, want the plugin running as pid %d with 0 restarts:\n%s", code, first, out)
	}

	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 30*time.Second, "the plugin restarted", func() bool {
		ds := p.drivers()
		return len(ds) == 1 && ds[0].Running && ds[0].Restarts == 1 && ds[0].PID != first
	})
	t.Logf("plugin restarted %v after its SIGKILL", took.Round(time.Millisecond))
	out, code = runGolb(t, dir, "", "drivers", "--admin", pt.adminAddr())
	f := row(out)
	if code != 0 || f[3] == strconv.Itoa(first) || f[4] != "1" || !strings.Contains(out, "driver process exited: signal: killed") {
		t.Fatalf("golb drivers --admin ADDR after a crash: exit %d, want a new pid, 1 restart and why:\n%s", code, out)
	}
	t.Logf("golb drivers --admin:\n%s", out)
}

// TestPluginFailingToStartIsBlamed pins issue 14's fourth bug end to end: a
// plugin that prints on stdout before its handshake made `golb run` end
// with "fix the config first", and `golb drivers` printed the multi-line
// error inside its table.
func TestPluginFailingToStartIsBlamed(t *testing.T) {
	dir := t.TempDir()
	pt := newPorts(t)
	if err := os.MkdirAll(filepath.Join(dir, "plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "plugins", "golb-driver-chatty"), "#!/bin/sh\necho 'hello from a chatty plugin'\nsleep 3\n")
	if err := os.Chmod(filepath.Join(dir, "plugins", "golb-driver-chatty"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, dir, pt, 1, "plugin_dir = \"./plugins\"\n")
	mustWrite(t, cfg, strings.Replace(mustRead(t, cfg), `driver = "process"`, `driver = "chatty"`, 1))

	out, code := runGolb(t, dir, pt.adminAddr(), "run", cfg)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; code != 1 || last != "golb: not starting: the driver plugin chatty failed to start" || !strings.Contains(out, "hello from a chatty plugin") {
		t.Fatalf("golb run: exit %d, last line %q; want 1 and the plugin blamed, its line quoted:\n%s", code, last, out)
	}

	out, code = runGolb(t, dir, pt.adminAddr(), "drivers", cfg)
	t.Logf("golb drivers:\n%s", out)
	rows := strings.Split(strings.TrimSpace(out), "\n")
	var chatty string
	for _, r := range rows[1:] {
		if strings.HasPrefix(r, "chatty ") {
			chatty = r
		} else if f := strings.Fields(r); len(f) < 4 || (f[2] != "yes" && f[2] != "no") {
			t.Errorf("golb drivers: a line that is not a driver's row: %q", r)
		}
	}
	if code != 0 || !strings.Contains(chatty, "hello from a chatty plugin") {
		t.Errorf("golb drivers: exit %d, chatty's row %q, want its one-line DETAIL quoting the stray line", code, chatty)
	}
}

// TestShutdownNamesWorkersItCannotStop pins issue 14's third bug at the
// command line: with a plugin whose Stop never returns and whose Destroy
// fails, SIGINT made golb forget every worker and exit 0 saying "golb
// stopped". Now it names each worker with its pid and how to kill it, exits
// 1 with a last line that says workers are left, and the next `golb run`
// adopts and stops them.
func TestShutdownNamesWorkersItCannotStop(t *testing.T) {
	dir := t.TempDir()
	pt := newPorts(t)
	cfg := writeConfig(t, dir, pt, 1, "")
	mustWrite(t, cfg, strings.Replace(mustRead(t, cfg), "  count  = 1\n", "  count  = 1\n  stop_timeout = \"1s\"\n", 1))
	t.Setenv("GOLB_E2E_UNSTOPPABLE", "1") // golb() passes its environment on
	p := golb(t, dir, pt.adminAddr(), "run", cfg)
	p.waitHealthy(1, 60*time.Second)
	w := p.workers()[0]
	pid := pidOf(w)
	t.Cleanup(func() { _ = syscall.Kill(-pid, syscall.SIGKILL) })
	start := time.Now()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	code := p.wait(2 * time.Minute)
	t.Logf("SIGINT to exit with an unstoppable worker: %v (stop_timeout 1s + 10s grace)", time.Since(start).Round(time.Millisecond))
	out := p.out.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	if code != 1 || !strings.HasPrefix(last, "golb: workers left running: 1 could not be stopped") || !strings.Contains(last, w.ID) {
		t.Errorf("exit %d, last line %q; want 1 and the worker left named", code, last)
	}
	named := "worker=" + w.ID + " group=hello driver=process pid=" + strconv.Itoa(pid) + ` kill="kill -KILL -- -` + strconv.Itoa(pid) + `"`
	if !strings.Contains(out, named) || strings.Contains(out, `msg="golb stopped"`) {
		t.Errorf("want the worker named (%s) and no clean stop claimed:\n%s", named, out)
	}
	if !alive(pid) {
		t.Fatalf("the worker %d does not run: the test proves nothing", pid)
	}

	t.Setenv("GOLB_E2E_UNSTOPPABLE", "")
	p = golb(t, dir, pt.adminAddr(), "run", cfg)
	eventually(t, 60*time.Second, "the worker adopted", func() bool {
		ws := p.healthyWorkers()
		return len(ws) == 1 && ws[0].ID == w.ID && ws[0].Adopted
	})
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(time.Minute); code != 0 {
		t.Errorf("the next run's shutdown: exit %d, want 0:\n%s", code, p.out.String())
	}
	eventually(t, 10*time.Second, "the worker stopped", func() bool { return !alive(pid) })
}

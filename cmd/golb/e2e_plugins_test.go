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

package core

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// externalPlugin writes script as plugin_dir/golb-driver-NAME under dir and
// returns the config's top lines naming that plugin_dir, and the script's
// SHA-256.
func externalPlugin(t *testing.T, dir, name, script string) (top, sum string) {
	t.Helper()
	pd := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(pd, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pd, ExternalPrefix+name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256([]byte(script))
	return fmt.Sprintf("plugin_dir = %q\n", pd), hex.EncodeToString(s[:])
}

// TestGarbageBeforeHandshakeBlamesThePlugin pins issue 14's fourth bug: a
// plugin that printed on stdout before its handshake was refused (good), but
// golb then said "fix the config first", and `golb drivers` put the
// multi-line error in its DETAIL column, which broke the table. The plugin
// is now named as what failed (FailedDrivers, for cmd/golb's last line) and
// DETAIL is one bounded line.
func TestGarbageBeforeHandshakeBlamesThePlugin(t *testing.T) {
	dir := t.TempDir()
	top, _ := externalPlugin(t, dir, "chatty", "#!/bin/sh\necho 'hello from a plugin that talks on stdout'\nsleep 5\n")
	src := top + header(dir, "") + strings.Replace(groupHCL(uniq("chatty"), 1, freePorts(t, 1), "1ms"), `driver = "process"`, `driver = "chatty"`, 1)
	ta := newTestAgent(t, parseConfig(t, src))
	defer ta.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	diags := ta.Prepare(ctx)
	errorAt(t, diags, `Driver "chatty" failed to start`, lineOf(t, src, `driver = "chatty"`))
	if !strings.Contains(diags.Error(), "hello from a plugin that talks on stdout") {
		t.Errorf("the plugin's stray line is not quoted: %s", diags.Error())
	}
	if got := ta.FailedDrivers(); len(got) != 1 || got[0] != "chatty" {
		t.Errorf("FailedDrivers() = %v, want [chatty]", got)
	}

	rows := ProbeDrivers(ctx, parseConfig(t, src), Options{Self: []string{os.Args[0]}, Builtins: testBuiltins})
	var detail string
	for _, r := range rows {
		if r.Name == "chatty" {
			detail = r.Detail
		}
	}
	t.Logf("golb drivers DETAIL: %s", detail)
	if strings.ContainsAny(detail, "\r\n") || len(detail) > maxDetail+len("…") || !strings.Contains(detail, "hello from a plugin") {
		t.Errorf("DETAIL %q, want one line of at most %d bytes quoting the stray line", detail, maxDetail)
	}
}

// TestWrongPinPointsAtThePin pins issue 14's bug with plugin pins: a wrong
// plugin "NAME" { sha256 } errored at the group's driver line and showed
// neither digest. It now points at the pin and shows both.
func TestWrongPinPointsAtThePin(t *testing.T) {
	dir := t.TempDir()
	top, good := externalPlugin(t, dir, "pinned", "#!/bin/sh\nexec "+os.Args[0]+" driver process\n")
	bad := strings.Repeat("ab", 32)
	src := top + fmt.Sprintf("plugin \"pinned\" {\n  sha256 = %q\n}\n", bad) + header(dir, "") +
		strings.Replace(groupHCL(uniq("pinned"), 1, freePorts(t, 1), "1ms"), `driver = "process"`, `driver = "pinned"`, 1)
	d := errorAt(t, prepare(t, src), "does not match its sha256 pin", lineOf(t, src, "sha256 ="))
	t.Logf("%s: %s: %s", d.Subject, d.Summary, d.Detail)
	if !strings.Contains(d.Detail, bad) || !strings.Contains(d.Detail, good) {
		t.Errorf("detail %q, want the pin's digest %s and the file's %s", d.Detail, bad, good)
	}
	if d.Subject.Start.Column != strings.Index(strings.Split(src, "\n")[lineOf(t, src, "sha256 =")-1], `"`)+1 {
		t.Errorf("diagnostic at column %d, want the sha256 value's", d.Subject.Start.Column)
	}
	// The right pin runs.
	if diags := prepare(t, strings.Replace(src, bad, good, 1)); diags.HasErrors() {
		t.Errorf("with the right pin: %s", diags.Error())
	}
}

package drivers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestStderrTailKeepsTheEndBounded(t *testing.T) {
	var tail stderrTail
	// As go-plugin writes: the line, then its newline on its own.
	put := func(line string) {
		_, _ = tail.Write([]byte(line))
		_, _ = tail.Write([]byte("\n"))
	}
	put("starting")
	put("panic: broken driver: panic in Start")
	put("")
	put("goroutine 12 [running]:")
	for i := range 100 {
		put(fmt.Sprintf("main.frame%d(...)", i))
	}
	put(strings.Repeat("x", 10_000))
	_, _ = tail.Write([]byte("half a li"))
	_, _ = tail.Write([]byte("ne"))

	got := tail.String()
	lines := strings.Split(got, "\n")
	if lines[0] != "panic: broken driver: panic in Start" {
		t.Fatalf("first line %q: want the panic that scrolled out", lines[0])
	}
	if !strings.HasPrefix(lines[1], "… ") || !strings.Contains(lines[1], "earlier lines dropped") {
		t.Fatalf("second line %q: want the count of dropped lines", lines[1])
	}
	if len(lines) != StderrTailLines+3 || lines[len(lines)-1] != "half a line" || lines[len(lines)-3] != "main.frame99(...)" {
		t.Fatalf("tail of %d lines, ending %q: want %d kept lines, the unfinished one last", len(lines), lines[len(lines)-3:], StderrTailLines)
	}
	if long := lines[len(lines)-2]; len(long) > maxStderrLine+len("…") || !strings.HasSuffix(long, "…") {
		t.Fatalf("a 10000-byte line kept as %d bytes: want it cut to %d, marked", len(long), maxStderrLine)
	}
	if p := tail.Panic(); p != "panic: broken driver: panic in Start" {
		t.Fatalf("Panic() = %q", p)
	}
}

// TestLaunchOfAPanickingPluginSaysThePanic: a plugin that dies before its
// handshake fails Launch with its panic, not only go-plugin's "exited
// before we could connect"; the Client's stderr is kept without a Logger.
func TestLaunchOfAPanickingPluginSaysThePanic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), badReplyPluginEnv+"=panic")
	var copied syncBuffer
	_, err := Launch(ctx, ClientConfig{Cmd: cmd, Stderr: &copied})
	if err == nil || !strings.Contains(err.Error(), "panic: broken driver: panic in main") {
		t.Fatalf("Launch = %v, want an error with the plugin's panic", err)
	}
	if !strings.Contains(copied.String(), "goroutine 1 [running]") {
		t.Fatalf("ClientConfig.Stderr got %q, want the plugin's stack trace", copied.String())
	}
}

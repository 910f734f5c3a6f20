package proc_test

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golb/golb/drivers/proc"
)

func TestParseStatReadsGroup(t *testing.T) {
	state, pgrp, start, err := proc.ParseStatPgrp([]byte("42 (a (b) c) S 1 40 40 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0 0"))
	if err != nil || state != 'S' || pgrp != 40 || start != 12345 {
		t.Fatalf("parseStat = %c %d %d %v; want S 40 12345", state, pgrp, start, err)
	}
}

// wrapperGroup starts `sh -c 'sleep 30 & wait'` in a group of its own, the
// sleep marked with mark in its environment, and returns the shell.
func wrapperGroup(t *testing.T, mark string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 30 & wait")
	cmd.Env = append(os.Environ(), mark)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL); _ = cmd.Wait() })
	deadline := time.Now().Add(waitLimit)
	for {
		m, err := proc.GroupMembers(pgid)
		if err != nil {
			t.Fatal(err)
		}
		if len(m) == 2 {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %d has members %v, want the shell and its sleep", pgid, m)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDrainEndsTheRestOfTheGroup: once the leader has exited (seen, not
// reaped), Drain kills what it left; while a Stop holds the group, it waits.
func TestDrainEndsTheRestOfTheGroup(t *testing.T) {
	cmd := wrapperGroup(t, "GOLB_TEST_MARK=drain")
	pgid := cmd.Process.Pid
	g := &proc.Group{PGID: pgid}
	release := g.Hold()
	if err := syscall.Kill(pgid, syscall.SIGTERM); err != nil { // the shell alone
		t.Fatal(err)
	}
	if err := proc.WaitExited(pgid); err != nil {
		t.Fatal(err)
	}
	drained := make(chan int, 1)
	go func() { drained <- g.Drain() }()
	select {
	case n := <-drained:
		t.Fatalf("Drain returned %d while a Stop held the group", n)
	case <-time.After(200 * time.Millisecond):
	}
	if !proc.GroupRunning(pgid) {
		t.Fatal("the sleep died with its shell: the test needs it alive")
	}
	release()
	select {
	case n := <-drained:
		if n != 1 {
			t.Fatalf("Drain found %d left, want the sleep", n)
		}
	case <-time.After(waitLimit):
		t.Fatal("Drain did not return once released")
	}
	if proc.GroupRunning(pgid) {
		t.Fatal("the group still runs after Drain")
	}
}

// TestKillMarkedSparesTheUnmarked: a leaderless group is ended only through
// the processes carrying the worker's mark.
func TestKillMarkedSparesTheUnmarked(t *testing.T) {
	cmd := wrapperGroup(t, "GOLB_TEST_MARK=killmarked")
	pgid := cmd.Process.Pid
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if n, err := proc.KillMarked(ctx, pgid, "GOLB_TEST_MARK=other"); err != nil || n != 0 {
		t.Fatalf("KillMarked with another mark = %d, %v; want 0, nil", n, err)
	}
	if m, _ := proc.GroupMembers(pgid); len(m) != 2 {
		t.Fatalf("members after KillMarked with another mark: %v", m)
	}
	found, err := proc.FindMarked(0, "GOLB_TEST_MARK=killmarked")
	if err != nil || len(found) != 2 {
		t.Fatalf("FindMarked = %v, %v; want the shell and its sleep", found, err)
	}
	n, err := proc.KillMarked(ctx, pgid, "GOLB_TEST_MARK=killmarked")
	if err != nil || n != 2 {
		t.Fatalf("KillMarked = %d, %v; want 2, nil", n, err)
	}
	if proc.GroupRunning(pgid) {
		t.Fatal("the group still runs after KillMarked")
	}
	if st, err := os.ReadFile("/proc/" + strconv.Itoa(pgid) + "/stat"); err == nil && !strings.Contains(string(st), ") Z ") {
		t.Fatalf("the shell is not a zombie: %s", st)
	}
}

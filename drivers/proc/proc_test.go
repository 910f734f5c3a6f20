package proc_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/proc"
)

// waitLimit bounds every wait for a process to end: generous, for a busy
// 2-core machine; no test relies on it being short.
const waitLimit = 30 * time.Second

// startSleep starts `sleep 30` as a child and makes sure it is gone when the
// test ends.
func startSleep(t *testing.T, attr *syscall.SysProcAttr) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sleep: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func identify(t *testing.T, pid int) proc.Identity {
	t.Helper()
	id, err := proc.Identify(pid)
	if err != nil {
		t.Fatalf("Identify(%d): %v", pid, err)
	}
	return id
}

// waitGone waits (bounded) for id to be gone, failing the test otherwise.
func waitGone(t *testing.T, id proc.Identity) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	start := time.Now()
	if err := id.Wait(ctx); err != nil {
		t.Fatalf("Wait(pid %d): %v", id.PID, err)
	}
	t.Logf("pid %d gone after %v", id.PID, time.Since(start))
	if id.Alive() {
		t.Fatalf("pid %d: Wait returned but Alive is still true", id.PID)
	}
}

func TestStartTimeOfRunningProcess(t *testing.T) {
	self, err := proc.StartTime(os.Getpid())
	if err != nil {
		t.Fatalf("StartTime(self): %v", err)
	}
	cmd := startSleep(t, nil)
	st, err := proc.StartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatalf("StartTime(sleep): %v", err)
	}
	if st < self {
		t.Errorf("sleep started at tick %d, before this test process (%d)", st, self)
	}
	again, err := proc.StartTime(cmd.Process.Pid)
	if err != nil || again != st {
		t.Errorf("StartTime again = %d, %v; want %d", again, err, st)
	}
	id := identify(t, cmd.Process.Pid)
	if id != (proc.Identity{PID: cmd.Process.Pid, StartTime: st}) {
		t.Errorf("Identify = %+v, want pid %d start %d", id, cmd.Process.Pid, st)
	}
	if !id.Alive() {
		t.Fatal("Alive = false for a running sleep")
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if _, err := proc.StartTime(id.PID); !errors.Is(err, proc.ErrExited) {
		t.Errorf("StartTime of a reaped process: %v, want ErrExited", err)
	}
	if id.Alive() {
		t.Error("Alive = true for a reaped process")
	}
}

// TestStartTimeOfZombie pins that a child that has exited but is not reaped
// yet (its /proc entry still exists) counts as exited.
func TestStartTimeOfZombie(t *testing.T) {
	cmd := startSleep(t, nil)
	id := identify(t, cmd.Process.Pid)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitLimit)
	for {
		_, err := proc.StartTime(id.PID)
		if errors.Is(err, proc.ErrExited) {
			break
		}
		if err != nil {
			t.Fatalf("StartTime of a dying child: %v, want ErrExited", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still not a zombie after %v", id.PID, waitLimit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Not reaped yet: the entry is there, and it is the zombie path that said so.
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(id.PID) + "/stat")
	if err != nil {
		t.Fatalf("the zombie's /proc entry: %v", err)
	}
	t.Logf("zombie: %s", strings.TrimSpace(string(raw))[:40])
	if id.Alive() {
		t.Error("Alive = true for a zombie")
	}
}

func TestStartTimeOfNoProcess(t *testing.T) {
	raw, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	pidMax, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	// PIDs stay below pid_max, so no process has this one.
	if _, err := proc.StartTime(pidMax); !errors.Is(err, proc.ErrExited) {
		t.Errorf("StartTime(pid_max %d): %v, want ErrExited", pidMax, err)
	}
	for _, pid := range []int{0, -1} {
		if _, err := proc.StartTime(pid); err == nil {
			t.Errorf("StartTime(%d) succeeded", pid)
		}
		if (proc.Identity{PID: pid}).Alive() {
			t.Errorf("Identity{PID: %d}.Alive() = true", pid)
		}
	}
}

// TestStartTimeWithParenthesesInCommandName runs a real process whose command
// name holds spaces and parentheses, which /proc/PID/stat does not escape.
func TestStartTimeWithParenthesesInCommandName(t *testing.T) {
	src, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	odd := filepath.Join(t.TempDir(), "a) b (c")
	if err := os.WriteFile(odd, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(odd, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	comm, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/comm")
	if got := strings.TrimSpace(string(comm)); got != "a) b (c" {
		t.Fatalf("command name is %q, the test needs the odd one", got)
	}
	self, _ := proc.StartTime(os.Getpid())
	st, err := proc.StartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatalf("StartTime: %v", err)
	}
	if st < self {
		t.Errorf("start time %d is before this test process's (%d): misparsed", st, self)
	}
}

func TestParseStartTime(t *testing.T) {
	tail := " 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 2990080 389"
	for _, tc := range []struct {
		name, stat string
		want       uint64
		err        error // nil: any error will do when wantErr
		wantErr    bool
	}{
		{name: "plain", stat: "1234 (sleep) S" + tail, want: 987654},
		{name: "odd command name", stat: "1234 (a) b (c)) R" + tail, want: 987654},
		{name: "zombie", stat: "1234 (sleep) Z" + tail, err: proc.ErrExited, wantErr: true},
		{name: "dead", stat: "1234 (sleep) X" + tail, err: proc.ErrExited, wantErr: true},
		{name: "no command name", stat: "1234 sleep S" + tail, wantErr: true},
		{name: "short", stat: "1234 (sleep) S 1 1234", wantErr: true},
		{name: "not a number", stat: "1234 (sleep) S" + strings.Replace(tail, "987654", "later", 1), wantErr: true},
	} {
		got, err := proc.ParseStartTime([]byte(tc.stat))
		switch {
		case tc.wantErr && err == nil:
			t.Errorf("%s: got %d, want an error", tc.name, got)
		case tc.wantErr && tc.err != nil && !errors.Is(err, tc.err):
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		case !tc.wantErr && (err != nil || got != tc.want):
			t.Errorf("%s: %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
}

// TestAliveRejectsReusedPID pins that a PID now held by another process (a
// different start time) is not taken for the one recorded.
func TestAliveRejectsReusedPID(t *testing.T) {
	cmd := startSleep(t, nil)
	id := identify(t, cmd.Process.Pid)
	reused := proc.Identity{PID: id.PID, StartTime: id.StartTime - 1}
	if reused.Alive() {
		t.Error("Alive = true for a PID whose start time does not match")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := reused.Wait(ctx); err != nil {
		t.Errorf("Wait on a reused PID: %v, want nil at once", err)
	}
	if !id.Alive() {
		t.Error("the real process is reported gone")
	}
}

// waitInBackground starts id.Wait (bounded by waitLimit) and checks that it
// does not return while the process runs.
func waitInBackground(t *testing.T, id proc.Identity) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		done <- id.Wait(ctx)
	}()
	select {
	case err := <-done:
		t.Fatalf("Wait returned while the process runs: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	return done
}

// TestWaitChild waits for a child of ours; it learns of the exit before the
// child is reaped.
func TestWaitChild(t *testing.T) {
	cmd := startSleep(t, nil)
	id := identify(t, cmd.Process.Pid)
	done := waitInBackground(t, id)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if id.Alive() {
		t.Error("Alive after Wait returned")
	}
}

// TestWaitNonChild waits for a process that is not our child: a shell starts
// sleep in the background and exits, so sleep is re-parented.
func TestWaitNonChild(t *testing.T) {
	out, err := exec.Command("sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatalf("double fork: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("reading the pid: %v (%q)", err, out)
	}
	id := identify(t, pid)
	t.Cleanup(func() {
		if id.Alive() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if ppid := parentOf(t, pid); ppid == os.Getpid() {
		t.Fatalf("sleep (pid %d) is our child, the test needs a stranger", pid)
	}
	done := waitInBackground(t, id)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if id.Alive() {
		t.Error("Alive after Wait returned")
	}
}

// parentOf reads field 4 (ppid) of /proc/PID/stat.
func parentOf(t *testing.T, pid int) int {
	t.Helper()
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		t.Fatal(err)
	}
	return ppid
}

// TestWaitEndsWithContext pins that a cancelled Wait returns the context's
// error, leaves the process alone and leaks no descriptor.
func TestWaitEndsWithContext(t *testing.T) {
	cmd := startSleep(t, nil)
	id := identify(t, cmd.Process.Pid)
	before := openFDs(t)
	for range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- id.Wait(ctx) }()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait after cancel: %v, want context.Canceled", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := id.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait past its deadline: %v, want context.DeadlineExceeded", err)
	}
	if !id.Alive() {
		t.Fatal("the process died")
	}
	if after := openFDs(t); after != before {
		t.Errorf("open descriptors: %d before, %d after", before, after)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestPollWait exercises the /proc polling that Wait falls back to on kernels
// without pidfds.
func TestPollWait(t *testing.T) {
	cmd := startSleep(t, nil)
	id := identify(t, cmd.Process.Pid)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if err := proc.PollWait(ctx, id, 5*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("PollWait on a live process: %v, want context.DeadlineExceeded", err)
	}
	cancel()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := proc.PollWait(ctx, id, 5*time.Millisecond); err != nil {
		t.Fatalf("PollWait: %v", err)
	}
}

func TestPidfdSupported(t *testing.T) {
	// Linux 5.3 on has pidfds; say which path Wait takes on this machine.
	t.Logf("pidfd supported: %v", proc.PidfdSupported())
}

// TestKillGroup signals a real process group: a shell leading its own group
// and its two background children end, a process outside the group does not.
func TestKillGroup(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & echo $!; sleep 30 & echo $!; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	members := []proc.Identity{identify(t, cmd.Process.Pid)}
	sc := bufio.NewScanner(stdout)
	for range 2 {
		if !sc.Scan() {
			t.Fatalf("reading the children's pids: %v", sc.Err())
		}
		pid, err := strconv.Atoi(sc.Text())
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, identify(t, pid))
	}
	outsider := identify(t, startSleep(t, &syscall.SysProcAttr{Setpgid: true}).Process.Pid)

	if err := proc.KillGroup(cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatalf("KillGroup: %v", err)
	}
	for _, m := range members {
		waitGone(t, m)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("the shell ended with %v, want killed by SIGTERM", err)
	}
	if !outsider.Alive() {
		t.Error("a process outside the group was signalled")
	}
}

// TestKillGroupFallsBackToPID signals a process that leads no group (it is in
// the test's own group): only it is signalled.
func TestKillGroupFallsBackToPID(t *testing.T) {
	cmd := startSleep(t, nil)
	if pgid, _ := syscall.Getpgid(cmd.Process.Pid); pgid == cmd.Process.Pid {
		t.Fatalf("sleep leads its own group %d, the test needs it not to", pgid)
	}
	if err := proc.KillGroup(cmd.Process.Pid, syscall.SIGUSR1); err != nil {
		t.Fatalf("KillGroup: %v", err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGUSR1 {
		t.Errorf("sleep ended with %v, want killed by SIGUSR1", err)
	}
}

// TestKillGroupRefusesNonPositivePID pins that pid 0 or -1, which kill(2)
// reads as "my own group" and "every process", are refused. Signal 0 only
// checks, so a broken guard fails the test without harming anything.
func TestKillGroupRefusesNonPositivePID(t *testing.T) {
	for _, pid := range []int{0, -1} {
		if err := proc.KillGroup(pid, syscall.Signal(0)); err == nil {
			t.Errorf("KillGroup(%d) succeeded", pid)
		}
	}
}

func TestParseSignal(t *testing.T) {
	for _, tc := range []struct {
		name string
		want syscall.Signal
	}{
		{"", syscall.SIGTERM},
		{"TERM", syscall.SIGTERM},
		{"SIGTERM", syscall.SIGTERM},
		{"sigterm", syscall.SIGTERM},
		{"int", syscall.SIGINT},
		{"SIGINT", syscall.SIGINT},
		{"KILL", syscall.SIGKILL},
		{"SigKill", syscall.SIGKILL},
		{"HUP", syscall.SIGHUP},
		{"QUIT", syscall.SIGQUIT},
		{"USR1", syscall.SIGUSR1},
		{"SIGUSR2", syscall.SIGUSR2},
	} {
		got, err := proc.ParseSignal(tc.name)
		if err != nil || got != tc.want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", tc.name, got, err, tc.want)
		}
		if back, err := proc.ParseSignal(proc.SignalName(got)); err != nil || back != got {
			t.Errorf("SignalName(%v) = %q, which ParseSignal reads as %v, %v", got, proc.SignalName(got), back, err)
		}
	}
	if got := proc.SignalName(syscall.SIGTERM); got != "SIGTERM" {
		t.Errorf("SignalName(SIGTERM) = %q", got)
	}
	for _, name := range []string{"SIG", "SIGFOO", "TERMX", "SIGSIGTERM", "9", "-15", " TERM"} {
		if got, err := proc.ParseSignal(name); !errors.Is(err, drivers.ErrBadConfig) {
			t.Errorf("ParseSignal(%q) = %v, %v; want ErrBadConfig", name, got, err)
		}
	}
}

func TestPortFree(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := proc.PortFree("127.0.0.1", port); err == nil {
		t.Errorf("PortFree(%d) = nil while it is listened on", port)
	}
	l.Close()
	if err := proc.PortFree("127.0.0.1", port); err != nil {
		t.Errorf("PortFree(%d) after close: %v", port, err)
	}
}

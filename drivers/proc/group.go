package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A worker started with Setpgid leads a process group whose ID is its PID.
// Its children (a wrapper script's server, a run.sh that does not exec) stay
// in that group, and may outlive the leader: they keep the worker's port. The
// group's ID is safe to signal while the ID is pinned: while the leader runs,
// while it is a zombie not yet reaped (WaitExited), or while any member runs
// (the kernel reuses no PID that is still some group's ID). Once all are
// gone, a later process may get the same PID and lead a group of its own, so
// a group is signalled only while one of these holds, and a group found
// later, leaderless, only through the members that carry the worker's mark
// in their environment (KillMarked).

// stat is what golb reads of /proc/PID/stat.
type stat struct {
	state     byte
	pgrp      int
	startTime uint64
}

// readStat reads /proc/PID/stat.
func readStat(pid int) (stat, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, err
	}
	return parseStat(raw)
}

// parseStat reads the state (field 3), process group (field 5) and start
// time (field 22) of a /proc/PID/stat.
func parseStat(raw []byte) (stat, error) {
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return stat{}, errors.New("no command name")
	}
	fields := strings.Fields(string(raw[i+1:]))
	if len(fields) < 20 || len(fields[0]) != 1 {
		return stat{}, fmt.Errorf("%d fields after the command name, want at least 20", len(fields))
	}
	pgrp, err := strconv.Atoi(fields[2])
	if err != nil {
		return stat{}, fmt.Errorf("process group: %w", err)
	}
	st, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return stat{}, fmt.Errorf("start time: %w", err)
	}
	return stat{state: fields[0][0], pgrp: pgrp, startTime: st}, nil
}

// running reports whether a process in this state still runs code (a
// zombie has let go of its files and ports; only its exit status is left).
func (s stat) running() bool { return s.state != 'Z' && s.state != 'X' }

// processes calls fn for each process in /proc that still runs.
func processes(fn func(pid int, st stat)) error {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("listing processes: %w", err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		st, err := readStat(pid)
		if err != nil || !st.running() {
			continue // gone meanwhile
		}
		fn(pid, st)
	}
	return nil
}

// GroupMembers returns the processes of process group pgid that still run
// (zombies left out), the leader among them while it runs.
func GroupMembers(pgid int) ([]Identity, error) {
	if pgid <= 0 {
		return nil, fmt.Errorf("listing process group: invalid id %d", pgid)
	}
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return nil, nil // the common case, without reading /proc
	}
	var out []Identity
	err := processes(func(pid int, st stat) {
		if st.pgrp == pgid {
			out = append(out, Identity{PID: pid, StartTime: st.startTime})
		}
	})
	return out, err
}

// GroupRunning reports whether a process of group pgid still runs. A zombie
// does not count: kill(-pgid, 0) still finds one until its parent reaps it,
// which an init that reaps no orphans never does.
func GroupRunning(pgid int) bool {
	m, err := GroupMembers(pgid)
	return err != nil || len(m) > 0
}

// WaitExited blocks until the child pid has exited, without reaping it:
// until exec.Cmd.Wait reaps it, its zombie keeps its PID, and so its process
// group's ID, from being reused, and the rest of the group can be killed
// safely. It fails (ECHILD) for a process that is not a child of ours.
func WaitExited(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("waiting for pid %d: %w", pid, err)
		}
		return nil
	}
}

// Group ends what is left of a worker's process group once its leader has
// exited: the zero value plus PGID (the leader's PID) is ready to use. The
// goroutine that sees the leader exit calls Drain; Stop holds the group
// meanwhile, so that the members get its timeout before SIGKILL; Destroy
// calls Kill.
type Group struct {
	PGID  int
	holds atomic.Int32 // Stops under way
	kill  atomic.Bool  // Kill was called: no more holding
}

// Hold keeps Drain from killing the members while a Stop gives them its
// timeout. The Stop calls the returned func when it returns.
func (g *Group) Hold() (release func()) {
	g.holds.Add(1)
	return func() { g.holds.Add(-1) }
}

// Signal sends sig to the group. Call it only while the group's ID is
// pinned: before Drain has returned.
func (g *Group) Signal(sig syscall.Signal) error {
	if g.PGID <= 0 {
		return fmt.Errorf("signalling process group: invalid id %d", g.PGID)
	}
	if err := syscall.Kill(-g.PGID, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signalling process group %d: %w", g.PGID, err)
	}
	return nil
}

// Kill SIGKILLs the group, and makes Drain kill whatever is left even while
// a Stop holds it.
func (g *Group) Kill() error {
	g.kill.Store(true)
	return g.Signal(syscall.SIGKILL)
}

// drainPoll is the longest pause between two looks at a group being drained.
const drainPoll = 50 * time.Millisecond

// Drain is called once the group's leader has exited, while its ID is still
// pinned (before a child leader is reaped, or at once for another's). Unless
// a Stop holds the group, it SIGKILLs what is left; it returns, with the
// number of members it found left behind, once no member runs.
func (g *Group) Drain() (left int) {
	left = -1
	for pause := time.Millisecond; ; pause = min(2*pause, drainPoll) {
		members, err := GroupMembers(g.PGID)
		if err == nil && len(members) == 0 {
			return max(left, 0)
		}
		if left < 0 {
			left = len(members)
		}
		if g.holds.Load() == 0 || g.kill.Load() {
			_ = g.Signal(syscall.SIGKILL)
		}
		time.Sleep(pause)
	}
}

// Environ reports whether process p (by PID and start time) has kv
// ("NAME=value") in its environment, as it was when p started its program.
func Environ(p Identity, kv string) bool {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/environ")
	if err != nil || !p.Alive() {
		return false
	}
	for _, v := range bytes.Split(raw, []byte{0}) {
		if string(v) == kv {
			return true
		}
	}
	return false
}

// FindMarked returns the running processes whose environment holds kv
// ("NAME=value", e.g. GOLB_WORKER_ID=hello-1): what is left of a worker,
// wherever it went, as long as it kept the environment it was given. A
// pgid > 0 looks in that process group alone.
func FindMarked(pgid int, kv string) ([]Identity, error) {
	var out []Identity
	err := processes(func(pid int, st stat) {
		if pgid > 0 && st.pgrp != pgid {
			return
		}
		if p := (Identity{PID: pid, StartTime: st.startTime}); Environ(p, kv) {
			out = append(out, p)
		}
	})
	return out, err
}

// KillMarked SIGKILLs the running members of process group pgid whose
// environment holds kv, each through a pidfd (so that a PID reused meanwhile
// is not hit), and returns once none runs or ctx ends, with how many it
// found. It is for a group whose leader is gone and was not watched (the
// plugin was down): its ID may in principle be another group's by now, and
// only the mark tells the worker's members from others.
func KillMarked(ctx context.Context, pgid int, kv string) (int, error) {
	if pgid <= 0 {
		return 0, fmt.Errorf("killing process group: invalid id %d", pgid)
	}
	found := -1
	for pause := time.Millisecond; ; pause = min(2*pause, drainPoll) {
		left, err := FindMarked(pgid, kv)
		if err != nil {
			return max(found, 0), err
		}
		if found < 0 {
			found = len(left)
		}
		if len(left) == 0 {
			return found, nil
		}
		for _, p := range left {
			p.kill(syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return found, fmt.Errorf("killing what is left of process group %d: %w", pgid, ctx.Err())
		case <-time.After(pause):
		}
	}
}

// kill sends sig to p through a pidfd, after checking that the pidfd's
// process is p (its start time), or by PID where pidfds are missing.
func (p Identity) kill(sig syscall.Signal) {
	fd, err := unix.PidfdOpen(p.PID, 0)
	if err != nil {
		if p.Alive() {
			_ = syscall.Kill(p.PID, sig)
		}
		return
	}
	defer unix.Close(fd)
	if p.Alive() { // the pidfd pins the process it names: is it still p?
		_ = unix.PidfdSendSignal(fd, sig, nil, 0)
	}
}

// Package proc is the runtime-independent machinery of process-style golb
// drivers: telling a process apart from a later one that reuses its PID,
// waiting for a process that is not our child, signalling process groups, and
// keeping each worker's record in an atomically written JSON state file. It
// imports only the standard library, golang.org/x/sys/unix and the drivers SDK,
// so an out-of-tree driver can use it as freely as the built-in ones.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/golb/golb/drivers"
)

// pollInterval is how often Wait looks at /proc on a kernel without pidfds.
const pollInterval = 100 * time.Millisecond

// StartTime returns field 22 (starttime) of /proc/PID/stat: the clock ticks
// since boot at which the process started. With the PID it names one process
// for good, since a PID is reused only by a process that starts later. The
// error wraps ErrExited for a process that does not exist or is a zombie.
func StartTime(pid int) (uint64, error) {
	if pid <= 0 {
		return 0, fmt.Errorf("reading start time: invalid pid %d", pid)
	}
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return 0, fmt.Errorf("reading %s: %w", path, ErrExited)
	}
	if err != nil {
		return 0, fmt.Errorf("reading start time: %w", err)
	}
	st, err := parseStartTime(raw)
	if err != nil {
		return 0, fmt.Errorf("parsing %s: %w", path, err)
	}
	return st, nil
}

// parseStartTime reads the start time from the contents of a /proc/PID/stat.
func parseStartTime(raw []byte) (uint64, error) {
	// The command name (field 2) may hold spaces and parentheses: split after
	// the last ')'.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	fields := strings.Fields(string(raw[i+1:]))
	// fields[0] is field 3 (state); starttime is field 22.
	if len(fields) < 20 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 20", len(fields))
	}
	if fields[0] == "Z" || fields[0] == "X" {
		return 0, ErrExited
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// Identity names one process for good: its PID and its start time. The JSON
// field names are those of golb's drivers' state files.
type Identity struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"` // /proc/PID/stat field 22, clock ticks since boot
}

// Identify returns the identity of the running process pid. The error wraps
// ErrExited when it has already exited.
func Identify(pid int) (Identity, error) {
	st, err := StartTime(pid)
	if err != nil {
		return Identity{}, err
	}
	return Identity{PID: pid, StartTime: st}, nil
}

// Alive reports whether the process still runs: its PID exists, is no zombie,
// and has the same start time, so that a reused PID is never taken for it.
func (id Identity) Alive() bool {
	st, err := StartTime(id.PID)
	return err == nil && st == id.StartTime
}

// Wait blocks until the process is gone (exited, even if not reaped yet, or
// its PID reused) and then returns nil, or until ctx ends and then returns
// ctx.Err(). It works for any process, not only a child of ours: it polls a
// pidfd where the kernel has them (Linux 5.3 on) and /proc otherwise.
func (id Identity) Wait(ctx context.Context) error {
	fd, err := unix.PidfdOpen(id.PID, 0)
	if err != nil {
		return id.poll(ctx, pollInterval)
	}
	defer unix.Close(fd)
	// The pidfd pins the process it was opened on; recheck the start time in
	// case the PID was reused before it was opened.
	if !id.Alive() {
		return nil
	}
	err = waitReadable(ctx, fd)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		// The pidfd failed us (no pipe, a poll error): fall back to /proc.
		return id.poll(ctx, pollInterval)
	}
}

// poll checks /proc every interval until the process is gone or ctx ends.
func (id Identity) poll(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for id.Alive() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// waitReadable blocks until fd is readable (a pidfd is, once its process has
// exited) or ctx ends. The end of ctx wakes the poll through a pipe.
func waitReadable(ctx context.Context, fd int) error {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return fmt.Errorf("creating wake-up pipe: %w", err)
	}
	woken := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(woken)
		_, _ = unix.Write(p[1], []byte{0})
	})
	defer func() {
		if !stop() {
			<-woken // the wake-up write must not meet a closed (or reused) fd
		}
		unix.Close(p[0])
		unix.Close(p[1])
	}()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(p[0]), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("polling pidfd: %w", err)
		case fds[0].Revents != 0:
			return nil
		case fds[1].Revents != 0:
			return ctx.Err()
		}
	}
}

// PidfdSupported reports whether this kernel has pidfds, which let Wait learn
// of an exit at once instead of polling /proc.
func PidfdSupported() bool {
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// KillGroup sends sig to the process group that pid leads (a worker started
// with Setpgid), or to pid alone when it leads none. A pid of 0 or less is
// refused: kill(2) would read it as the caller's own group, or every process.
func KillGroup(pid int, sig syscall.Signal) error {
	if pid <= 0 {
		return fmt.Errorf("signalling process group: invalid pid %d", pid)
	}
	if err := syscall.Kill(-pid, sig); err == nil {
		return nil
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signalling pid %d: %w", pid, err)
	}
	return nil
}

// ParseSignal reads a signal name as golb's Stop takes it: "" is SIGTERM, and
// the names of drivers.StopSignals are accepted in any case, with or without
// the SIG prefix. Any other name is an error wrapping drivers.ErrBadConfig.
// It is drivers.ParseSignal, kept here for the drivers that import proc.
func ParseSignal(name string) (syscall.Signal, error) {
	return drivers.ParseSignal(name)
}

// SignalName is sig's name, e.g. "SIGTERM" (for a stop signal the name
// ParseSignal reads), for logs: a syscall.Signal logged as is turns into a bare number once a
// plugin's log crosses JSON. A signal without a name gives its number.
func SignalName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return strconv.Itoa(int(sig))
}

// PortFree returns nil when host:port can be bound right now, and the bind
// error otherwise.
func PortFree(host string, port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return l.Close()
}

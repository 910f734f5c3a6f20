package bwrap

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/proc"
)

// stateVersion is the version of workerState in handles and state files.
// Bump it when a field changes meaning, and keep decoding the old ones.
const stateVersion = 1

// workerState is the bwrap driver's record of one worker. It is the opaque
// State of the worker's drivers.Handle and is also kept in
// data_dir/workers/ID.json, so that List finds workers after any crash.
//
// A worker is two processes on the host: the outer bwrap (PID, the worker's
// identity: it exits with the worker's main process and reports its exit
// status) and the sandbox's init (SandboxPID, PID 1 inside), whose process
// group holds the worker and whose death ends every process in the sandbox.
// Both are recorded with their start times so that a reused PID is never
// taken for them.
type workerState struct {
	Version          int    `json:"version"`
	proc.Identity           // pid and start_time: the outer bwrap
	SandboxPID       int    `json:"sandbox_pid"`
	SandboxStartTime uint64 `json:"sandbox_start_time"`
	PIDNamespace     uint64 `json:"pid_namespace,omitempty"`
	drivers.Record
	Command []string `json:"command"`
	Binds   []string `json:"binds,omitempty"`
	Stdout  string   `json:"stdout"`
	Stderr  string   `json:"stderr"`
}

func (s workerState) handle(id string) *drivers.Handle {
	s.Version = stateVersion
	return s.Record.Handle(Name, id, stateVersion, s)
}

func decodeState(hd *drivers.Handle) (workerState, error) {
	var s workerState
	if err := drivers.DecodeState(Name, stateVersion, hd, &s); err != nil {
		return workerState{}, err
	}
	return s, s.check(stateVersion)
}

// readState reads worker id's record from its state file.
func readState(store proc.Store, id string) (workerState, error) {
	var s workerState
	if err := store.Read(id, &s); err != nil {
		return workerState{}, err
	}
	return s, s.check(s.Version)
}

// writeState writes worker id's record to its state file, atomically.
func writeState(store proc.Store, id string, s workerState) error {
	s.Version = stateVersion
	return store.Write(id, s)
}

// check refuses a record of another version, or one that does not name both
// processes.
func (s workerState) check(version int) error {
	if version != stateVersion {
		return fmt.Errorf("%w: bwrap driver state version %d, want %d", drivers.ErrStaleHandle, version, stateVersion)
	}
	if s.PID <= 0 || s.SandboxPID <= 0 {
		return fmt.Errorf("%w: no pid in handle state", drivers.ErrStaleHandle)
	}
	return nil
}

// pidNamespace returns the inode of the PID namespace pid lives in, or 0 when
// it cannot be read.
func pidNamespace(pid int) uint64 {
	link, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
	if err != nil {
		return 0
	}
	// "pid:[4026532181]"
	link = strings.TrimSuffix(strings.TrimPrefix(link, "pid:["), "]")
	n, _ := strconv.ParseUint(link, 10, 64)
	return n
}

// sandboxAlive reports whether the sandbox's init still runs, by PID, start
// time and (when readable) PID namespace.
func (s workerState) sandboxAlive() bool {
	if !(proc.Identity{PID: s.SandboxPID, StartTime: s.SandboxStartTime}).Alive() {
		return false
	}
	if s.PIDNamespace != 0 {
		if ns := pidNamespace(s.SandboxPID); ns != 0 && ns != s.PIDNamespace {
			return false
		}
	}
	return true
}

// signal sends sig to the worker: the process group of the sandbox's init,
// which holds every process of the worker but not the outer bwrap. Init
// itself has no handlers, so only SIGKILL ends it (and with it the sandbox).
func (s workerState) signal(sig syscall.Signal) {
	if s.sandboxAlive() {
		_ = proc.KillGroup(s.SandboxPID, sig)
	}
}

// reap ends what is left of a sandbox whose worker has exited. bwrap's init
// waits for every process in the sandbox, not only the worker, so one that
// left the worker's process group would otherwise keep the sandbox alive.
func (s workerState) reap() { s.signal(syscall.SIGKILL) }

// kill ends the sandbox and the outer bwrap at once.
func (s workerState) kill() {
	s.signal(syscall.SIGKILL)
	if s.Alive() {
		_ = proc.KillGroup(s.PID, syscall.SIGKILL)
	}
}

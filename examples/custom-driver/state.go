package bwrap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/golb/golb/drivers"
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
	Version          int               `json:"version"`
	PID              int               `json:"pid"`
	StartTime        uint64            `json:"start_time"` // /proc/PID/stat field 22, clock ticks since boot
	SandboxPID       int               `json:"sandbox_pid"`
	SandboxStartTime uint64            `json:"sandbox_start_time"`
	PIDNamespace     uint64            `json:"pid_namespace,omitempty"`
	Group            string            `json:"group"`
	Address          string            `json:"address"`
	Labels           map[string]string `json:"labels"`
	StartedAt        time.Time         `json:"started_at"`
	Command          []string          `json:"command"`
	Binds            []string          `json:"binds,omitempty"`
	Stdout           string            `json:"stdout"`
	Stderr           string            `json:"stderr"`
}

func (s workerState) handle(id string) *drivers.Handle {
	s.Version = stateVersion
	blob, _ := json.Marshal(s)
	return &drivers.Handle{
		ID:           id,
		Group:        s.Group,
		Driver:       Name,
		Address:      s.Address,
		Labels:       s.Labels,
		StartedAt:    s.StartedAt,
		StateVersion: stateVersion,
		State:        blob,
	}
}

func decodeState(version int, blob []byte) (workerState, error) {
	if version != stateVersion {
		return workerState{}, fmt.Errorf("%w: bwrap driver state version %d, want %d", drivers.ErrStaleHandle, version, stateVersion)
	}
	var s workerState
	if err := json.Unmarshal(blob, &s); err != nil {
		return workerState{}, fmt.Errorf("%w: decoding bwrap driver state: %v", drivers.ErrStaleHandle, err)
	}
	if s.PID <= 0 || s.SandboxPID <= 0 {
		return workerState{}, fmt.Errorf("%w: no pid in handle state", drivers.ErrStaleHandle)
	}
	return s, nil
}

// writeState writes the record atomically (temp file and rename).
func writeState(path string, s workerState) error {
	s.Version = stateVersion
	blob, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding worker state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, blob, 0o644); err != nil {
		return fmt.Errorf("writing worker state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing worker state: %w", err)
	}
	return nil
}

func readState(path string) (workerState, error) {
	blob, err := os.ReadFile(path)
	if err != nil {
		return workerState{}, err
	}
	var v struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(blob, &v); err != nil {
		return workerState{}, fmt.Errorf("%w: %s: %v", drivers.ErrStaleHandle, path, err)
	}
	return decodeState(v.Version, blob)
}

// procStartTime reads field 22 (starttime) of /proc/PID/stat. It fails for a
// process that does not exist or is a zombie.
func procStartTime(pid int) (uint64, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: split after
	// the last ')'.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(raw[i+1:]))
	// fields[0] is field 3 (state); starttime is field 22.
	if len(fields) < 20 {
		return 0, fmt.Errorf("parsing /proc/%d/stat: short", pid)
	}
	if fields[0] == "Z" || fields[0] == "X" {
		return 0, errProcessExited
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

var errProcessExited = errors.New("process has exited")

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

// alive reports whether the outer bwrap recorded in s still runs: same PID
// and the same start time, so a reused PID is never taken for our worker.
func (s workerState) alive() bool {
	st, err := procStartTime(s.PID)
	return err == nil && st == s.StartTime
}

// sandboxAlive reports whether the sandbox's init still runs, by PID, start
// time and (when readable) PID namespace.
func (s workerState) sandboxAlive() bool {
	st, err := procStartTime(s.SandboxPID)
	if err != nil || st != s.SandboxStartTime {
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
		killGroup(s.SandboxPID, sig)
	}
}

// reap ends what is left of a sandbox whose worker has exited. bwrap's init
// waits for every process in the sandbox, not only the worker, so one that
// left the worker's process group would otherwise keep the sandbox alive.
func (s workerState) reap() { s.signal(syscall.SIGKILL) }

// kill ends the sandbox and the outer bwrap at once.
func (s workerState) kill() {
	s.signal(syscall.SIGKILL)
	if s.alive() {
		killGroup(s.PID, syscall.SIGKILL)
	}
}

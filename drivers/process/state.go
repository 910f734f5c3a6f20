package process

import (
	"fmt"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/proc"
)

// stateVersion is the version of workerState in handles and state files.
// Bump it when a field changes meaning, and keep decoding the old ones.
const stateVersion = 1

// workerState is the process driver's record of one worker. It is the opaque
// State of the worker's drivers.Handle and is also kept in
// data_dir/workers/ID.json, so List finds workers after any crash.
type workerState struct {
	Version       int `json:"version"`
	proc.Identity     // pid and start_time: the worker, the leader of its process group
	drivers.Record
	Command []string `json:"command"`
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

// check refuses a record of another version, or one that names no process.
func (s workerState) check(version int) error {
	if version != stateVersion {
		return fmt.Errorf("%w: process driver state version %d, want %d", drivers.ErrStaleHandle, version, stateVersion)
	}
	if s.PID <= 0 {
		return fmt.Errorf("%w: no pid in handle state", drivers.ErrStaleHandle)
	}
	return nil
}

package process

import (
	"encoding/json"
	"fmt"
	"time"

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
	Version       int               `json:"version"`
	proc.Identity                   // pid and start_time: the worker, the leader of its process group
	Group         string            `json:"group"`
	Address       string            `json:"address"`
	Labels        map[string]string `json:"labels"`
	StartedAt     time.Time         `json:"started_at"`
	Command       []string          `json:"command"`
	Stdout        string            `json:"stdout"`
	Stderr        string            `json:"stderr"`
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
	var s workerState
	if version == stateVersion {
		if err := json.Unmarshal(blob, &s); err != nil {
			return workerState{}, fmt.Errorf("%w: decoding process driver state: %v", drivers.ErrStaleHandle, err)
		}
	}
	return s, s.check(version)
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

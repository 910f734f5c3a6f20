package nice

import (
	"fmt"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/proc"
)

// stateVersion is the version of state in handles. Bump it when a field
// changes meaning (and keep reading the old one).
const stateVersion = 1

// state is the driver's record of one worker: the opaque State of its
// Handle, and its state file, data_dir/workers/ID.json.
type state struct {
	proc.Identity         // pid and start time: this process, not a later one with its pid
	drivers.Record        // group, address, labels, start time
	Stderr         string `json:"stderr"` // its stderr log, for the exit's last words
}

func (s state) handle(id string) *drivers.Handle {
	return s.Record.Handle(Name, id, stateVersion, s)
}

// decodeState reads a handle's state; another version is ErrStaleHandle.
func decodeState(h *drivers.Handle) (state, error) {
	var s state
	if err := drivers.DecodeState(Name, stateVersion, h, &s); err != nil {
		return state{}, err
	}
	if s.PID <= 0 {
		return state{}, fmt.Errorf("%w: no pid in the state of worker %s", drivers.ErrStaleHandle, h.ID)
	}
	return s, nil
}

func readState(store proc.Store, id string) (state, error) {
	var s state
	return s, store.Read(id, &s)
}

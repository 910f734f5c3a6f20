package drivers

import (
	"encoding/json"
	"fmt"
	"time"
)

// Record is what every driver's state keeps of a worker besides its own
// facts (a PID, a container id). Embedded in a driver's state struct, its
// fields keep their JSON names there.
type Record struct {
	Group     string            `json:"group"`
	Address   string            `json:"address"`
	Labels    map[string]string `json:"labels"`
	StartedAt time.Time         `json:"started_at"`
}

// Handle returns worker id's Handle for driver, carrying state (the
// driver's whole state struct, Record embedded) as JSON at version.
func (r Record) Handle(driver, id string, version int, state any) *Handle {
	blob, _ := json.Marshal(state) // a driver's own struct of plain fields
	return &Handle{
		ID:           id,
		Group:        r.Group,
		Driver:       driver,
		Address:      r.Address,
		Labels:       r.Labels,
		StartedAt:    r.StartedAt,
		StateVersion: version,
		State:        blob,
	}
}

// DecodeState decodes hd's State into state if hd has version want.
// Anything else is ErrStaleHandle, naming driver.
func DecodeState(driver string, want int, hd *Handle, state any) error {
	if hd.StateVersion != want {
		return fmt.Errorf("%w: %s driver state version %d, want %d", ErrStaleHandle, driver, hd.StateVersion, want)
	}
	if err := json.Unmarshal(hd.State, state); err != nil {
		return fmt.Errorf("%w: decoding %s driver state: %v", ErrStaleHandle, driver, err)
	}
	return nil
}

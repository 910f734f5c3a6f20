package containerd

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/golb/golb/drivers"
)

// stateVersion is the version of workerState in handles. Bump it when a field
// changes meaning, and keep decoding the old ones.
const stateVersion = 1

// labelAddress carries a worker's host:port on its container, so that List
// rebuilds its handle from containerd alone.
const labelAddress = "golb.address"

// workerState is the containerd driver's record of one worker: the opaque
// State of its drivers.Handle. containerd keeps everything else (labels,
// the task and its exit status), so the container id is what Recover needs;
// the task's pid tells a re-attached task from a new one.
type workerState struct {
	Version     int    `json:"version"`
	ContainerID string `json:"container_id"`
	Namespace   string `json:"namespace"`
	Pid         uint32 `json:"pid"`
	Image       string `json:"image"`
	Log         string `json:"log"`
	drivers.Record
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
	if s.ContainerID == "" || !validContainerID(s.ContainerID) {
		return workerState{}, fmt.Errorf("%w: no valid container id in handle state", drivers.ErrStaleHandle)
	}
	return s, nil
}

// containerID is the container of worker id: golb-ID when that is a valid
// containerd id, else golb- and a digest of the id (the worker label keeps
// the id itself).
func containerID(id string) string {
	if c := "golb-" + id; validContainerID(c) {
		return c
	}
	sum := sha256.Sum256([]byte(id))
	return "golb-" + hex.EncodeToString(sum[:12])
}

func validContainerID(c string) bool { return len(c) <= 76 && namespaceRE.MatchString(c) }

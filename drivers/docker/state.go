package docker

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/golb/golb/drivers"
)

// stateVersion is the version of workerState in handles. Bump it when a field
// changes meaning, and keep decoding the old ones.
const stateVersion = 1

// workerState is the Docker driver's record of one worker: the opaque State of
// its drivers.Handle. The engine keeps everything else (labels, port, exit
// status), so the container id is all Recover needs; the rest is for people
// reading a handle.
type workerState struct {
	Version     int    `json:"version"`
	ContainerID string `json:"container_id"`
	Name        string `json:"name"`
	Image       string `json:"image"`
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
	if s.ContainerID == "" {
		return workerState{}, fmt.Errorf("%w: no container id in handle state", drivers.ErrStaleHandle)
	}
	return s, nil
}

// stateFromInspect rebuilds a worker's record from the engine alone, as List
// and Recover do after a crash.
func stateFromInspect(ins container.InspectResponse) workerState {
	s := workerState{Version: stateVersion}
	if ins.ContainerJSONBase != nil {
		s.ContainerID = ins.ID
		s.Name = strings.TrimPrefix(ins.Name, "/")
		if ins.State != nil {
			s.StartedAt = parseTime(ins.State.StartedAt)
		}
		if ins.HostConfig != nil {
			s.Address = publishedAddress(ins.HostConfig)
		}
	}
	if ins.Config != nil {
		s.Image = ins.Config.Image
		s.Labels = ins.Config.Labels
		s.Group = ins.Config.Labels[drivers.LabelGroup]
	}
	return s
}

// publishedAddress is host:port of the worker's published port (golb
// publishes exactly one).
func publishedAddress(hc *container.HostConfig) string {
	for _, bindings := range hc.PortBindings {
		for _, b := range bindings {
			if b.HostPort != "" {
				return net.JoinHostPort(drivers.DialHost(b.HostIP), b.HostPort)
			}
		}
	}
	return ""
}

// parseTime reads the engine's RFC 3339 times; the zero time stays zero.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t.UTC()
}

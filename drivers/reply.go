package drivers

import (
	"fmt"
	"net"
	"strconv"
)

// MaxStateSize bounds a Handle's State blob as a plugin returns it (1 MiB).
// The blob is a driver's own record (a PID and its start time, a container
// id), a few hundred bytes in practice; golb keeps it in memory and hands it
// back in Recover, so a reply with a larger one is refused as a bad reply.
const MaxStateSize = 1 << 20

// checkHandle says what is wrong with a handle a plugin returned, or "",
// and cuts its free text (group, driver, labels) to size. wantID and
// wantPort, when set, are the worker id and port the handle must carry
// (Start's spec): golb health-checks and proxies to the address, so an
// address on another port (another service, perhaps) is refused.
func checkHandle(h *Handle, wantID string, wantPort int) string {
	switch {
	case h == nil:
		return "no worker handle"
	case h.ID == "":
		return "handle with an empty worker id"
	case wantID != "" && h.ID != wantID:
		return fmt.Sprintf("handle for worker %q, want %q", h.ID, wantID)
	case h.Address == "":
		return "empty worker address"
	case len(h.Address) > maxAddress:
		return fmt.Sprintf("worker address of %d bytes, over the limit of %d", len(h.Address), maxAddress)
	case len(h.State) > MaxStateSize:
		return fmt.Sprintf("state of %d bytes, over the limit of %d", len(h.State), MaxStateSize)
	}
	host, port, err := net.SplitHostPort(h.Address)
	if err != nil || host == "" {
		return fmt.Sprintf("worker address %q is not host:port", h.Address)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Sprintf("worker address %q has no valid port (1-65535)", h.Address)
	}
	if wantPort != 0 && int(n) != wantPort {
		return fmt.Sprintf("worker address %q is not on the worker's port %d", h.Address, wantPort)
	}
	h.Group, h.Driver = cutText(h.Group, maxShortText), cutText(h.Driver, maxShortText)
	h.Labels = cutMap(h.Labels)
	return ""
}

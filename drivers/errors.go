package drivers

import "errors"

// Sentinel errors. They survive the gRPC hop: the client maps status codes back
// to these, so callers can use errors.Is on both sides of the plugin boundary.
var (
	// ErrNotFound: no worker with that id is known to the driver.
	ErrNotFound = errors.New("worker not found")
	// ErrBadConfig: the spec or settings cannot be used; fix the config.
	ErrBadConfig = errors.New("bad driver config")
	// ErrRuntimeUnavailable: the runtime (daemon, socket, binary) cannot be reached.
	ErrRuntimeUnavailable = errors.New("runtime unavailable")
	// ErrPortInUse: the worker's port is already taken on the host.
	ErrPortInUse = errors.New("port already in use")
	// ErrStaleHandle: the handle no longer matches a live worker (exited, or its
	// PID was reused), so it cannot be recovered.
	ErrStaleHandle = errors.New("stale handle")
)

// ErrPluginExited: the plugin process is gone (crashed, killed). The workers it
// started keep running; a new plugin instance can Recover them.
var ErrPluginExited = errors.New("driver plugin is not running")

// ErrBadReply: the plugin answered a call with a reply golb cannot use (a
// Start with no handle, a handle with no or an unparsable address, a state
// blob over MaxStateSize). It is the plugin's bug, not the config's. The
// client returns it as a *BadReplyError, which says what was wrong.
var ErrBadReply = errors.New("bad reply from driver plugin")

// BadReplyError is a reply the client refused. It matches ErrBadReply.
type BadReplyError struct {
	Driver  string // the driver's name; "" when the client was not told it
	Call    string // "Start", "List"
	Problem string // what was wrong: "empty worker address"
}

func (e *BadReplyError) Error() string {
	who := "driver plugin"
	if e.Driver != "" {
		who = "driver " + e.Driver
	}
	return who + ": " + e.Call + " reply: " + e.Problem
}

func (e *BadReplyError) Unwrap() error { return ErrBadReply }

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

package core

import "errors"

var (
	// ErrDriverNotFound: neither a built-in driver nor golb-driver-NAME in plugin_dir.
	ErrDriverNotFound = errors.New("driver not found")
	// ErrConfig: the config has errors; the diagnostics were printed.
	ErrConfig = errors.New("invalid config")
	// ErrDataDirInUse: another golb agent holds the data_dir lock.
	ErrDataDirInUse = errors.New("data_dir locked")
	// ErrPinMismatch: an external plugin's SHA-256 is not its pin's
	// (PinError says both).
	ErrPinMismatch = errors.New("plugin does not match its sha256 pin")
	// ErrWorkersLeft: shutdown could not stop some workers; they may still
	// run (Run's error names them; the log says how to kill each).
	ErrWorkersLeft = errors.New("workers left running")
	// ErrScaleBounds: a scale request outside the group's bounds (its
	// scale block's, or 0 to 1000 without one).
	ErrScaleBounds = errors.New("count outside the group's bounds")
	// ErrReloadRefused: a reload asked for a change that cannot apply live
	// (ReloadError says which); nothing changed.
	ErrReloadRefused = errors.New("reload refused")
	// ErrNotRunning: a reload asked of an agent that is not running (still
	// starting, or shutting down).
	ErrNotRunning = errors.New("golb is not running")
)

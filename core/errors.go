package core

import "errors"

var (
	// ErrDriverNotFound: neither a built-in driver nor golb-driver-NAME in plugin_dir.
	ErrDriverNotFound = errors.New("driver not found")
	// ErrConfig: the config has errors; the diagnostics were printed.
	ErrConfig = errors.New("invalid config")
	// ErrDataDirInUse: another golb agent holds the data_dir lock.
	ErrDataDirInUse = errors.New("data_dir locked")
	// ErrScaleBounds: a scale request outside the group's bounds.
	ErrScaleBounds = errors.New("count outside the group's scale bounds")
)

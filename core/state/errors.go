package state

import "errors"

var (
	// ErrNoGroup: no group of that name is configured.
	ErrNoGroup = errors.New("no such group")
	// ErrNoDriver: no driver plugin of that name has been recorded.
	ErrNoDriver = errors.New("no such driver")
)

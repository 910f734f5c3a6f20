package state

import "errors"

// ErrNoGroup: no group of that name is configured.
var ErrNoGroup = errors.New("no such group")

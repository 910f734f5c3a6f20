package workerapp

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidConfig is wrapped by every settings error (see SettingError).
	ErrInvalidConfig = errors.New("invalid worker settings")

	// ErrDrainTimeout is returned by Run when in-flight requests did not finish
	// within Config.DrainTimeout; their connections were closed.
	ErrDrainTimeout = errors.New("drain timeout exceeded")

	// ErrAlreadyStarted is returned by Run when called a second time on one Server.
	ErrAlreadyStarted = errors.New("worker server already started")
)

// SettingError reports one bad setting, named by its environment variable,
// so that a user can fix it from the one-line message alone.
type SettingError struct {
	Setting string // environment variable, e.g. "GOLB_FAILURE_RATE"
	Value   string // the value as given; "" when unset
	Reason  string // what a valid value looks like
}

// Error renders `GOLB_FAILURE_RATE "1.5": must be between 0 and 1`, or
// `PORT is not set: ...` for a missing required setting.
func (e *SettingError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s is not set: %s", e.Setting, e.Reason)
	}
	return fmt.Sprintf("%s %q: %s", e.Setting, e.Value, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidConfig) true for every SettingError.
func (e *SettingError) Is(target error) bool { return target == ErrInvalidConfig }

package proc

import "errors"

// ErrExited: the process is not running any more. It has exited (a zombie not
// yet reaped counts as exited) or there is no process with that PID at all.
var ErrExited = errors.New("process has exited")

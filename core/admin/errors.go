package admin

import (
	"errors"
	"fmt"
)

// Errors a Views or APIViews implementation wraps for the caller's mistakes
// (and for a golb that cannot act yet); each picks the answer's status code.
var (
	// ErrNoWorker: POST /v1/workers/ID/drain of an unknown worker (404).
	ErrNoWorker = errors.New("no such worker")
	// ErrNotRunning: the worker to drain is not running (409).
	ErrNotRunning = errors.New("worker is not running")
	// ErrNoGroup: an unknown group (404).
	ErrNoGroup = errors.New("no such group")
	// ErrOutOfBounds: a count outside the group's bounds (422).
	ErrOutOfBounds = errors.New("count outside the group's bounds")
	// ErrUnavailable: a reload asked while golb starts or stops (503).
	ErrUnavailable = errors.New("golb is not running")
)

// errTooManyStreams: GET /v1/stream while maxStreams are open (503).
var errTooManyStreams = fmt.Errorf("too many dashboard streams open (at most %d); close one and retry", maxStreams)

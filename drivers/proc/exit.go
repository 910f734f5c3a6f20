package proc

import (
	"context"
	"sync"
	"time"

	"github.com/golb/golb/drivers"
)

// Exit records how and when a worker ended, once, for any number of readers:
// the goroutine that waits for the worker calls Finish, and Wait, Inspect and
// Stop read it. The zero value is not usable; call NewExit.
type Exit struct {
	done chan struct{}
	once sync.Once
	// res and at are written once, before done is closed, and read only
	// after: the close orders them, no lock is needed.
	res drivers.ExitResult
	at  time.Time
}

// NewExit returns an Exit for a worker that still runs.
func NewExit() *Exit {
	return &Exit{done: make(chan struct{})}
}

// Finish records res and the current time as the worker's end and closes
// Done. Only the first call counts; later ones change nothing.
func (e *Exit) Finish(res drivers.ExitResult) {
	e.once.Do(func() {
		e.res, e.at = res, time.Now().UTC()
		close(e.done)
	})
}

// Done is closed once the worker has ended.
func (e *Exit) Done() <-chan struct{} { return e.done }

// Result returns how and when the worker ended, and false while it still runs.
func (e *Exit) Result() (drivers.ExitResult, time.Time, bool) {
	select {
	case <-e.done:
		return e.res, e.at, true
	default:
		return drivers.ExitResult{}, time.Time{}, false
	}
}

// Wait blocks until the worker has ended and returns how, or until ctx ends.
// A worker that has already ended is reported even when ctx has ended too.
func (e *Exit) Wait(ctx context.Context) (drivers.ExitResult, error) {
	if res, _, ok := e.Result(); ok {
		return res, nil
	}
	select {
	case <-e.done:
		return e.res, nil
	case <-ctx.Done():
		return drivers.ExitResult{}, ctx.Err()
	}
}

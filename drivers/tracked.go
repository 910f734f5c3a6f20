package drivers

import (
	"fmt"
	"sync"
)

// Tracked is the set of workers one plugin instance tracks, by id: those it
// started and those it recovered. Its zero value is ready to use, and it is
// safe for concurrent use. A Start reserves its id first, so two Starts of
// one id cannot both run.
type Tracked[H any] struct {
	mu       sync.Mutex
	workers  map[string]H
	starting map[string]bool
}

// Get returns the tracked worker id, or an error matching ErrNotFound.
func (t *Tracked[H]) Get(id string) (H, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.workers[id]
	if !ok {
		return h, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return h, nil
}

// Has reports whether id is tracked.
func (t *Tracked[H]) Has(id string) bool {
	_, err := t.Get(id)
	return err == nil
}

// Reserve claims id for a Start. It fails with ErrBadConfig when id is
// tracked or being started. Follow it with Commit on success or Release on
// failure.
func (t *Tracked[H]) Reserve(id string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.workers[id]; ok || t.starting[id] {
		return fmt.Errorf("%w: worker %s already exists", ErrBadConfig, id)
	}
	if t.starting == nil {
		t.starting = map[string]bool{}
	}
	t.starting[id] = true
	return nil
}

// Commit tracks the worker a reserved Start started.
func (t *Tracked[H]) Commit(id string, h H) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.starting, id)
	t.put(id, h)
}

// Release gives up the reservation of a Start that failed.
func (t *Tracked[H]) Release(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.starting, id)
}

// Adopt tracks the worker that mk returns, unless id is tracked already (a
// second Recover of one worker is harmless). It reports whether it added one;
// mk runs only then.
func (t *Tracked[H]) Adopt(id string, mk func() H) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.workers[id]; ok {
		return false
	}
	t.put(id, mk())
	return true
}

// Remove stops tracking id.
func (t *Tracked[H]) Remove(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.workers, id)
}

func (t *Tracked[H]) put(id string, h H) {
	if t.workers == nil {
		t.workers = map[string]H{}
	}
	t.workers[id] = h
}

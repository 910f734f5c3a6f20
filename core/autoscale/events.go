package autoscale

import "sync"

// DefaultKeep is how many decisions Events keeps per group.
const DefaultKeep = 100

// Events keeps the last scale decisions of each group in memory, for the
// admin API and golb status. Safe for concurrent use.
type Events struct {
	mu   sync.Mutex
	keep int
	by   map[string][]Decision // oldest first, at most keep

	counts map[CountKey]uint64
}

// NewEvents returns an empty log keeping keep decisions per group
// (DefaultKeep when keep is 0 or less).
func NewEvents(keep int) *Events {
	if keep <= 0 {
		keep = DefaultKeep
	}
	return &Events{keep: keep, by: map[string][]Decision{}, counts: map[CountKey]uint64{}}
}

// Add appends d to the log of d.Group, dropping the oldest past keep.
func (e *Events) Add(d Decision) {
	e.mu.Lock()
	defer e.mu.Unlock()
	l := append(e.by[d.Group], d)
	if len(l) > e.keep {
		l = append(l[:0:0], l[len(l)-e.keep:]...)
	}
	e.by[d.Group] = l
	e.counts[CountKey{d.Group, d.Direction, d.Mode}]++
}

// List returns the decisions of group, newest first.
func (e *Events) List(group string) []Decision {
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.by[group]
	out := make([]Decision, len(l))
	for i, d := range l {
		out[len(l)-1-i] = d
	}
	return out
}

// Last returns the newest decision of group, and false if there is none.
func (e *Events) Last(group string) (Decision, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.by[group]
	if len(l) == 0 {
		return Decision{}, false
	}
	return l[len(l)-1], true
}

// Counts returns, per group, how many decisions went each way in each
// mode since the start (for golb_autoscaler_decisions_total): they are
// counted apart from the kept log, which forgets.
func (e *Events) Counts() map[CountKey]uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[CountKey]uint64, len(e.counts))
	for k, v := range e.counts {
		out[k] = v
	}
	return out
}

// CountKey labels one decisions counter.
type CountKey struct {
	Group     string
	Direction Direction
	Mode      Mode
}

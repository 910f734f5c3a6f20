package stats

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Totals are the absolute, cumulative counts of one worker across golb restarts.
// TotalRequests is Success+Failed; the mean latency is LatencySum/TotalRequests.
type Totals struct {
	WorkerID   string
	Success    uint64
	Failed     uint64
	LatencySum time.Duration
}

// Total is the number of attempts: successes plus failures.
func (t Totals) Total() uint64 { return t.Success + t.Failed }

// Mean is the true mean latency, or 0 for a worker without requests.
func (t Totals) Mean() time.Duration {
	n := t.Total()
	if n == 0 {
		return 0
	}
	return t.LatencySum / time.Duration(n)
}

// Sink stores Totals. Implementations must be safe for use by one writer and
// concurrent readers; the Aggregator never runs two Writes at once.
type Sink interface {
	// Load returns everything stored, in first-seen order.
	Load(ctx context.Context) ([]Totals, error)
	// Write upserts the absolute totals in batch in one transaction: either every
	// row is stored or none is. Writing the same batch twice is harmless.
	Write(ctx context.Context, batch []Totals) error
	// Close releases the sink. No call may follow it.
	Close() error
}

// DefaultSink is the sink used when the configuration names none.
const DefaultSink = "sqlite"

var registry = struct {
	sync.RWMutex
	open map[string]func(path string) (Sink, error)
}{open: map[string]func(path string) (Sink, error){
	"sqlite": func(path string) (Sink, error) { return OpenSQLite(path) },
}}

// Register makes a sink available to Open under name; open receives the configured
// path (whatever a path means to that kind of sink). Like database/sql.Register, it
// panics if name is empty, open is nil, or name is already registered: all three are
// programming errors, found at init time.
func Register(name string, open func(path string) (Sink, error)) {
	if name == "" {
		panic("stats: Register with an empty sink name")
	}
	if open == nil {
		panic("stats: Register of sink " + name + " with a nil open function")
	}
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.open[name]; dup {
		panic("stats: Register called twice for sink " + name)
	}
	registry.open[name] = open
}

// Sinks returns the registered sink names, sorted.
func Sinks() []string {
	registry.RLock()
	defer registry.RUnlock()
	names := make([]string, 0, len(registry.open))
	for n := range registry.open {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Open opens the sink registered as name at path. An empty name means DefaultSink.
func Open(name, path string) (Sink, error) {
	if name == "" {
		name = DefaultSink
	}
	registry.RLock()
	open, ok := registry.open[name]
	registry.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownSink, name, strings.Join(Sinks(), ", "))
	}
	s, err := open(path)
	if err != nil {
		return nil, err
	}
	return s, nil
}

package stats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Totals are the absolute, cumulative counts of one worker across golb restarts.
// TotalRequests is Success+Failed; the mean latency is LatencySum/TotalRequests.
type Totals struct {
	WorkerID   string
	Success    uint64
	Failed     uint64
	LatencySum time.Duration
	// Instance is the agent that last flushed the worker's counts, in a sink several
	// agents share (postgres); "" otherwise.
	Instance string
}

// Total is the number of attempts: successes plus failures (at most 2^64-1,
// never wrapped).
func (t Totals) Total() uint64 { return addSat(t.Success, t.Failed) }

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

// SharedSink is a Sink that several golb agents write at once (PostgreSQL). Each adds
// the deltas of its own workers, never absolute totals, and reads the shared totals
// back; the Aggregator detects the ability by type assertion and then uses Apply in
// place of Write, and Read in place of Load.
type SharedSink interface {
	Sink
	// Apply adds every batch's deltas to the shared totals in one transaction, in
	// order, skipping a batch whose Seq this agent has already applied (its commit
	// went through but the answer was lost), and returns the shared totals after
	// it, as Read does. Deltas must be positive.
	Apply(ctx context.Context, batches []Batch, own []string) (SharedView, error)
	// Read returns the shared totals: those of the workers in own (this agent's,
	// always, however many rows the database holds) and those of the other
	// workers up to a bound (MaxSharedWorkers for PostgreSQL, newest first), in
	// first-seen order. More rows than the bound is no error: Omitted says so.
	Read(ctx context.Context, own []string) (SharedView, error)
	// NextSeq is the sequence number the next new batch must carry: one above the
	// last this agent's instance applied, as read when the sink was opened.
	NextSeq() uint64
	// Instance names this agent's rows.
	Instance() string
}

// SharedView is the shared totals a SharedSink read back.
type SharedView struct {
	Totals []Totals
	// Omitted is set when the database holds more workers than the sink reads:
	// the oldest workers not in own were left out.
	Omitted bool
}

// Batch is one flush of a SharedSink: the counts added since the previous batch.
type Batch struct {
	Seq    uint64
	Deltas []Totals
}

// DefaultSink is the sink used when the configuration names none.
const DefaultSink = "sqlite"

// Settings are what a sink is opened with: the stats block of the configuration.
// Each sink reads the fields that are its own and ignores the rest.
type Settings struct {
	// Sink names the registered sink; "" means DefaultSink.
	Sink string
	// Path is the SQLite file (sqlite only).
	Path string
	// DSN is the libpq URL or key=value connection string (postgres only). It may
	// hold a password: errors and views never print it.
	DSN string
	// Instance names this agent's rows in a database several agents share
	// (postgres only); see DefaultInstance.
	Instance string
}

// Limits on what a sink's table may hand back, so that a hostile or damaged
// database can cost an agent an error, never its memory.

// MaxSharedWorkers is the most rows of other agents' (or long-gone) workers a
// shared sink reads back, the newest first; the rows of this agent's own
// workers are read whatever their number. A database holding more is no
// error: the oldest are left out of the view, with a WARN.
const MaxSharedWorkers = 100_000

// maxWorkerID is the longest worker id a sink stores or accepts from its table
// (and the longest instance name a shared sink reads back).
const maxWorkerID = 512

// MaxInstance is the longest stats.instance.
const MaxInstance = 256

// CheckInstance reports whether name can name an agent's rows.
func CheckInstance(name string) error {
	switch {
	case name == "":
		return errors.New("empty stats instance: set stats.instance, or leave it out for the host name and data_dir")
	case len(name) > MaxInstance:
		return fmt.Errorf("stats instance is %d bytes long: give at most %d", len(name), MaxInstance)
	case !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("stats instance has control characters or invalid UTF-8: use printable text")
	}
	return nil
}

// OpenFunc opens one kind of sink with the given settings; ctx bounds the opening
// (connecting, migrating), not the sink's life.
type OpenFunc func(ctx context.Context, s Settings) (Sink, error)

var registry = struct {
	sync.RWMutex
	open map[string]OpenFunc
}{open: map[string]OpenFunc{
	"sqlite": func(_ context.Context, s Settings) (Sink, error) { return OpenSQLite(s.Path) },
}}

// Register makes a sink available to Open under name. Like database/sql.Register, it
// panics if name is empty, open is nil, or name is already registered: all three are
// programming errors, found at init time.
func Register(name string, open OpenFunc) {
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

// Open opens the sink registered as s.Sink (DefaultSink when empty).
func Open(ctx context.Context, s Settings) (Sink, error) {
	name := s.Sink
	if name == "" {
		name = DefaultSink
	}
	registry.RLock()
	open, ok := registry.open[name]
	registry.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownSink, name, strings.Join(Sinks(), ", "))
	}
	sink, err := open(ctx, s)
	if err != nil {
		return nil, err
	}
	return sink, nil
}

// oneLine folds s onto one line of at most n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

package stats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
)

// DefaultInterval is the flush interval used when NewAggregator is given none.
const DefaultInterval = time.Second

// FailureWarnInterval is how often the Aggregator repeats its WARN while writes keep
// failing: at the first failed write, then once per interval until a write succeeds.
const FailureWarnInterval = time.Minute

// Count is what one balancer has counted for one worker since this golb process
// started: cumulative, never reset.
type Count struct {
	WorkerID   string
	Success    uint64
	Failed     uint64
	LatencySum time.Duration
}

// Source reports one balancer's counts. It is called on every Snapshot and flush, so it
// must be cheap and safe for concurrent use (atomic loads, no I/O). A worker may appear
// in several sources; its counts are summed. Counts with an empty WorkerID are ignored.
type Source func() []Count

// FlushStats describes the Aggregator's writes to its sink, for /metrics and logs.
type FlushStats struct {
	Flushes      uint64        // writes committed
	Errors       uint64        // writes failed (retried at the next tick)
	Skipped      uint64        // ticks skipped because a write was still running
	LastFlush    time.Time     // when the last committed write finished; zero if none
	LastDuration time.Duration // how long the last committed write took
	LastError    string        // the last write's error; empty once a write succeeds

	// FailingSince is when the current run of failed writes began; zero while the
	// last write succeeded (or none has been tried).
	FailingSince time.Time
	// FailedWrites is the number of writes failed in a row; 0 once one succeeds.
	FailedWrites int
	// Unreachable is set while failing because the database could not be reached
	// (ErrUnreachable), rather than because it refused the write.
	Unreachable bool
	// Unflushed is the number of requests counted but not yet stored in the sink:
	// the requests a shutdown would lose if the sink kept failing.
	Unflushed uint64
}

// Failing reports whether the last write failed.
func (f FlushStats) Failing() bool { return f.FailedWrites > 0 }

type namedSource struct {
	name string
	src  Source
}

// Aggregator adds the live counts of its sources to the totals loaded from a Sink, and
// writes the result back in batches. Snapshot never touches the sink, so a slow or
// locked database delays persistence, never /worker/stats or the proxy.
type Aggregator struct {
	sink     Sink
	interval time.Duration
	log      *slog.Logger
	// warnEvery is how often a WARN repeats while writes fail (FailureWarnInterval;
	// tests set it shorter before Run).
	warnEvery time.Duration

	// mu guards sources; Snapshot holds it shared across calling the sources and
	// merging them, so folding a removed source into the base is atomic to readers.
	mu      sync.RWMutex
	sources []namedSource

	// omu guards known and index: every worker ever seen, in first-seen order, with
	// its base totals (loaded from the sink plus folded-in removed sources).
	omu   sync.Mutex
	known []Totals
	index map[string]int

	// fmu guards the writer slot and the flush bookkeeping.
	fmu      sync.Mutex
	running  chan struct{}     // closed when the write holding the slot ends; nil if idle
	written  map[string]Totals // what the sink holds, as far as we know
	health   FlushStats        // Unflushed is computed by Health, not kept here
	lastWarn time.Time         // when the last "stats flush failed" WARN was logged

	// seed is the last rendered /worker/stats (seedjson.go).
	seed seedCache

	// sh is set when the sink is shared by several agents (shared.go): known then
	// holds this process's own counts only, and flushes add deltas.
	sh *sharedState
}

// NewAggregator returns an Aggregator over sink, starting from the totals it holds.
// interval <= 0 means DefaultInterval; a nil logger discards logs.
func NewAggregator(sink Sink, interval time.Duration, logger *slog.Logger) (*Aggregator, error) {
	if sink == nil {
		return nil, errors.New("creating stats aggregator: nil sink")
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ss, shared := sink.(SharedSink)
	var (
		base    []Totals
		omitted bool
		err     error
	)
	if shared {
		var v SharedView
		v, err = ss.Read(context.Background(), nil)
		base, omitted = v.Totals, v.Omitted
	} else {
		base, err = sink.Load(context.Background())
	}
	if err != nil {
		return nil, fmt.Errorf("creating stats aggregator: %w", err)
	}
	a := &Aggregator{
		sink:      sink,
		interval:  interval,
		log:       logger,
		warnEvery: FailureWarnInterval,
		known:     make([]Totals, 0, len(base)),
		index:     make(map[string]int, len(base)),
		written:   make(map[string]Totals, len(base)),
	}
	if shared {
		a.sh = newSharedState(ss, base)
		a.fmu.Lock()
		a.noteOmittedLocked(omitted)
		a.fmu.Unlock()
		return a, nil
	}
	for _, t := range base {
		if i, dup := a.index[t.WorkerID]; dup { // a sink should not do this; be safe
			a.known[i] = t
		} else {
			a.index[t.WorkerID] = len(a.known)
			a.known = append(a.known, t)
		}
		a.written[t.WorkerID] = t
	}
	return a, nil
}

// AddSource adds a balancer's counts under key, which names one balancer
// instance: a balancer started again under the same name (a reload that removes
// it and adds it back while the old one still drains) is a new instance and
// needs a key of its own, so that both count until RemoveSource folds the old
// one's final counts. A key already present is taken to be the same instance
// (its counts are cumulative): src replaces its function and nothing is folded,
// as folding would count it twice. A nil src is RemoveSource(key).
func (a *Aggregator) AddSource(key string, src Source) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if src == nil {
		a.removeLocked(key)
		return
	}
	for i, s := range a.sources {
		if s.name == key {
			a.sources[i].src = src
			return
		}
	}
	a.sources = append(a.sources, namedSource{name: key, src: src})
}

// RemoveSource drops the source key after adding its final counts to the base,
// so totals never go backwards. Call it once that balancer has stopped counting
// (its Shutdown has returned and nothing is in flight): a count it makes later
// is never read. An unknown key is a no-op.
func (a *Aggregator) RemoveSource(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.removeLocked(key)
}

// Has reports whether the Aggregator knows worker id: stored in the sink (as
// loaded, or as read back by the last shared flush) or counted by this process.
// A new worker must not get such an id, or it would inherit the old one's totals.
// A shared sink holding more than MaxSharedWorkers other workers is only known
// as far as its newest rows (see PostgresSink.Read).
func (a *Aggregator) Has(id string) bool {
	a.omu.Lock()
	defer a.omu.Unlock()
	if _, ok := a.index[id]; ok {
		return true
	}
	if a.sh != nil {
		_, ok := a.sh.vindex[id]
		return ok
	}
	return false
}

func (a *Aggregator) removeLocked(name string) {
	for i, s := range a.sources {
		if s.name != name {
			continue
		}
		counts := s.src()
		a.omu.Lock()
		for _, c := range counts {
			if c.WorkerID == "" {
				continue
			}
			k := a.slotLocked(c.WorkerID)
			a.known[k].add(c)
		}
		a.omu.Unlock()
		a.sources = append(a.sources[:i], a.sources[i+1:]...)
		return
	}
}

// add adds c's counts to t, each at most 2^63-1 (what a sink stores): a
// stored total near the top (a hostile file, or a seed import's clamp)
// stops growing there, instead of wrapping and failing every flush with it.
func (t *Totals) add(c Count) {
	t.Success = addCount(t.Success, c.Success)
	t.Failed = addCount(t.Failed, c.Failed)
	if c.LatencySum > 0 && t.LatencySum > math.MaxInt64-c.LatencySum {
		t.LatencySum = math.MaxInt64
	} else {
		t.LatencySum += c.LatencySum
	}
}

// addCount is a+b, at most 2^63-1.
func addCount(a, b uint64) uint64 {
	if s := a + b; s >= a && s <= math.MaxInt64 {
		return s
	}
	return math.MaxInt64
}

// slotLocked returns the index of id in known, appending it with zero base if new.
func (a *Aggregator) slotLocked(id string) int {
	if i, ok := a.index[id]; ok {
		return i
	}
	a.index[id] = len(a.known)
	a.known = append(a.known, Totals{WorkerID: id})
	return len(a.known) - 1
}

// Snapshot returns the stored totals plus every source's counts right now, in
// first-seen order: one entry per worker that has counts, or that a source lists now.
// A worker gone before its first request (a crash loop makes many) is left out. It is
// exact (no flush lag) and never waits for the sink.
func (a *Aggregator) Snapshot() []Totals { return a.snapshot(true) }

// local is this process's own counts (the base folded from removed sources plus
// the sources now), every worker it has seen: with a shared sink, what is added.
func (a *Aggregator) local() []Totals { return a.snapshot(false) }

func (a *Aggregator) snapshot(combine bool) []Totals {
	a.mu.RLock()
	defer a.mu.RUnlock()

	var buf [8][]Count
	all := buf[:0]
	for _, s := range a.sources {
		all = append(all, s.src())
	}

	a.omu.Lock()
	defer a.omu.Unlock()
	out := make([]Totals, len(a.known))
	copy(out, a.known)
	listed := make([]bool, len(out))
	for _, counts := range all {
		for _, c := range counts {
			if c.WorkerID == "" {
				continue // unattributable; storing it would fail every write
			}
			i, ok := a.index[c.WorkerID]
			if !ok { // first sight: known and out grow together and stay aligned
				i = a.slotLocked(c.WorkerID)
				out = append(out, Totals{WorkerID: c.WorkerID})
				listed = append(listed, false)
			}
			listed[i] = true
			out[i].add(c)
		}
	}
	if a.sh != nil && combine {
		return a.sh.combineLocked(out, listed)
	}
	if a.sh != nil {
		return out
	}
	kept := out[:0]
	for i, t := range out {
		if listed[i] || t.Success+t.Failed > 0 {
			kept = append(kept, t)
		}
	}
	return kept
}

// Run flushes every interval until ctx ends. Each write runs in its own goroutine; a
// tick that finds the previous write still running is skipped, and the next write
// carries everything. A failed write is counted and retried at the next tick; it is
// logged at WARN at once, then every FailureWarnInterval while writes keep failing,
// with the requests not yet stored (Health reports the same).
// Run returns once ctx is done and its last write has ended (the write sees ctx, so it
// is interrupted); call Flush afterwards to persist the final counts.
func (a *Aggregator) Run(ctx context.Context) {
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			a.waitIdle()
			return
		case <-t.C:
			a.tick(ctx)
		}
	}
}

func (a *Aggregator) tick(ctx context.Context) {
	if a.sh != nil && a.sh.backingOff() {
		return
	}
	slot, ok := a.claim()
	if !ok {
		a.fmu.Lock()
		a.health.Skipped++
		a.fmu.Unlock()
		return
	}
	if a.sh != nil {
		go a.writeShared(ctx, slot, true) //nolint:errcheck // recorded in Health and logged
		return
	}
	batch := a.pending()
	if len(batch) == 0 {
		a.release(ctx, slot, nil, nil, 0)
		return
	}
	go a.write(ctx, slot, batch)
}

// Flush writes every change not yet stored, after waiting for a running write. It is
// the final flush on shutdown, and safe to call at any time.
func (a *Aggregator) Flush(ctx context.Context) error {
	var slot chan struct{}
	for {
		s, ok := a.claim()
		if ok {
			slot = s
			break
		}
		select {
		case <-s:
		case <-ctx.Done():
			return fmt.Errorf("flushing stats: waiting for the running write: %w", ctx.Err())
		}
	}
	if a.sh != nil {
		if err := a.writeShared(ctx, slot, false); err != nil {
			return fmt.Errorf("flushing stats (%d requests not stored): %w", a.Health().Unflushed, err)
		}
		return nil
	}
	batch := a.pending()
	if len(batch) == 0 {
		a.release(ctx, slot, nil, nil, 0)
		return nil
	}
	if err := a.write(ctx, slot, batch); err != nil {
		a.fmu.Lock()
		n := a.unflushedLocked(batch)
		a.fmu.Unlock()
		return fmt.Errorf("flushing stats (%d requests not stored): %w", n, err)
	}
	return nil
}

// Health reports the flush counters, and how many requests are not stored yet.
func (a *Aggregator) Health() FlushStats {
	if a.sh != nil {
		local := a.local()
		a.fmu.Lock()
		defer a.fmu.Unlock()
		h := a.health
		h.Unflushed = a.unflushedLocked(local)
		return h
	}
	snap := a.Snapshot() // before fmu: pending takes the locks in this order too
	a.fmu.Lock()
	defer a.fmu.Unlock()
	h := a.health
	h.Unflushed = a.unflushedLocked(snap)
	return h
}

// SinkPath is where the sink stores the totals (the SQLite file), or "" for a sink
// without a Path method.
func (a *Aggregator) SinkPath() string {
	if p, ok := a.sink.(interface{ Path() string }); ok {
		return p.Path()
	}
	return ""
}

// SinkDatabase is the database of a shared sink, as user@host:port/database
// without a password, and this agent's instance name; "" for other sinks.
func (a *Aggregator) SinkDatabase() (target, instance string) {
	if t, ok := a.sink.(interface{ Target() string }); ok {
		target = t.Target()
	}
	if a.sh != nil {
		instance = a.sh.instance
	}
	return target, instance
}

// unflushedLocked is the number of requests in totals beyond what the sink holds.
// Totals only grow, so what was written is never ahead of a later snapshot.
func (a *Aggregator) unflushedLocked(totals []Totals) uint64 {
	if a.sh != nil {
		a.omu.Lock()
		defer a.omu.Unlock()
		return a.sh.unflushedLocked(totals)
	}
	var n uint64
	for _, t := range totals {
		if w := a.written[t.WorkerID].Total(); t.Total() > w {
			n += t.Total() - w
		}
	}
	return n
}

// claim takes the writer slot. If a write holds it, claim returns that write's channel
// and false.
func (a *Aggregator) claim() (chan struct{}, bool) {
	a.fmu.Lock()
	defer a.fmu.Unlock()
	if a.running != nil {
		return a.running, false
	}
	a.running = make(chan struct{})
	return a.running, true
}

// pending returns the workers whose totals differ from what the sink holds. It must be
// called while holding the writer slot, so that the snapshot is at least as new as
// anything written before.
func (a *Aggregator) pending() []Totals {
	snap := a.Snapshot()
	a.fmu.Lock()
	defer a.fmu.Unlock()
	batch := snap[:0]
	for _, t := range snap {
		if w, ok := a.written[t.WorkerID]; !ok || w != t {
			batch = append(batch, t)
		}
	}
	return batch
}

func (a *Aggregator) write(ctx context.Context, slot chan struct{}, batch []Totals) error {
	start := time.Now()
	err := a.sink.Write(ctx, batch)
	a.release(ctx, slot, batch, err, time.Since(start))
	return err
}

// release records the outcome of a write and frees the writer slot.
func (a *Aggregator) release(ctx context.Context, slot chan struct{}, batch []Totals, err error, took time.Duration) {
	a.fmu.Lock()
	defer a.fmu.Unlock()
	defer close(slot)
	a.running = nil
	switch {
	case batch == nil:
		// nothing was written
	case err == nil:
		if a.sh == nil {
			for _, t := range batch {
				a.written[t.WorkerID] = t
			}
		}
		a.health.Flushes++
		a.health.LastFlush = time.Now()
		a.health.LastDuration = took
		a.health.LastError = ""
		if a.health.FailedWrites > 0 {
			a.log.Info("stats flush recovered", "failed_writes", a.health.FailedWrites,
				"failing_for", time.Since(a.health.FailingSince).Round(time.Millisecond), "workers", len(batch))
		}
		a.health.FailedWrites = 0
		a.health.FailingSince = time.Time{}
		a.health.Unreachable = false
		a.log.Debug("stats flushed", "workers", len(batch), "took", took)
	case ctx.Err() != nil:
		// Interrupted by shutdown: nothing is lost, the next Flush writes it all.
		a.log.Debug("stats write interrupted", "err", err)
	default:
		if errors.Is(err, ErrFileReplaced) {
			clear(a.written) // the next write stores every worker's totals
		}
		now := time.Now()
		a.health.Errors++
		a.health.LastError = err.Error()
		if a.health.FailedWrites == 0 {
			a.health.FailingSince = now
		}
		a.health.FailedWrites++
		a.health.Unreachable = errors.Is(err, ErrUnreachable)
		// At the first failure, then every warnEvery (not every so many failures: a
		// write stuck behind a lock fails once per busy timeout, not once per tick).
		if a.health.FailedWrites == 1 || now.Sub(a.lastWarn) >= a.warnEvery {
			a.lastWarn = now
			msg := "stats flush failed; retrying at the next tick"
			if a.sh != nil {
				msg = "stats flush failed; counts kept in memory, retrying with backoff"
			}
			a.log.Warn(msg,
				"err", err,
				"unflushed_requests", a.unflushedLocked(batch),
				"failing_since", a.health.FailingSince.UTC().Format(time.RFC3339),
				"consecutive_failures", a.health.FailedWrites,
				"workers", len(batch))
		}
	}
}

// waitIdle waits for the write holding the slot, if any.
func (a *Aggregator) waitIdle() {
	a.fmu.Lock()
	r := a.running
	a.fmu.Unlock()
	if r != nil {
		<-r
	}
}

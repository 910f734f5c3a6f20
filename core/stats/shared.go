package stats

import (
	"context"
	"sync"
	"time"
)

// MaxRetryDelay is the longest a shared sink's flushes back off while they fail:
// the delay doubles from the flush interval up to this (or the interval, if longer).
const MaxRetryDelay = 5 * time.Second

// WriteTimeout bounds one flush to a shared sink; the next tick tries again.
const WriteTimeout = 15 * time.Second

// sharedState is the Aggregator's bookkeeping for a SharedSink. The Aggregator's
// known totals are then this process's own counts only (they start at zero: what
// earlier runs counted is in the database already); a flush adds what they gained
// since the last confirmed flush, as a Batch with a sequence number that is resent
// unchanged until the sink confirms it, so a flush whose answer was lost is
// skipped by the sink, never counted twice. Memory is bounded by the number of
// workers: one pending batch at most, whatever the length of an outage.
type sharedState struct {
	sink     SharedSink
	instance string

	// Guarded by the Aggregator's omu: Snapshot reads them together.
	view    []Totals          // the shared totals the last confirmed flush read (SharedSink.Read: own workers, others bounded)
	vindex  map[string]int    // worker id -> index in view
	flushed map[string]Totals // own counts the sink holds, as of the last confirmed flush

	// Guarded by the Aggregator's fmu.
	inflight      *Batch   // sent, outcome unknown: resent as it is until confirmed
	inflightLocal []Totals // own counts once inflight is applied
	nextSeq       uint64

	// Guarded by the Aggregator's fmu: the view leaves workers out (noteOmittedLocked).
	omittedSince, omitWarned time.Time

	bmu     sync.Mutex
	retryAt time.Time // no tick writes before this while flushes fail
}

func newSharedState(sink SharedSink, base []Totals) *sharedState {
	sh := &sharedState{sink: sink, instance: sink.Instance(), flushed: map[string]Totals{}, nextSeq: sink.NextSeq()}
	sh.setViewLocked(base)
	return sh
}

func (sh *sharedState) setViewLocked(view []Totals) {
	sh.view = view
	sh.vindex = make(map[string]int, len(view))
	for i, t := range view {
		sh.vindex[t.WorkerID] = i
	}
}

// gain is what now has counted beyond was (never negative).
func gain(now, was Totals) Totals {
	d := Totals{WorkerID: now.WorkerID, Instance: now.Instance}
	if now.Success > was.Success {
		d.Success = now.Success - was.Success
	}
	if now.Failed > was.Failed {
		d.Failed = now.Failed - was.Failed
	}
	if now.LatencySum > was.LatencySum {
		d.LatencySum = now.LatencySum - was.LatencySum
	}
	return d
}

// combineLocked is everyone's totals: the view of the last confirmed flush plus
// this process's counts not confirmed yet. Workers the view has come first, in
// its order; own workers new since come after, when they have counts or a
// source lists them now.
func (sh *sharedState) combineLocked(local []Totals, listed []bool) []Totals {
	out := make([]Totals, len(sh.view), len(sh.view)+len(local))
	copy(out, sh.view)
	for i, t := range local {
		d := gain(t, sh.flushed[t.WorkerID])
		if k, ok := sh.vindex[t.WorkerID]; ok {
			out[k].add(Count{Success: d.Success, Failed: d.Failed, LatencySum: d.LatencySum})
			if d.Total() > 0 {
				out[k].Instance = sh.instance
			}
			continue
		}
		if d.Total() > 0 || listed[i] {
			d.Instance = sh.instance
			out = append(out, d)
		}
	}
	return out
}

func (sh *sharedState) unflushedLocked(local []Totals) uint64 {
	var n uint64
	for _, t := range local {
		n += gain(t, sh.flushed[t.WorkerID]).Total()
	}
	return n
}

func (sh *sharedState) backingOff() bool {
	sh.bmu.Lock()
	defer sh.bmu.Unlock()
	return time.Now().Before(sh.retryAt)
}

// backOff sets when the next tick may write after failures failed flushes in a
// row (0: at once).
func (sh *sharedState) backOff(failures int, interval time.Duration) {
	sh.bmu.Lock()
	defer sh.bmu.Unlock()
	if failures == 0 {
		sh.retryAt = time.Time{}
		return
	}
	limit := max(MaxRetryDelay, interval)
	d := interval
	for i := 1; i < failures && d < limit; i++ {
		d *= 2
	}
	// A tick lands just before the deadline as often as after: keep half an
	// interval of slack so the wait is d, not d plus a whole interval.
	sh.retryAt = time.Now().Add(min(d, limit) - interval/2)
}

// nextBatch is the batch to send now, holding the writer slot: the unconfirmed
// one if any (retry true), else one with what own counts gained since the last
// confirmed flush, or nil when nothing did.
func (a *Aggregator) nextBatch() (b *Batch, retry bool) {
	sh := a.sh
	a.fmu.Lock()
	if sh.inflight != nil {
		b := sh.inflight
		a.fmu.Unlock()
		return b, true
	}
	a.fmu.Unlock()
	local := a.local()
	a.fmu.Lock()
	defer a.fmu.Unlock()
	a.omu.Lock()
	defer a.omu.Unlock()
	var deltas, reached []Totals
	for _, t := range local {
		if d := gain(t, sh.flushed[t.WorkerID]); d.Total() > 0 || d.LatencySum > 0 {
			d.Instance = sh.instance
			deltas = append(deltas, d)
			reached = append(reached, t)
		}
	}
	if len(deltas) == 0 {
		return nil, false
	}
	sh.inflight = &Batch{Seq: sh.nextSeq, Deltas: deltas}
	sh.inflightLocal = reached
	sh.nextSeq++
	return sh.inflight, false
}

// refreshShared reads everyone's totals when this agent has nothing to add, so
// that its view of the other agents' workers keeps up with their flushes. It
// holds the writer slot (no batch can be made meanwhile) and frees it. A failed
// read counts as a failed flush: the database is as unreachable for it.
func (a *Aggregator) refreshShared(ctx context.Context, slot chan struct{}) error {
	sh := a.sh
	start := time.Now()
	own := a.ownIDs()
	wctx, cancel := context.WithTimeout(ctx, WriteTimeout)
	view, err := sh.sink.Read(wctx, own)
	cancel()
	a.fmu.Lock()
	failing := a.health.FailedWrites > 0
	if err == nil {
		a.noteOmittedLocked(view.Omitted)
		a.omu.Lock()
		sh.setViewLocked(view.Totals)
		a.omu.Unlock()
	}
	a.fmu.Unlock()
	switch {
	case err != nil || failing:
		a.release(ctx, slot, []Totals{}, err, time.Since(start))
	default:
		a.release(ctx, slot, nil, nil, 0)
	}
	a.fmu.Lock()
	failures := a.health.FailedWrites
	a.fmu.Unlock()
	sh.backOff(failures, a.interval)
	return err
}

// writeShared flushes to the shared sink while holding the writer slot, and
// frees it: the unconfirmed batch, if any, then (once that is confirmed) a new
// one, so that a recovered database is brought up to date in one tick.
// With refresh, a tick that has nothing to add reads everyone's totals instead.
func (a *Aggregator) writeShared(ctx context.Context, slot chan struct{}, refresh bool) error {
	sh := a.sh
	start := time.Now()
	var (
		err  error
		sent []Totals
	)
	for round := range 2 {
		b, retry := a.nextBatch()
		if b == nil && round == 0 && refresh {
			return a.refreshShared(ctx, slot)
		}
		if b == nil {
			break
		}
		own := a.ownIDs()
		wctx, cancel := context.WithTimeout(ctx, WriteTimeout)
		var view SharedView
		view, err = sh.sink.Apply(wctx, []Batch{*b}, own)
		cancel()
		a.fmu.Lock()
		sent = sh.inflightLocal
		if err == nil {
			a.noteOmittedLocked(view.Omitted)
			a.omu.Lock()
			for _, t := range sh.inflightLocal {
				sh.flushed[t.WorkerID] = t
			}
			sh.setViewLocked(view.Totals)
			a.omu.Unlock()
			sh.inflight, sh.inflightLocal = nil, nil
		}
		a.fmu.Unlock()
		if err != nil || !retry {
			break
		}
	}
	if sent == nil && err == nil {
		a.release(ctx, slot, nil, nil, 0)
		return nil
	}
	a.release(ctx, slot, sent, err, time.Since(start))
	a.fmu.Lock()
	failures := a.health.FailedWrites
	a.fmu.Unlock()
	sh.backOff(failures, a.interval)
	return err
}

// ownIDs is every worker this process has counted or its sources list: the
// rows a shared sink must always read back, so that their totals stay exact
// however many rows the database holds.
func (a *Aggregator) ownIDs() []string {
	local := a.local()
	ids := make([]string, len(local))
	for i, t := range local {
		ids[i] = t.WorkerID
	}
	return ids
}

// OmittedWarnInterval is how often the Aggregator repeats its WARN while a shared
// database holds more workers than it reads back (MaxSharedWorkers).
const OmittedWarnInterval = time.Hour

// noteOmittedLocked logs, at most once per OmittedWarnInterval, that the shared
// sink left its oldest workers out of the view. It needs fmu.
func (a *Aggregator) noteOmittedLocked(omitted bool) {
	sh := a.sh
	switch {
	case !omitted:
		if !sh.omittedSince.IsZero() {
			a.log.Info("stats database holds no more workers than golb reads back")
		}
		sh.omittedSince, sh.omitWarned = time.Time{}, time.Time{}
		return
	case sh.omittedSince.IsZero():
		sh.omittedSince = time.Now()
	case time.Since(sh.omitWarned) < OmittedWarnInterval:
		return
	}
	sh.omitWarned = time.Now()
	a.log.Warn("stats database holds more workers than golb reads back: this agent's workers stay exact, the oldest of the others are left out of its stats views; delete the rows of long-gone workers from golb_worker_totals",
		"read_back", MaxSharedWorkers, "since", sh.omittedSince.UTC().Format(time.RFC3339))
}

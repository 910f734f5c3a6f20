package balancer

import "time"

// Totals are a balancer's cumulative counters summed over its workers, past
// and present, read from the same atomics as Stats and the collector. A
// reader that wants rates (the dashboard's history) takes two and subtracts.
type Totals struct {
	// Classes are attempts by outcome, indexed like ClassNames.
	Classes [numClasses]uint64
	// Buckets are attempts by duration, not cumulative: Buckets[i] counts
	// those at most LatencyBounds[i] seconds (and above the bound before
	// it); the last counts those above every bound.
	Buckets [len(latencyBounds) + 1]uint64
	// InFlight is the requests being proxied now, and Held those waiting
	// for a worker to become a candidate.
	InFlight, Held int64
	// Retries granted, and Unavailable the requests answered 503 by the
	// balancer itself because no worker was a candidate.
	Retries, Unavailable uint64
}

// ClassNames name the entries of Totals.Classes.
var ClassNames = classNames

// LatencyBounds are the upper bounds, in seconds, of Totals.Buckets.
var LatencyBounds = latencyBounds

// Totals returns the balancer's cumulative counters now.
func (b *Balancer) Totals() Totals {
	t := Totals{
		Held:        b.Held(),
		Retries:     b.retries.Load(),
		Unavailable: b.unavailable.Load(),
	}
	for _, be := range b.counted() {
		for c := range t.Classes {
			t.Classes[c] += be.classes[c].Load()
		}
		for i := range t.Buckets {
			t.Buckets[i] += be.buckets[i].Load()
		}
		t.InFlight += be.inflight.Load()
	}
	return t
}

// Ejected reports whether worker id is passively ejected now.
func (b *Balancer) Ejected(id string) bool {
	b.mu.Lock()
	be, ok := b.byID[id]
	b.mu.Unlock()
	return ok && be.ejected(time.Now().UnixNano())
}

// Name is the balancer's name, as configured.
func (b *Balancer) Name() string { return b.conf().Name }

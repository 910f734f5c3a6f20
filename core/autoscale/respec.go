package autoscale

import (
	"cmp"
	"slices"
	"time"
)

// SetSpec puts spec (WithDefaults applied, then validated) in force from
// now: golb's reload of a changed scale block. An invalid spec changes
// nothing and is returned, wrapping ErrSpec.
//
// The observed history is kept: the samples are the group's load (requests
// in flight and arriving), which does not depend on the policy, so the
// first decision under the new targets already scales on the last stable
// window instead of waiting a whole new one with no data (a restarted
// window would keep the count where it is for that long, or, at min 0,
// count the group idle from the reload). A new stable or panic window
// re-buckets the samples by their time: a longer window is filled by the
// samples to come, a shorter one drops the older ones. So are the rest of
// what the autoscaler remembers: panic mode and its last burst (the next
// decision ends it under the new threshold and window if it should), the
// counts decided over the scale-down delay (over the new delay), the last
// request (scale_to_zero_after counts from it) and the floor set by golb
// scale (clamped to the new bounds). Last's target and count are those of
// the new spec until the next Decide.
func (a *Autoscaler) SetSpec(now time.Time, spec Spec) error {
	fresh, err := New(spec, now) // the spec validated, and New's bucket size for it
	if err != nil {
		return err
	}
	spec = fresh.spec
	a.mu.Lock()
	defer a.mu.Unlock()
	if fresh.win.gran != a.win.gran || spec.StableWindow != a.spec.StableWindow {
		a.win = a.win.rebucket(fresh.win, now)
		a.recent = fresh.recent
	}
	a.delay.span = spec.ScaleDownDelay
	if a.floor != 0 {
		a.floor = max(spec.Min, min(spec.Max, a.floor))
	}
	a.spec = spec
	a.last.Target, a.last.Metric = spec.target()
	a.last.To = max(spec.Min, min(spec.Max, a.last.To))
	return nil
}

// rebucket fills the empty window nw with w's samples up to now, each
// bucket's under the slot of its start (merged where nw's buckets are
// longer); where nw's ring is shorter the newest are kept.
func (w *window) rebucket(nw *window, now time.Time) *window {
	old := slices.Clone(w.buckets)
	slices.SortFunc(old, func(x, y bucket) int { return cmp.Compare(x.slot, y.slot) })
	cur := w.slot(now)
	nw.clock = w.clock // the same offsets: slots scale by the grans alone
	for _, b := range old {
		if b.n == 0 || b.slot > cur {
			continue
		}
		slot := b.slot * int64(w.gran) / int64(nw.gran)
		nb := &nw.buckets[int(slot%int64(len(nw.buckets)))]
		if nb.slot != slot {
			*nb = bucket{slot: slot}
		}
		nb.inflight += b.inflight
		nb.n += b.n
		nb.requests += b.requests
	}
	return nw
}

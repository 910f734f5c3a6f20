package balancer

import (
	"sync/atomic"
	"time"
)

// budgetWindow is the length of the retry budget's sliding window, in
// one-second slots.
const budgetWindow = 10

// retryBudget allows retries up to ratio × requests plus minPerSec ×
// window over the last budgetWindow seconds (the scheme of Linkerd and
// Finagle), so that a failing pool cannot turn every request into several.
// Slots are atomics; a slot is reset by the first caller of a new second,
// and the rare count lost in that race only makes the budget approximate.
type retryBudget struct {
	ratio float64
	floor float64
	slots [budgetWindow]budgetSlot
}

type budgetSlot struct {
	sec      atomic.Int64
	requests atomic.Int64
	retries  atomic.Int64
}

func newRetryBudget(ratio float64, minPerSec int) retryBudget {
	return retryBudget{ratio: ratio, floor: float64(max(minPerSec, 0) * budgetWindow)}
}

func (rb *retryBudget) slot(sec int64) *budgetSlot {
	s := &rb.slots[uint64(sec)%budgetWindow]
	if old := s.sec.Load(); old < sec && s.sec.CompareAndSwap(old, sec) {
		s.requests.Store(0)
		s.retries.Store(0)
	}
	return s
}

// request counts one client request.
func (rb *retryBudget) request(now time.Time) {
	rb.slot(now.Unix()).requests.Add(1)
}

// allow reports whether one more retry fits the budget, and counts it if so.
func (rb *retryBudget) allow(now time.Time) bool {
	sec := now.Unix()
	cur := rb.slot(sec)
	var requests, retries int64
	for i := range rb.slots {
		s := &rb.slots[i]
		if sec-s.sec.Load() < budgetWindow {
			requests += s.requests.Load()
			retries += s.retries.Load()
		}
	}
	if float64(retries) >= rb.ratio*float64(requests)+rb.floor {
		return false
	}
	cur.retries.Add(1)
	return true
}

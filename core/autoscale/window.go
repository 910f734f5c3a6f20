package autoscale

import "time"

// window keeps the samples of the last span, in buckets of gran, so that
// the averages over the stable and the panic window come from one ring.
// Each bucket holds the sum and count of the in-flight samples that fell in
// its time slot and the requests counted then. Not safe for concurrent use.
type window struct {
	gran    time.Duration
	clock   clock
	buckets []bucket
}

// clock turns the times samples are taken at into offsets that never go
// back: each sample's is the last one's plus the time since it, or the
// same when it is earlier. The slots were the wall clock's, t.UnixNano(),
// while every other span the autoscaler measures (idle, floor, delay) is
// monotonic: a wall-clock step back put every bucket "in the future" and
// the stable window forgot its history at once. With time.Now()'s
// readings the offset is the monotonic time since New; with wall-only
// times (a fake clock) a step back costs the step, not the window.
type clock struct {
	last time.Time     // the time of the last record
	off  time.Duration // its offset from the epoch, the time New was given
}

// at is t's offset, without recording it.
func (c clock) at(t time.Time) time.Duration {
	return c.off + max(t.Sub(c.last), 0)
}

// advance records t and returns its offset.
func (c *clock) advance(t time.Time) time.Duration {
	c.last, c.off = t, c.at(t)
	return c.off
}

type bucket struct {
	slot     int64 // time slot (offset / gran) whose samples the bucket holds
	inflight float64
	n        int
	requests uint64
}

// minGran is the shortest bucket New uses, and maxBuckets the most buckets
// a window has: MaxStableWindow of the shortest, 36,000 (1.2 MB).
const (
	minGran    = 100 * time.Millisecond
	maxBuckets = int(MaxStableWindow / minGran)
)

// newWindow returns a window over span in buckets of gran, of at most
// maxBuckets buckets: a longer span keeps only its newest maxBuckets ×
// gran. Spec.Validate refuses such a span; this is the last guard of the
// memory a window takes ("200000h" in a slot per second was 23 GB).
// Its slots count from epoch.
func newWindow(span, gran time.Duration, epoch time.Time) *window {
	gran = max(gran, time.Nanosecond)
	n := min((span+gran-1)/gran, time.Duration(maxBuckets))
	return &window{gran: gran, clock: clock{last: epoch}, buckets: make([]bucket, max(int(n), 1))}
}

// slot is the slot of time t, an offset (never negative) in grans.
func (w *window) slot(t time.Time) int64 { return int64(w.clock.at(t) / w.gran) }

// record adds one sample taken at t.
func (w *window) record(t time.Time, s Sample) {
	slot := int64(w.clock.advance(t) / w.gran)
	b := &w.buckets[int(slot%int64(len(w.buckets)))]
	if b.slot != slot {
		*b = bucket{slot: slot}
	}
	b.inflight += s.InFlight
	b.n++
	b.requests += s.Requests
}

// averages is what one window holds over a span ending now: the mean
// in-flight (the mean of the buckets' means, so that a burst of fast
// samples weighs no more than its time) and requests per second (the
// requests counted over the time from the oldest bucket with samples).
// ok is false when no sample falls in the span.
type averages struct {
	inflight, rps float64
	ok            bool
}

func (w *window) averages(now time.Time, span time.Duration) averages {
	cur := w.slot(now)
	k := min(int64((span+w.gran-1)/w.gran), int64(len(w.buckets)))
	var sum float64
	var buckets int
	var requests uint64
	oldest := cur + 1
	for i := range w.buckets {
		b := &w.buckets[i]
		if b.n == 0 || b.slot > cur || b.slot <= cur-k {
			continue
		}
		sum += b.inflight / float64(b.n)
		buckets++
		requests += b.requests
		oldest = min(oldest, b.slot)
	}
	if buckets == 0 {
		return averages{}
	}
	covered := time.Duration(cur-oldest+1) * w.gran
	return averages{
		inflight: sum / float64(buckets),
		rps:      float64(requests) / covered.Seconds(),
		ok:       true,
	}
}

// maxWindow is the largest value recorded over the last span: the count a
// scale-down must wait below for scale_down_delay. It keeps a decreasing
// run of (time, value) pairs, so each record and read is amortized O(1).
type maxWindow struct {
	span  time.Duration
	items []timedValue
}

type timedValue struct {
	t time.Time
	v int
}

func (m *maxWindow) record(t time.Time, v int) {
	for len(m.items) > 0 && m.items[len(m.items)-1].v <= v {
		m.items = m.items[:len(m.items)-1]
	}
	m.items = append(m.items, timedValue{t, v})
	m.expire(t)
}

func (m *maxWindow) expire(now time.Time) {
	i := 0
	for i < len(m.items)-1 && !m.items[i].t.After(now.Add(-m.span)) {
		i++
	}
	m.items = m.items[i:]
}

// current is the largest value recorded within span of now, and since
// when the value it replaced has been lower (the time of that record).
func (m *maxWindow) current(now time.Time) (v int, at time.Time) {
	m.expire(now)
	if len(m.items) == 0 {
		return 0, time.Time{}
	}
	return m.items[0].v, m.items[0].t
}

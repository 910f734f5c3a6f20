package admin

import "sort"

// Point is one second of the charts: per balancer its rates and gauges, per
// group its worker counts. Arrays keep the history sent to a new page small.
type Point struct {
	// T is the time in Unix milliseconds.
	T int64 `json:"t"`
	// B is, by balancer: requests/s answered 1xx–3xx, 4xx, and 5xx or not
	// at all; p50 and p99 latency in ms (0 without requests); in-flight;
	// retries/s; 503s/s golb answered itself (see the Bal* indexes).
	B map[string][balFields]float64 `json:"b"`
	// G is, by group: desired, running, healthy, draining (the Grp* indexes).
	G map[string][grpFields]int `json:"g"`
}

// Indexes of Point.B.
const (
	BalOK = iota
	Bal4xx
	Bal5xx
	BalP50
	BalP99
	BalInFlight
	BalRetries
	Bal503
	balFields
)

// Indexes of Point.G.
const (
	GrpDesired = iota
	GrpRunning
	GrpHealthy
	GrpDraining
	grpFields
)

// ring keeps the last n points, oldest first.
type ring struct {
	buf  []Point
	next int
	full bool
}

func newRing(n int) *ring { return &ring{buf: make([]Point, n)} }

func (r *ring) add(p Point) {
	r.buf[r.next] = p
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

// all returns the points, oldest first, in a new slice.
func (r *ring) all() []Point {
	if !r.full {
		return append([]Point(nil), r.buf[:r.next]...)
	}
	return append(append(make([]Point, 0, len(r.buf)), r.buf[r.next:]...), r.buf[:r.next]...)
}

// balancerPoint is one balancer's figures over the seconds between prev
// and cur, two readings of its cumulative counters.
func balancerPoint(prev, cur Balancer, seconds float64) [balFields]float64 {
	var p [balFields]float64
	if seconds <= 0 {
		seconds = 1
	}
	d := func(name string) float64 { return float64(minus(cur.Classes[name], prev.Classes[name])) / seconds }
	p[BalOK] = d("1xx") + d("2xx") + d("3xx")
	p[Bal4xx] = d("4xx")
	p[Bal5xx] = d("5xx") + d("error")
	deltas := make([]uint64, len(cur.Buckets))
	for i, n := range cur.Buckets {
		if i < len(prev.Buckets) {
			n = minus(n, prev.Buckets[i])
		}
		deltas[i] = n
	}
	p[BalP50] = quantileMS(0.50, cur.Bounds, deltas)
	p[BalP99] = quantileMS(0.99, cur.Bounds, deltas)
	p[BalInFlight] = float64(cur.InFlight)
	p[BalRetries] = float64(minus(cur.Retries, prev.Retries)) / seconds
	p[Bal503] = float64(minus(cur.Unavailable, prev.Unavailable)) / seconds
	return p
}

// minus is a-b, or 0 when a counter went backwards (a balancer forgot).
func minus(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// quantileMS estimates the q-quantile in milliseconds from bucket counts
// (not cumulative; the last above every bound), interpolating linearly
// inside the bucket as Prometheus' histogram_quantile does. It is 0 without
// observations, and the highest bound when the quantile is above it.
func quantileMS(q float64, bounds []float64, counts []uint64) float64 {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 || len(bounds) == 0 {
		return 0
	}
	rank := q * float64(total)
	cum := make([]float64, len(counts))
	var run float64
	for i, c := range counts {
		run += float64(c)
		cum[i] = run
	}
	i := sort.SearchFloat64s(cum, rank)
	if i >= len(bounds) {
		return bounds[len(bounds)-1] * 1000
	}
	lo, below := 0.0, 0.0
	if i > 0 {
		lo, below = bounds[i-1], cum[i-1]
	}
	in := cum[i] - below
	if in == 0 {
		return bounds[i] * 1000
	}
	return (lo + (bounds[i]-lo)*(rank-below)/in) * 1000
}

// groupPoint counts a group's workers by state.
func groupPoint(g Group, workers []Worker) [grpFields]int {
	var p [grpFields]int
	p[GrpDesired] = g.Desired
	for _, w := range workers {
		if w.Group != g.Name {
			continue
		}
		switch w.Status {
		case "running":
			p[GrpRunning]++
			if w.Healthy {
				p[GrpHealthy]++
			}
		case "draining":
			p[GrpDraining]++
		}
	}
	return p
}

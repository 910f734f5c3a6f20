package stats

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// SeedJSON renders totals in the seed's /worker/stats shape, byte for byte as the seed
// printed it (tab-indented, keys in this order, a final newline):
//
//	{"SuccessfulRequests": [{"total": N}, {"<worker-id>": n}, ...],
//	 "FailedRequests": [...], "TotalRequests": [...], "AverageResponseTime": [...]}
//
// Workers keep the order of t. AverageResponseTime is the true mean in milliseconds,
// rounded to the microsecond; its "total" entry is the overall mean (all latency over
// all requests). No requests gives 0, never NaN.
func SeedJSON(t []Totals) ([]byte, error) {
	var (
		ok, bad uint64  // summed saturating: hostile stored counts must not wrap
		lat     float64 // summed as float: the sum over workers may exceed int64 ns
	)
	// Every worker's key, quoted, in one buffer: keys[ends[i-1]:ends[i]].
	keys := make([]byte, 0, len(t)*24)
	ends := make([]int, len(t))
	for i, w := range t {
		ok = addSat(ok, w.Success)
		bad = addSat(bad, w.Failed)
		lat += float64(w.LatencySum)
		var err error
		if keys, err = appendKey(keys, w.WorkerID); err != nil {
			return nil, err
		}
		ends[i] = len(keys)
	}
	key := func(i int) []byte {
		if i == 0 {
			return keys[:ends[0]]
		}
		return keys[ends[i-1]:ends[i]]
	}

	b := make([]byte, 0, 256+len(t)*4*48)
	b = append(b, "{\n"...)
	section := func(name string, total []byte, value func(Totals, []byte) []byte, last bool) {
		b = append(b, "\t\""...)
		b = append(b, name...)
		b = append(b, "\": [\n\t\t{\n\t\t\t\"total\": "...)
		b = append(b, total...)
		b = append(b, "\n\t\t}"...)
		for i, w := range t {
			b = append(b, ",\n\t\t{\n\t\t\t"...)
			b = append(b, key(i)...)
			b = append(b, ": "...)
			b = value(w, b)
			b = append(b, "\n\t\t}"...)
		}
		b = append(b, "\n\t]"...)
		if !last {
			b = append(b, ',')
		}
		b = append(b, '\n')
	}
	section("SuccessfulRequests", strconv.AppendUint(nil, ok, 10),
		func(w Totals, b []byte) []byte { return strconv.AppendUint(b, w.Success, 10) }, false)
	section("FailedRequests", strconv.AppendUint(nil, bad, 10),
		func(w Totals, b []byte) []byte { return strconv.AppendUint(b, w.Failed, 10) }, false)
	all := addSat(ok, bad)
	section("TotalRequests", strconv.AppendUint(nil, all, 10),
		func(w Totals, b []byte) []byte { return strconv.AppendUint(b, w.Total(), 10) }, false)
	section("AverageResponseTime", appendMS(nil, lat, all),
		func(w Totals, b []byte) []byte { return appendMS(b, float64(w.LatencySum), w.Total()) }, true)
	b = append(b, "}\n"...)
	return b, nil
}

// addSat is a+b, or the largest uint64 where that would wrap.
func addSat(a, b uint64) uint64 {
	if s, carry := bits.Add64(a, b, 0); carry == 0 {
		return s
	}
	return math.MaxUint64
}

// appendKey appends id as a JSON string: as it is, quoted, when nothing in it
// needs escaping (golb's own ids never do), else as encoding/json writes it.
func appendKey(b []byte, id string) ([]byte, error) {
	plain := true
	for i := 0; plain && i < len(id); i++ {
		c := id[i]
		plain = c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' && c < utf8.RuneSelf
	}
	if plain {
		b = append(b, '"')
		b = append(b, id...)
		return append(b, '"'), nil
	}
	k, err := json.Marshal(id)
	if err != nil {
		return nil, fmt.Errorf("encoding worker id %q: %w", id, err)
	}
	return append(b, k...), nil
}

// appendMS appends the mean of latencyNS over n requests, in milliseconds rounded to
// the microsecond, in the shortest decimal form (0, 500, 512.3).
func appendMS(b []byte, latencyNS float64, n uint64) []byte {
	if n == 0 || latencyNS <= 0 {
		return append(b, '0')
	}
	ms := math.Round(latencyNS/float64(n)/1e3) / 1e3
	if math.IsNaN(ms) || math.IsInf(ms, 0) {
		return append(b, '0')
	}
	return strconv.AppendFloat(b, ms, 'f', -1, 64)
}

// seedCacheWorkers is the number of workers from which the Aggregator keeps a
// rendered /worker/stats for up to seedMaxAge: below it, every answer is
// rendered afresh (a few milliseconds), so the counts are those of the request.
const seedCacheWorkers = 10_000

// seedMaxAge is how long after its render an answer of SeedJSON may be
// reused (with many workers); the flush interval when that is shorter, and as
// long as the render took when that is longer (so that clients asking
// without pause keep at most half a core busy).
const seedMaxAge = time.Second

// seedCache is the last rendered /worker/stats. Its mutex is held while one is
// rendered, so that concurrent requests wait for that render and share its
// bytes rather than each rendering their own: a million stored workers make a
// 155 MB answer, and six at once once took 2.6 GB.
type seedCache struct {
	mu    sync.Mutex
	body  []byte        // shared by every answer: never modified
	at    time.Time     // when the snapshot it renders was taken
	done  time.Time     // when its render ended
	took  time.Duration // how long that render took
	large bool          // it has seedCacheWorkers workers or more
}

// SeedJSON is SeedJSON(a.Snapshot()), rendered at most once at a time. A call
// that waited for a render which began after it was made returns that render
// (its counts are at least as new as the call). Otherwise, with fewer than
// 10,000 workers, every call is rendered afresh, exact; with more, an answer
// rendered less than a second ago (one flush interval, if shorter; as long as
// its render took, if longer) is returned again: its counts are at most that
// plus the render's time old. The bytes are shared: callers must not modify
// them.
func (a *Aggregator) SeedJSON() ([]byte, error) {
	asked := time.Now()
	c := &a.seed
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.body != nil {
		if !c.at.Before(asked) || c.large && time.Since(c.done) < max(min(seedMaxAge, a.interval), c.took) {
			return c.body, nil
		}
	}
	c.body = nil // dropped before the next render allocates its own
	at := time.Now()
	snap := a.Snapshot()
	body, err := SeedJSON(snap)
	if err != nil {
		return nil, err
	}
	c.done = time.Now()
	c.body, c.at, c.took, c.large = body, at, c.done.Sub(at), len(snap) >= seedCacheWorkers
	return body, nil
}

// Handler serves a.SeedJSON() for GET and HEAD, and 405 for other methods.
// It does not look at the path: mount it at /worker/stats.
func Handler(a *Aggregator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := a.SeedJSON()
		if err != nil {
			http.Error(w, "rendering stats: "+err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method == http.MethodHead {
			return
		}
		w.Write(body) //nolint:errcheck // the client went away; nothing to do
	})
}

package stats

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
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
		ok, bad uint64
		lat     float64 // summed as float: the sum over workers may exceed int64 ns
	)
	keys := make([][]byte, len(t))
	for i, w := range t {
		ok += w.Success
		bad += w.Failed
		lat += float64(w.LatencySum)
		k, err := json.Marshal(w.WorkerID)
		if err != nil {
			return nil, fmt.Errorf("encoding worker id %q: %w", w.WorkerID, err)
		}
		keys[i] = k
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
			b = append(b, keys[i]...)
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
	section("TotalRequests", strconv.AppendUint(nil, ok+bad, 10),
		func(w Totals, b []byte) []byte { return strconv.AppendUint(b, w.Total(), 10) }, false)
	section("AverageResponseTime", appendMS(nil, lat, ok+bad),
		func(w Totals, b []byte) []byte { return appendMS(b, float64(w.LatencySum), w.Total()) }, true)
	b = append(b, "}\n"...)
	return b, nil
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

// Handler serves SeedJSON(a.Snapshot()) for GET and HEAD, and 405 for other methods.
// It does not look at the path: mount it at /worker/stats.
func Handler(a *Aggregator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := SeedJSON(a.Snapshot())
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

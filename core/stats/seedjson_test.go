package stats

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

func TestSeedJSONGolden(t *testing.T) {
	in := []Totals{
		{WorkerID: "fdbaa57c12d3", Success: 88, Failed: 12, LatencySum: 51230 * time.Millisecond}, // mean 512.3
		{WorkerID: "7fd03362f4f4"}, // no requests: 0
		{WorkerID: "c1623efb21e8", Success: 3, LatencySum: 1500001500 * time.Nanosecond}, // 500.0005 -> 500.001
		{WorkerID: `a"b<c>`, Failed: 1}, // escaped key
	}
	// Totals: 91 ok, 13 failed, 104 requests; overall mean 52730.0015 ms / 104 = 507.019 ms.
	want := `{
	"SuccessfulRequests": [
		{
			"total": 91
		},
		{
			"fdbaa57c12d3": 88
		},
		{
			"7fd03362f4f4": 0
		},
		{
			"c1623efb21e8": 3
		},
		{
			"a\"b\u003cc\u003e": 0
		}
	],
	"FailedRequests": [
		{
			"total": 13
		},
		{
			"fdbaa57c12d3": 12
		},
		{
			"7fd03362f4f4": 0
		},
		{
			"c1623efb21e8": 0
		},
		{
			"a\"b\u003cc\u003e": 1
		}
	],
	"TotalRequests": [
		{
			"total": 104
		},
		{
			"fdbaa57c12d3": 100
		},
		{
			"7fd03362f4f4": 0
		},
		{
			"c1623efb21e8": 3
		},
		{
			"a\"b\u003cc\u003e": 1
		}
	],
	"AverageResponseTime": [
		{
			"total": 507.019
		},
		{
			"fdbaa57c12d3": 512.3
		},
		{
			"7fd03362f4f4": 0
		},
		{
			"c1623efb21e8": 500.001
		},
		{
			"a\"b\u003cc\u003e": 0
		}
	]
}
`
	got, err := SeedJSON(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("SeedJSON =\n%s\nwant\n%s", got, want)
	}
	if !json.Valid(got) {
		t.Fatal("SeedJSON is not valid JSON")
	}
}

// The seed README's sample output (three fresh workers) is what SeedJSON prints, byte for byte.
func TestSeedJSONMatchesSeedReadmeSample(t *testing.T) {
	want, err := os.ReadFile("testdata/seed-readme-zero.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := SeedJSON([]Totals{{WorkerID: "fdbaa57c12d3"}, {WorkerID: "7fd03362f4f4"}, {WorkerID: "c1623efb21e8"}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("SeedJSON =\n%s\nseed README shows\n%s", got, want)
	}
}

// seedStats decodes the seed's shape into section -> key -> value, checking key order.
func seedStats(t *testing.T, body []byte) map[string]map[string]float64 {
	t.Helper()
	var raw map[string][]map[string]float64
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	order := []string{"SuccessfulRequests", "FailedRequests", "TotalRequests", "AverageResponseTime"}
	last := -1
	for _, k := range order {
		i := bytes.Index(body, []byte(`"`+k+`"`))
		if i < 0 || i < last {
			t.Fatalf("key %s missing or out of order in %s", k, body)
		}
		last = i
	}
	out := map[string]map[string]float64{}
	for sec, entries := range raw {
		out[sec] = map[string]float64{}
		for j, e := range entries {
			if len(e) != 1 {
				t.Fatalf("%s[%d] has %d keys, want 1", sec, j, len(e))
			}
			for k, v := range e {
				if j == 0 && k != "total" {
					t.Fatalf("%s starts with %q, want total", sec, k)
				}
				out[sec][k] = v
			}
		}
	}
	return out
}

// TestSeedJSONEmptyTableGivesZerosNotNaN pins the seed bug where an empty table
// rendered the average as NaN (0/0).
func TestSeedJSONEmptyTableGivesZerosNotNaN(t *testing.T) {
	for _, in := range [][]Totals{nil, {{WorkerID: "idle"}}} {
		got, err := SeedJSON(in)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(bytes.ToLower(got), []byte("nan")) || bytes.Contains(got, []byte("Inf")) {
			t.Fatalf("SeedJSON(%v) contains NaN/Inf:\n%s", in, got)
		}
		for sec, m := range seedStats(t, got) {
			for k, v := range m {
				if v != 0 {
					t.Errorf("SeedJSON(%v): %s[%s] = %v, want 0", in, sec, k, v)
				}
			}
		}
	}
}

// TestSeedJSONAverageIsMeanNotLastLatency pins the seed bug where "AverageResponseTime"
// was the latency of the last request, and checks the total is weighted by requests.
func TestSeedJSONAverageIsMeanNotLastLatency(t *testing.T) {
	s := openTestSink(t, dbPath(t))
	defer s.Close()
	a, err := NewAggregator(s, time.Hour, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBalancer("slow", "fast")
	a.AddSource("web", b.source)
	for _, ms := range []int{100, 200, 900} { // last latency 900, mean 400
		b.hit(0, true, time.Duration(ms)*time.Millisecond)
	}
	b.hit(1, false, 100*time.Millisecond)

	body, err := SeedJSON(a.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	avg := seedStats(t, body)["AverageResponseTime"]
	if avg["slow"] != 400 {
		t.Errorf("slow average = %v ms, want the mean 400 (the last latency was 900)", avg["slow"])
	}
	if avg["fast"] != 100 {
		t.Errorf("fast average = %v ms, want 100", avg["fast"])
	}
	// (100+200+900+100)/4 = 325; the unweighted mean of means would be 250.
	if avg["total"] != 325 {
		t.Errorf("total average = %v ms, want 325 (all latency over all requests)", avg["total"])
	}
}

func TestHandlerServesSnapshot(t *testing.T) {
	s := openTestSink(t, dbPath(t))
	defer s.Close()
	a, err := NewAggregator(s, time.Hour, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBalancer("w1", "w2")
	a.AddSource("web", b.source)
	srv := httptest.NewServer(Handler(a))
	defer srv.Close()

	for i := range 5 {
		b.hit(i%2, i != 3, 10*time.Millisecond)
	}
	// No flush has happened: the handler still shows every request (no lag).
	resp, err := http.Get(srv.URL + "/worker/stats")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	st := seedStats(t, body)
	if st["TotalRequests"]["total"] != 5 || st["FailedRequests"]["w2"] != 1 || st["SuccessfulRequests"]["w1"] != 3 {
		t.Errorf("GET body does not match the counts:\n%s", body)
	}
	if a.Health().Flushes != 0 {
		t.Fatal("a flush happened; the no-lag check above proves nothing")
	}

	req, _ := http.NewRequest(http.MethodHead, srv.URL+"/worker/stats", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(body)) {
		t.Errorf("HEAD: %s, Content-Length %d, want 200 and %d", resp.Status, resp.ContentLength, len(body))
	}

	for _, m := range []string{http.MethodPost, http.MethodDelete, http.MethodPut} {
		req, _ := http.NewRequest(m, srv.URL+"/worker/stats", strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %s, Allow %q; want 405 and Allow: GET, HEAD", m, resp.Status, resp.Header.Get("Allow"))
		}
	}
}

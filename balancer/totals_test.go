package balancer

import (
	"net/http"
	"testing"
)

// TestTotalsSumTheWorkers: Totals counts every attempt by class and
// latency bucket, over all workers, as the collector does.
func TestTotalsSumTheWorkers(t *testing.T) {
	fail := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	b := startBalancer(t, testConfig(), newWorker(t, "a", nil), newWorker(t, "b", fail))
	c := testClient()
	for range 10 {
		get(t, c, baseURL(b)+"/x")
	}
	tot := b.Totals()
	var classes, buckets uint64
	for _, n := range tot.Classes {
		classes += n
	}
	for _, n := range tot.Buckets {
		buckets += n
	}
	ok, bad := tot.Classes[class2xx], tot.Classes[class5xx]
	if classes < 10 || buckets != classes || ok == 0 || bad == 0 || ClassNames[class5xx] != "5xx" {
		t.Fatalf("totals: %+v", tot)
	}
	if len(tot.Buckets) != len(LatencyBounds)+1 || b.Name() != "web" || tot.InFlight != 0 {
		t.Fatalf("totals: %+v, name %q", tot, b.Name())
	}
}

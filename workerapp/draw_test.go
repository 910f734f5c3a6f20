package workerapp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

type drawStats struct {
	n, fails   int
	minD, maxD time.Duration
	sum        float64 // of delays, in ns
}

func drawMany(s *Server, r *rand.Rand, n int) drawStats {
	st := drawStats{n: n, minD: math.MaxInt64, maxD: math.MinInt64}
	for range n {
		d, fail := s.draw(r)
		if fail {
			st.fails++
		}
		st.minD = min(st.minD, d)
		st.maxD = max(st.maxD, d)
		st.sum += float64(d)
	}
	return st
}

func (st drawStats) failFrac() float64 { return float64(st.fails) / float64(st.n) }
func (st drawStats) mean() float64     { return st.sum / float64(st.n) }

// checkDraws asserts the contract on one batch of draws: failures within ±1.5
// points of rate (exact at 0 and 1), every delay in [avg/2, 3·avg/2], mean within ±5%.
func checkDraws(t *testing.T, st drawStats, avg time.Duration, rate float64) {
	t.Helper()
	switch rate {
	case 0, 1:
		if want := int(rate) * st.n; st.fails != want {
			t.Errorf("rate %g: %d failures in %d draws, want exactly %d", rate, st.fails, st.n, want)
		}
	default:
		if d := math.Abs(st.failFrac() - rate); d > 0.015 {
			t.Errorf("rate %g: failure fraction %.4f over %d draws, off by %.4f (> 0.015)", rate, st.failFrac(), st.n, d)
		}
	}
	if 2*st.minD < avg || 2*st.maxD > 3*avg {
		t.Errorf("avg %s: delays in [%s, %s], want within [%s, %s]", avg, st.minD, st.maxD, avg/2, avg*3/2)
	}
	if avg > 0 {
		if rel := math.Abs(st.mean()-float64(avg)) / float64(avg); rel > 0.05 {
			t.Errorf("avg %s: mean delay %s, off by %.2f%% (> 5%%)", avg, time.Duration(st.mean()), 100*rel)
		}
	} else if st.maxD != 0 {
		t.Errorf("avg 0: max delay %s, want 0", st.maxD)
	}
	t.Logf("rate %g avg %s: %d/%d failures (%.4f), delays [%s, %s], mean %s",
		rate, avg, st.fails, st.n, st.failFrac(), st.minD, st.maxD, time.Duration(st.mean()))
}

func TestDrawStatistics(t *testing.T) {
	const n = 20000
	for _, rate := range []float64{0, 0.12, 0.5, 1} {
		for _, avg := range []time.Duration{500 * time.Millisecond, 0, time.Millisecond, time.Hour} {
			for seed := uint64(1); seed <= 3; seed++ {
				t.Run(fmt.Sprintf("rate=%g/avg=%s/seed=%d", rate, avg, seed), func(t *testing.T) {
					s := New(Config{Port: 1, AvgDelay: avg, FailureRate: rate})
					r := rand.New(rand.NewPCG(seed, 42))
					checkDraws(t, drawMany(s, r, n), avg, rate)
				})
			}
		}
	}
}

// The production generator (runtime source, no seed) meets the same contract; the
// tolerance is more than 14 standard deviations at 100,000 draws.
func TestDrawStatisticsProductionSource(t *testing.T) {
	s := New(Config{Port: 1, AvgDelay: 500 * time.Millisecond, FailureRate: 0.12})
	checkDraws(t, drawMany(s, s.rng, 100000), 500*time.Millisecond, 0.12)
}

// Regression: the seed failed at rate+1 percent (an off-by-one in its comparison), so
// "0%" still failed and "100%" did not always fail. Rates 0 and 1 must be exact.
func TestDrawFailureRateNotOffByOne(t *testing.T) {
	for _, rate := range []float64{0, 1} {
		s := New(Config{Port: 1, FailureRate: rate})
		for seed := uint64(0); seed < 5; seed++ {
			st := drawMany(s, rand.New(rand.NewPCG(seed, seed)), 10000)
			if st.fails != int(rate)*st.n {
				t.Errorf("rate %g seed %d: %d failures in %d draws", rate, seed, st.fails, st.n)
			}
		}
	}
	// And a small rate is not shifted up by a point either.
	s := New(Config{Port: 1, FailureRate: 0.01})
	st := drawMany(s, rand.New(rand.NewPCG(7, 7)), 100000)
	if f := st.failFrac(); f < 0.008 || f > 0.012 {
		t.Errorf("rate 0.01: failure fraction %.4f, want 0.01±0.002", f)
	}
}

// Odd and tiny averages keep every delay inside [avg/2, 3·avg/2], use both ends of
// the range, and keep the exact mean.
func TestDrawDelayIntegerEdges(t *testing.T) {
	tests := []struct {
		avg, lo, hi time.Duration
	}{
		{1, 1, 1},
		{2, 1, 3},
		{3, 2, 4},
		{7, 4, 10},
		{10, 5, 15},
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, tt := range tests {
		st := drawMany(New(Config{Port: 1, AvgDelay: tt.avg}), r, 10000)
		if st.minD != tt.lo || st.maxD != tt.hi {
			t.Errorf("avg %dns: delays in [%d, %d], want exactly [%d, %d]", tt.avg, st.minD, st.maxD, tt.lo, tt.hi)
		}
		if rel := math.Abs(st.mean()-float64(tt.avg)) / float64(tt.avg); rel > 0.05 {
			t.Errorf("avg %dns: mean %.3f", tt.avg, st.mean())
		}
	}
}

// Real requests through a real listener: the fraction of 500s matches the rate, and
// every answer is well-formed JSON. The seeded generator makes the count repeatable.
func TestHelloFailureRateOverHTTP(t *testing.T) {
	const (
		requests = 4000
		parallel = 16
		rate     = 0.12
	)
	s := seeded(NewWithLogger(Config{Port: 1, WorkerID: "stat-1", AvgDelay: time.Millisecond, FailureRate: rate}, quietLogger(t)), 99)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	url := "http://" + ln.Addr().String() + PathHello
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: parallel}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()

	var (
		mu     sync.Mutex
		counts = map[int]int{}
		errs   []string
		wg     sync.WaitGroup
		next   = make(chan struct{})
	)
	start := time.Now()
	for range parallel {
		wg.Go(func() {
			for range next {
				status, msg, err := getJSON(client, url)
				mu.Lock()
				switch {
				case err != nil:
					errs = append(errs, err.Error())
				case status == http.StatusOK && msg["message"] != "hello from container: stat-1":
					errs = append(errs, fmt.Sprintf("200 with body %v", msg))
				case status == http.StatusInternalServerError && msg["error"] == "":
					errs = append(errs, fmt.Sprintf("500 without an error field: %v", msg))
				}
				counts[status]++
				mu.Unlock()
			}
		})
	}
	for range requests {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()

	if len(errs) > 0 {
		t.Fatalf("%d bad answers, first: %s", len(errs), errs[0])
	}
	if counts[200]+counts[500] != requests {
		t.Fatalf("status counts %v, want only 200 and 500 over %d requests", counts, requests)
	}
	frac := float64(counts[500]) / requests
	t.Logf("%d requests in %s: %d × 500 (%.4f)", requests, time.Since(start).Round(time.Millisecond), counts[500], frac)
	if math.Abs(frac-rate) > 0.015 {
		t.Errorf("500 fraction %.4f, want %.2f ± 0.015", frac, rate)
	}
}

// getJSON GETs url and decodes a JSON object answer, checking its Content-Type.
func getJSON(client *http.Client, url string) (int, map[string]string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		return resp.StatusCode, nil, fmt.Errorf("status %d: Content-Type %q", resp.StatusCode, ct)
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("status %d: body %q: %w", resp.StatusCode, b, err)
	}
	return resp.StatusCode, m, nil
}

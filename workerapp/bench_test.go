package workerapp

import (
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkHelloHandler measures the handler itself (no delay, 12% failures), in parallel.
func BenchmarkHelloHandler(b *testing.B) {
	s := NewWithLogger(Config{Port: 1, WorkerID: "bench", AvgDelay: 0, FailureRate: 0.12}, quietLogger(b))
	h := s.Handler()
	req := httptest.NewRequest(http.MethodGet, PathHello, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 200 && rec.Code != 500 {
				b.Fatalf("status %d", rec.Code)
			}
		}
	})
}

// BenchmarkDraw measures one delay+failure draw from the production generator.
func BenchmarkDraw(b *testing.B) {
	s := New(Config{Port: 1, AvgDelay: 500 * time.Millisecond, FailureRate: 0.12})
	r := rand.New(runtimeSource{})
	for b.Loop() {
		s.draw(r)
	}
}

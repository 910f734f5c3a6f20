package stats

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

const benchWorkers = 100

func benchIDs() []string {
	ids := make([]string, benchWorkers)
	for i := range ids {
		ids[i] = fmt.Sprintf("worker-%03d", i)
	}
	return ids
}

// BenchmarkSnapshot: 100 stored workers, two balancers (listeners) counting all of them.
func BenchmarkSnapshot(b *testing.B) {
	ctx := context.Background()
	s := openTestSink(b, dbPath(b))
	defer s.Close()
	ids := benchIDs()
	base := make([]Totals, len(ids))
	for i, id := range ids {
		base[i] = Totals{WorkerID: id, Success: uint64(i) * 10, Failed: uint64(i), LatencySum: time.Duration(i) * time.Second}
	}
	if err := s.Write(ctx, base); err != nil {
		b.Fatal(err)
	}
	a, err := NewAggregator(s, time.Hour, nil)
	if err != nil {
		b.Fatal(err)
	}
	web, api := newFakeBalancer(ids...), newFakeBalancer(ids...)
	a.AddSource("web", web.source)
	a.AddSource("api", api.source)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		web.hit(i%benchWorkers, true, time.Millisecond)
		if got := a.Snapshot(); len(got) != benchWorkers {
			b.Fatalf("%d workers", len(got))
		}
		i++
	}
}

// BenchmarkWrite: one transaction upserting the absolute totals of 100 workers.
func BenchmarkWrite(b *testing.B) {
	ctx := context.Background()
	s := openTestSink(b, dbPath(b))
	defer s.Close()
	ids := benchIDs()
	batch := make([]Totals, len(ids))
	for i, id := range ids {
		batch[i] = Totals{WorkerID: id}
	}
	b.ReportAllocs()
	for b.Loop() {
		for i := range batch {
			batch[i].Success++
			batch[i].LatencySum += time.Millisecond
		}
		if err := s.Write(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
}

// storedWorkers writes n workers ("gone-0000042") to a new file and returns it.
func storedWorkers(b *testing.B, n int) *SQLiteSink {
	b.Helper()
	s := openTestSink(b, dbPath(b))
	b.Cleanup(func() { s.Close() })
	batch := make([]Totals, n)
	for i := range batch {
		batch[i] = Totals{WorkerID: fmt.Sprintf("gone-%07d", i), Success: uint64(i), Failed: 1, LatencySum: time.Second}
	}
	if err := s.Write(context.Background(), batch); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkStartOverStoredWorkers: what an Aggregator keeps per stored worker
// (live heap after start, per worker; the table never forgets a worker).
func BenchmarkStartOverStoredWorkers(b *testing.B) {
	const n = 100_000
	s := storedWorkers(b, n)
	var keep *Aggregator
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		a, err := NewAggregator(s, time.Hour, nil)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		keep = a
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/worker")
	}
	runtime.KeepAlive(keep)
}

// BenchmarkSeedJSONStoredWorkers: rendering /worker/stats over 100,000 stored
// workers (uncached: each iteration takes a snapshot and renders it).
func BenchmarkSeedJSONStoredWorkers(b *testing.B) {
	const n = 100_000
	a, err := NewAggregator(storedWorkers(b, n), time.Hour, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		body, err := SeedJSON(a.Snapshot())
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(body)))
	}
}

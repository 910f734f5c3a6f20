package stats

import (
	"context"
	"fmt"
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

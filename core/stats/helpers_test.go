package stats

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// fakeWorker and fakeBalancer stand in for balancer/: the interface between the two
// packages is a func Source, so atomic counters are all a balancer contributes.
type fakeWorker struct {
	id          string
	ok, bad, ns atomic.Uint64
}

type fakeBalancer struct{ workers []*fakeWorker }

func newFakeBalancer(ids ...string) *fakeBalancer {
	b := &fakeBalancer{}
	for _, id := range ids {
		b.workers = append(b.workers, &fakeWorker{id: id})
	}
	return b
}

func (b *fakeBalancer) hit(i int, success bool, d time.Duration) {
	w := b.workers[i]
	if success {
		w.ok.Add(1)
	} else {
		w.bad.Add(1)
	}
	w.ns.Add(uint64(d))
}

func (b *fakeBalancer) source() []Count {
	out := make([]Count, len(b.workers))
	for i, w := range b.workers {
		out[i] = Count{WorkerID: w.id, Success: w.ok.Load(), Failed: w.bad.Load(), LatencySum: time.Duration(w.ns.Load())}
	}
	return out
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func dbPath(t testing.TB) string { return filepath.Join(t.TempDir(), "worker-stats.db") }

func openTestSink(t testing.TB, path string) *SQLiteSink {
	t.Helper()
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawDB opens the file with a plain connection of its own, independent of SQLiteSink.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// readTotals reads worker_totals straight from the file, through a connection of its own.
func readTotals(t testing.TB, path string) []Totals {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT worker_id, success, failed, latency_ns FROM worker_totals ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []Totals
	for rows.Next() {
		var tt Totals
		var ok, bad, ns int64
		if err := rows.Scan(&tt.WorkerID, &ok, &bad, &ns); err != nil {
			t.Fatal(err)
		}
		tt.Success, tt.Failed, tt.LatencySum = uint64(ok), uint64(bad), time.Duration(ns)
		out = append(out, tt)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitFor polls cond until it holds or the (generous) deadline passes.
func waitFor(t testing.TB, deadline time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > deadline {
			t.Fatalf("gave up waiting for %s after %v", what, deadline)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("waited %v for %s", time.Since(start).Round(time.Millisecond), what)
}

func pragma(t testing.TB, db *sql.DB, name string) string {
	t.Helper()
	var v string
	if err := db.QueryRow("PRAGMA " + name).Scan(&v); err != nil {
		t.Fatalf("PRAGMA %s: %v", name, err)
	}
	return v
}

func equalTotals(a, b []Totals) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// runAggregator starts a.Run and returns a function that stops it and waits.
func runAggregator(t testing.TB, a *Aggregator) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	return func() { cancel(); <-done }
}

package stats

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// TestLatencySumAtTheTopDoesNotBlockFlushes: a stored latency_ns near
// 2^63-1 (a valid row Load accepts) plus one more request wrapped the sum
// negative: Write refused the whole batch, so no worker's counts were stored
// again for the rest of the run. Sums now stop at 2^63-1.
func TestLatencySumAtTheTopDoesNotBlockFlushes(t *testing.T) {
	path := hostileFile(t, looseTotals,
		`INSERT INTO worker_totals VALUES (1,'slow-1',10,0,9223372036854775000,0,0)`,
		`INSERT INTO worker_totals VALUES (2,'ok-1',0,0,0,0,0)`)
	s := openTestSink(t, path)
	defer s.Close()
	a, err := NewAggregator(s, time.Hour, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBalancer("slow-1", "ok-1")
	a.AddSource("web", b.source)
	b.hit(0, true, time.Second) // one more second of latency on the old worker
	for range 100 {
		b.hit(1, true, time.Millisecond)
	}
	for _, tt := range a.Snapshot() {
		if tt.WorkerID == "slow-1" && tt.Mean() < 0 {
			t.Errorf("slow-1's mean latency is %v: LatencySum wrapped to %d", tt.Mean(), tt.LatencySum)
		}
	}
	ferr := a.Flush(context.Background())
	var okStored uint64
	for _, tt := range readTotals(t, path) {
		if tt.WorkerID == "ok-1" {
			okStored = tt.Success
		}
	}
	if ferr != nil || okStored != 100 {
		t.Errorf("Flush: %v; ok-1 stored %d of its 100 requests: one worker's overflow blocks every worker's flush", ferr, okStored)
	}
}

// TestCountAtTheTopDoesNotBlockFlushes: the same with a count at 2^63-1.
func TestCountAtTheTopDoesNotBlockFlushes(t *testing.T) {
	path := hostileFile(t, looseTotals,
		`INSERT INTO worker_totals VALUES (1,'big-1',9223372036854775807,0,0,0,0)`)
	s := openTestSink(t, path)
	defer s.Close()
	a, err := NewAggregator(s, time.Hour, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBalancer("big-1", "ok-1")
	a.AddSource("web", b.source)
	b.hit(0, true, time.Millisecond)
	b.hit(1, true, time.Millisecond)
	if err := a.Flush(context.Background()); err != nil {
		t.Errorf("Flush: %v: ok-1's request is never stored because big-1 passed 2^63-1", err)
	}
}

// TestSeedImportWithAHugeAverageDoesNotBlockFlushes: the 0→1 migration computes
// latency_ns = average_response_time × 1e6 × requests in floating point and
// CASTs it; SQLite clamps an out-of-range real to 2^63-1, which Load accepts.
// The first request to that worker then blocked every flush (see above).
func TestSeedImportWithAHugeAverageDoesNotBlockFlushes(t *testing.T) {
	path := dbPath(t)
	db := rawDB(t, path)
	if _, err := db.Exec(seedSchema); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO worker_stats VALUES (?, ?, ?, ?, ?, ?)`, "seed-1", time.Now(), 1000, 0, 1000, 1e13); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s := openTestSink(t, path)
	defer s.Close()
	got, err := s.Load(context.Background())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Logf("imported: %+v", got)
	a, err := NewAggregator(s, time.Hour, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBalancer("seed-1", "new-1")
	a.AddSource("web", b.source)
	b.hit(0, true, time.Millisecond)
	b.hit(1, true, time.Millisecond)
	if err := a.Flush(context.Background()); err != nil {
		t.Errorf("a seed file with a large average imports, then no flush ever succeeds: %v", err)
	}
}

// TestTablesGolbCannotWriteAreRefusedAtOpen: a worker_totals table with every
// column golb names passed the schema check at open, and then every flush
// failed (an extra NOT NULL column), or a flush stored golb's integers as text
// and the next start refused the file golb had written. A write is now tried
// at open and rolled back.
func TestTablesGolbCannotWriteAreRefusedAtOpen(t *testing.T) {
	const row = `INSERT INTO worker_totals (worker_id, success, failed, latency_ns, created_at, updated_at) VALUES ('w-1', 200, 0, 0, 0, 0)`
	for name, sql := range map[string][2]string{
		"an extra NOT NULL column": {`CREATE TABLE worker_totals(seq INTEGER PRIMARY KEY, worker_id TEXT UNIQUE, success, failed, latency_ns, created_at, updated_at, owner TEXT NOT NULL)`,
			`INSERT INTO worker_totals (worker_id, success, failed, latency_ns, created_at, updated_at, owner) VALUES ('w-1', 200, 0, 0, 0, 0, 'x')`},
		"a CHECK golb breaks": {`CREATE TABLE worker_totals(seq INTEGER PRIMARY KEY, worker_id TEXT UNIQUE, success CHECK (success > 100), failed, latency_ns, created_at, updated_at)`, row},
		"counts kept as text": {`CREATE TABLE worker_totals(seq INTEGER PRIMARY KEY, worker_id TEXT UNIQUE, success TEXT, failed, latency_ns, created_at, updated_at)`, row},
	} {
		t.Run(name, func(t *testing.T) {
			path := hostileFile(t, sql[0], sql[1])
			s, err := OpenSQLite(path)
			if err == nil {
				s.Close()
				t.Fatal("opened; a flush would fail or write what the next start refuses")
			}
			if !errors.Is(err, ErrForeignSchema) {
				t.Errorf("refused with %v, want ErrForeignSchema", err)
			}
			t.Logf("refused: %v", err)
			db := rawDB(t, path)
			defer db.Close()
			var n int
			if err := db.QueryRow(`SELECT count(*) FROM worker_totals`).Scan(&n); err != nil || n != 1 {
				t.Errorf("the file's rows after the refused open: %d (%v), want its 1 row untouched", n, err)
			}
		})
	}
}

// TestRemovedFileIsWrittenAgain: the stats file removed while golb ran
// (a user's rm, a tmp cleaner) took every later write into the unlinked
// file: each flush "succeeded", the store said ok, and the next start found
// no file and no counts. Now the next flush opens the path afresh, fails
// once saying so, and the one after writes every worker's totals into it,
// also those unchanged since the removal.
func TestRemovedFileIsWrittenAgain(t *testing.T) {
	path := dbPath(t)
	s := openTestSink(t, path)
	a, err := NewAggregator(s, time.Hour, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBalancer("w-1", "w-2")
	a.AddSource("web", b.source)
	b.hit(0, true, time.Millisecond)
	b.hit(1, false, time.Millisecond)
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	b.hit(0, true, time.Millisecond)
	err = a.Flush(context.Background())
	if !errors.Is(err, ErrFileReplaced) || !a.Health().Failing() {
		t.Fatalf("the first flush after the removal: %v (failing %v), want ErrFileReplaced", err, a.Health().Failing())
	}
	t.Logf("first flush after the removal: %v", err)
	if err := a.Flush(context.Background()); err != nil || a.Health().Failing() {
		t.Fatalf("the next flush: %v (failing %v), want it stored", err, a.Health().Failing())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got := map[string]Totals{}
	for _, tt := range readTotals(t, path) {
		got[tt.WorkerID] = tt
	}
	if got["w-1"].Success != 2 || got["w-2"].Failed != 1 {
		t.Errorf("the file written again holds %+v, want w-1 with 2 successes and w-2 (unchanged since the removal) with its failure", got)
	}
}

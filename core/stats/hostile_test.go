package stats

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hostileFile writes a file at golb's schema version whose worker_totals table
// is created by ddl (not by golb) and holds rows.
func hostileFile(t *testing.T, ddl string, rows ...string) string {
	t.Helper()
	path := dbPath(t)
	db := rawDB(t, path)
	stmts := append([]string{"PRAGMA journal_mode=WAL", ddl}, rows...)
	stmts = append(stmts, fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion))
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

const looseTotals = `CREATE TABLE worker_totals(seq INTEGER PRIMARY KEY, worker_id TEXT UNIQUE, success, failed, latency_ns, created_at, updated_at)`

// TestLoadRefusesRowsGolbNeverWrote pins the bug where a negative count in a
// stats file (a table without golb's CHECKs) was loaded and wrapped: golb
// started with the store "ok" and /worker/stats showed 18446744073709551611.
// Such a row, an empty or NULL id, or a count that is no integer, is now refused
// at start as a damaged file, with the way out.
func TestLoadRefusesRowsGolbNeverWrote(t *testing.T) {
	for name, row := range map[string]string{
		"negative counts":  `(1,'a-1',-5,-7,-100,0,0)`,
		"negative latency": `(1,'a-1',5,7,-100,0,0)`,
		"empty id":         `(1,'',1,1,1,0,0)`,
		"NULL id":          `(1,NULL,1,1,1,0,0)`,
		"blob id":          `(1,x'6131',1,1,1,0,0)`,
		"oversized id":     fmt.Sprintf(`(1,'%s',1,1,1,0,0)`, strings.Repeat("x", maxWorkerID+1)),
		"text count":       `(1,'a-1','abc',0,0,0,0)`,
		"real count":       `(1,'a-1',1.5,0,0,0,0)`,
		"NULL count":       `(1,'a-1',NULL,0,0,0,0)`,
	} {
		t.Run(name, func(t *testing.T) {
			path := hostileFile(t, looseTotals, `INSERT INTO worker_totals VALUES (2,'ok-1',3,0,7,0,0)`,
				`INSERT INTO worker_totals VALUES `+row)
			s := openTestSink(t, path)
			defer s.Close()
			_, err := s.Load(context.Background())
			if !errors.Is(err, ErrDamaged) || !errors.Is(err, ErrInvalidTotals) {
				t.Fatalf("Load = %v, want ErrDamaged and ErrInvalidTotals", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "loading stats from "+path+": the file is damaged (") ||
				!strings.HasSuffix(msg, ": "+recoverHint) || len(msg) > 400 {
				t.Errorf("error %q does not name the file, say it is damaged and end in the way out", msg)
			}
			if _, err := NewAggregator(s, time.Second, nil); !errors.Is(err, ErrDamaged) {
				t.Errorf("NewAggregator over the row: %v, want ErrDamaged", err)
			}
		})
	}
	t.Run("largest counts load", func(t *testing.T) {
		path := hostileFile(t, looseTotals, fmt.Sprintf(`INSERT INTO worker_totals VALUES (1,'a-1',%d,0,%d,0,0)`, math.MaxInt64, math.MaxInt64))
		s := openTestSink(t, path)
		defer s.Close()
		got, err := s.Load(context.Background())
		if err != nil || len(got) != 1 || got[0].Success != math.MaxInt64 {
			t.Fatalf("Load = %+v, %v", got, err)
		}
	})
}

// TestOpenRefusesForeignWorkerTotalsTable pins the bug where a worker_totals
// table golb did not create opened without complaint and then failed every
// flush with a raw SQL error (`ON CONFLICT clause does not match any PRIMARY
// KEY or UNIQUE constraint`), or the start with "no such table": it is now
// refused at open with the way out, and the file is left as it was.
func TestOpenRefusesForeignWorkerTotalsTable(t *testing.T) {
	for name, ddl := range map[string]string{
		"no table":          `CREATE TABLE x(y)`,
		"no unique index":   `CREATE TABLE worker_totals(seq INTEGER PRIMARY KEY, worker_id TEXT, success, failed, latency_ns, created_at, updated_at)`,
		"composite unique":  `CREATE TABLE worker_totals(seq INTEGER PRIMARY KEY, worker_id TEXT, success, failed, latency_ns, created_at, updated_at, UNIQUE(worker_id, success))`,
		"partial unique":    `CREATE TABLE worker_totals(seq INTEGER PRIMARY KEY, worker_id TEXT, success, failed, latency_ns, created_at, updated_at); CREATE UNIQUE INDEX p ON worker_totals(worker_id) WHERE success > 0`,
		"no latency column": `CREATE TABLE worker_totals(seq INTEGER PRIMARY KEY, worker_id TEXT UNIQUE, success, failed, created_at, updated_at)`,
		"no updated_at":     `CREATE TABLE worker_totals(seq INTEGER PRIMARY KEY, worker_id TEXT UNIQUE, success, failed, latency_ns, created_at)`,
	} {
		t.Run(name, func(t *testing.T) {
			path := hostileFile(t, ddl)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := OpenSQLite(path)
			if err == nil {
				s.Close()
				t.Fatal("OpenSQLite accepted the table")
			}
			msg := err.Error()
			if !errors.Is(err, ErrForeignSchema) || !strings.HasPrefix(msg, "opening stats database "+path+": the file's worker_totals table is not golb's (") ||
				!strings.HasSuffix(msg, ": "+recoverHint) {
				t.Errorf("OpenSQLite: %q, want ErrForeignSchema naming the file and the way out", msg)
			}
			if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, before) {
				t.Errorf("the refused file changed (read: %v)", err)
			}
		})
	}
	// A table with golb's columns and a unique worker_id, without its CHECKs,
	// is usable: its rows are checked by Load.
	s := openTestSink(t, hostileFile(t, looseTotals))
	defer s.Close()
	if err := s.Write(context.Background(), []Totals{{WorkerID: "a-1", Success: 2}}); err != nil {
		t.Fatalf("Write to a loose but usable table: %v", err)
	}
}

// TestSeedJSONTotalSaturatesInsteadOfWrapping pins the bug where "total" was
// a plain sum of uint64s: stored counts near 2^63 wrapped it to a small
// number. It now stops at 2^64-1.
func TestSeedJSONTotalSaturatesInsteadOfWrapping(t *testing.T) {
	var ts []Totals
	for i := range 3 {
		ts = append(ts, Totals{WorkerID: fmt.Sprint("w", i), Success: math.MaxInt64, Failed: math.MaxInt64})
	}
	b, err := SeedJSON(ts)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"total": 18446744073709551615`, // successes and all: saturated
		`"w0": 18446744073709551614`,    // one worker's total: 2^64-2, exact
	} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("SeedJSON lacks %s:\n%.600s", want, b)
		}
	}
}

// TestStatsRenderedOnceForConcurrentRequests pins the bug where every GET
// /worker/stats rendered the whole answer itself, with no limit: a million
// stored workers made each 155 MB and 8 s, and six at once took the agent to
// 2.6 GB. With many workers, concurrent requests now share one render, and an
// answer is reused for at most a second (or a flush interval); with few, each
// request is rendered afresh and exact.
func TestStatsRenderedOnceForConcurrentRequests(t *testing.T) {
	stored := make([]Totals, seedCacheWorkers)
	for i := range stored {
		stored[i] = Totals{WorkerID: fmt.Sprint("old-", i), Success: 1}
	}
	s := openTestSink(t, dbPath(t))
	defer s.Close()
	if err := s.Write(context.Background(), stored); err != nil {
		t.Fatal(err)
	}
	a, err := NewAggregator(s, 300*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	var renders atomic.Int64
	b := newFakeBalancer("live")
	a.AddSource("web", func() []Count { renders.Add(1); return b.source() })

	const n = 8
	bodies := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			body, err := a.SeedJSON()
			if err != nil {
				t.Error(err)
			}
			bodies[i] = body
		})
	}
	wg.Wait()
	if got := renders.Load(); got != 1 {
		t.Errorf("%d concurrent requests over %d workers took %d snapshots, want 1", n, seedCacheWorkers+1, got)
	}
	for i := range bodies {
		if len(bodies[i]) == 0 || &bodies[i][0] != &bodies[0][0] {
			t.Fatalf("answer %d is not the shared render", i)
		}
	}
	b.hit(0, true, time.Millisecond)
	time.Sleep(350 * time.Millisecond) // past the flush interval: rendered again
	body, err := a.SeedJSON()
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`"total": %d`, seedCacheWorkers+1); !bytes.Contains(body, []byte(want)) || renders.Load() != 2 {
		t.Errorf("after the interval: %d snapshots, answer without %s", renders.Load(), want)
	}

	// Requests that wait for a render share the next one to begin after them:
	// its counts are at least as new as each request.
	ss := openTestSink(t, dbPath(t))
	defer ss.Close()
	slow, err := NewAggregator(ss, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	inside, release := make(chan struct{}), newGateT()
	slow.AddSource("web", func() []Count {
		if calls.Add(1) == 1 {
			close(inside)
			release.wait()
		}
		return nil
	})
	first := make(chan struct{})
	go func() { defer close(first); slow.SeedJSON() }() //nolint:errcheck
	<-inside
	for range 5 {
		wg.Go(func() {
			if _, err := slow.SeedJSON(); err != nil {
				t.Error(err)
			}
		})
	}
	time.Sleep(100 * time.Millisecond) // the five wait for the first render
	release.open()
	wg.Wait()
	<-first
	if got := calls.Load(); got != 2 {
		t.Errorf("one request rendering and five waiting for it took %d snapshots, want 2 (the first, and one shared by the five)", got)
	}

	// Few workers: every answer is exact.
	fs := openTestSink(t, dbPath(t))
	defer fs.Close()
	few, err := NewAggregator(fs, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	fb := newFakeBalancer("w1")
	few.AddSource("web", fb.source)
	for i := 1; i <= 3; i++ {
		fb.hit(0, true, time.Millisecond)
		body, err := few.SeedJSON()
		if err != nil || !bytes.Contains(body, []byte(fmt.Sprintf(`"w1": %d`, i))) {
			t.Fatalf("request %d with one worker: not exact (%v):\n%s", i, err, body)
		}
	}
}

// gateT is a one-shot latch.
type gateT struct {
	once sync.Once
	ch   chan struct{}
}

func newGateT() *gateT { return &gateT{ch: make(chan struct{})} }
func (g *gateT) open() { g.once.Do(func() { close(g.ch) }) }
func (g *gateT) wait() { <-g.ch }

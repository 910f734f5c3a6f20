package stats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// hitPattern is the traffic of goroutine g's i-th request over two balancers.
func hitPattern(web, api *fakeBalancer, g, i int) {
	d := time.Duration(1+(g*31+i)%97) * time.Millisecond
	ok := (g+i)%8 != 0
	if i%3 == 0 {
		api.hit((g+i)%len(api.workers), ok, d)
	} else {
		web.hit((g+i)%len(web.workers), ok, d)
	}
}

func TestSnapshotIsExactWhileSourcesCount(t *testing.T) {
	ctx := context.Background()
	s := openTestSink(t, dbPath(t))
	defer s.Close()
	base := []Totals{
		{WorkerID: "w2", Success: 100, Failed: 7, LatencySum: 3 * time.Second},
		{WorkerID: "w1", Success: 5, LatencySum: 50 * time.Millisecond},
	}
	if err := s.Write(ctx, base); err != nil {
		t.Fatal(err)
	}
	a, err := NewAggregator(s, time.Hour, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	web := newFakeBalancer("w1", "w2", "w3")
	api := newFakeBalancer("w3", "w4") // w3 is behind both balancers
	a.AddSource("web", web.source)
	a.AddSource("api", api.source)

	const goroutines, hits = 4, 3000
	readerDone := make(chan error, 1)
	stopReading := make(chan struct{})
	reads := 0
	go func() {
		prev := a.Snapshot()
		for {
			select {
			case <-stopReading:
				readerDone <- nil
				return
			default:
			}
			cur := a.Snapshot()
			reads++
			if err := checkMonotonic(prev, cur); err != nil {
				readerDone <- err
				return
			}
			prev = cur
		}
	}()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range hits {
				hitPattern(web, api, g, i)
			}
		})
	}
	wg.Wait()
	close(stopReading)
	if err := <-readerDone; err != nil {
		t.Fatal(err)
	}

	// The same traffic, counted sequentially.
	expWeb, expAPI := newFakeBalancer("w1", "w2", "w3"), newFakeBalancer("w3", "w4")
	for g := range goroutines {
		for i := range hits {
			hitPattern(expWeb, expAPI, g, i)
		}
	}
	want := addCounts(addCounts(base, expWeb.source()), expAPI.source())
	if got := a.Snapshot(); !equalTotals(got, want) {
		t.Fatalf("Snapshot = %+v\nwant       %+v", got, want)
	}
	t.Logf("%d concurrent snapshots, all monotonic and in stable order", reads)
}

// checkMonotonic reports an error if a worker moved, vanished or any count went down.
func checkMonotonic(prev, cur []Totals) error {
	if len(cur) < len(prev) {
		return fmt.Errorf("snapshot shrank from %d to %d workers", len(prev), len(cur))
	}
	for i, p := range prev {
		c := cur[i]
		if c.WorkerID != p.WorkerID {
			return fmt.Errorf("worker %d changed from %s to %s: order is not stable", i, p.WorkerID, c.WorkerID)
		}
		if c.Success < p.Success || c.Failed < p.Failed || c.LatencySum < p.LatencySum {
			return fmt.Errorf("worker %s went backwards: %+v then %+v", c.WorkerID, p, c)
		}
	}
	return nil
}

type recordingSink struct {
	Sink
	mu      sync.Mutex
	batches [][]Totals
}

func (r *recordingSink) Write(ctx context.Context, batch []Totals) error {
	r.mu.Lock()
	r.batches = append(r.batches, slices.Clone(batch))
	r.mu.Unlock()
	return r.Sink.Write(ctx, batch)
}

func (r *recordingSink) take() [][]Totals {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.batches
	r.batches = nil
	return b
}

func TestFlushWritesOnlyChangedWorkers(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	inner := openTestSink(t, path)
	defer inner.Close()
	if err := inner.Write(ctx, []Totals{{WorkerID: "w1", Success: 5}, {WorkerID: "old", Failed: 1}}); err != nil {
		t.Fatal(err)
	}
	rec := &recordingSink{Sink: inner}
	a, err := NewAggregator(rec, time.Hour, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBalancer("w1", "w2", "w3")
	a.AddSource("web", b.source)

	ids := func(batches [][]Totals) [][]string {
		var out [][]string
		for _, bt := range batches {
			var row []string
			for _, x := range bt {
				row = append(row, x.WorkerID)
			}
			out = append(out, row)
		}
		return out
	}
	steps := []struct {
		name string
		act  func()
		want [][]string
	}{
		{"new workers are recorded even with no requests yet", func() {}, [][]string{{"w2", "w3"}}},
		{"one worker counted", func() { b.hit(1, true, time.Millisecond) }, [][]string{{"w2"}}},
		{"nothing changed: no write at all", func() {}, nil},
		{"two workers counted", func() { b.hit(0, false, 0); b.hit(2, true, time.Second) }, [][]string{{"w1", "w3"}}},
	}
	for _, st := range steps {
		st.act()
		if err := a.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if got := ids(rec.take()); !slices.EqualFunc(got, st.want, slices.Equal) {
			t.Errorf("%s: wrote batches %v, want %v", st.name, got, st.want)
		}
	}
	if got, want := readTotals(t, path), a.Snapshot(); !equalTotals(got, want) {
		t.Errorf("file holds %+v\nsnapshot   %+v", got, want)
	}
	if h := a.Health(); h.Flushes != 3 || h.Errors != 0 || h.LastFlush.IsZero() {
		t.Errorf("Health = %+v, want 3 flushes, no errors", h)
	}
}

func TestRemoveSourceKeepsItsCountsInTheTotals(t *testing.T) {
	s := openTestSink(t, dbPath(t))
	defer s.Close()
	a, err := NewAggregator(s, time.Hour, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	web, api := newFakeBalancer("w1", "w2"), newFakeBalancer("w2")
	a.AddSource("web", web.source)
	a.AddSource("api", api.source)
	for i := range 50 {
		web.hit(i%2, i%5 != 0, time.Millisecond)
		api.hit(0, true, 2*time.Millisecond)
	}
	before := a.Snapshot()
	a.RemoveSource("web")
	if got := a.Snapshot(); !equalTotals(got, before) {
		t.Fatalf("after RemoveSource: %+v\nwant unchanged %+v", got, before)
	}
	web.hit(0, true, time.Second) // a removed source no longer counts
	if got := a.Snapshot(); !equalTotals(got, before) {
		t.Fatalf("a removed source still counts: %+v", got)
	}

	// Adding the same key again is the same instance: its function is replaced,
	// nothing folded (folding would count api's 50 requests twice).
	a.AddSource("api", api.source)
	if got := a.Snapshot(); !equalTotals(got, before) {
		t.Fatalf("after adding api again: %+v\nwant unchanged %+v", got, before)
	}
	a.AddSource("api", nil) // a nil source removes, folding
	api.hit(0, true, time.Second)
	if got := a.Snapshot(); !equalTotals(got, before) {
		t.Fatalf("after AddSource(api, nil): %+v\nwant unchanged %+v", got, before)
	}
}

// TestTwoInstancesOfABalancerBothCountUntilTheOldIsRemoved: the contract core
// relies on (TestReaddedBalancerStillDrainingLosesNoCounts): a balancer re-added
// under its name while the old instance drains is a second key; the old one's
// last requests count until RemoveSource folds them (true count 16).
func TestTwoInstancesOfABalancerBothCountUntilTheOldIsRemoved(t *testing.T) {
	path := dbPath(t)
	s := openTestSink(t, path)
	defer s.Close()
	a, err := NewAggregator(s, time.Hour, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	old := newFakeBalancer("w1")
	a.AddSource("web#1", old.source)
	for range 10 {
		old.hit(0, true, time.Millisecond)
	}
	fresh := newFakeBalancer("w1") // reload 2 adds web back while web#1 drains
	a.AddSource("web#2", fresh.source)
	for range 5 { // web#1's requests in flight at the reload finish now
		old.hit(0, true, time.Millisecond)
	}
	a.RemoveSource("web#1") // removeLater, once web#1's Shutdown returned
	fresh.hit(0, true, time.Millisecond)
	if got := a.Snapshot(); len(got) != 1 || got[0].Total() != 16 {
		t.Fatalf("snapshot %+v, want w1 with 16 requests", got)
	}
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readTotals(t, path); len(got) != 1 || got[0].Total() != 16 {
		t.Fatalf("stored %+v, want w1 with 16 requests", got)
	}
}

func TestNewAggregatorReportsLoadErrors(t *testing.T) {
	s := openTestSink(t, dbPath(t))
	s.Close()
	if _, err := NewAggregator(s, 0, nil); err == nil {
		t.Fatal("NewAggregator over a closed sink succeeded")
	} else {
		t.Logf("NewAggregator: %v", err)
	}
	if _, err := NewAggregator(nil, 0, nil); err == nil {
		t.Fatal("NewAggregator(nil) succeeded")
	}
}

// TestSnapshotNeverBlocksOnLockedDatabase holds the database's write lock from a second
// connection while balancers keep counting: /worker/stats must stay instant, flushes
// must report the trouble, and the totals must reach the file once the lock is gone.
func TestSnapshotNeverBlocksOnLockedDatabase(t *testing.T) {
	const lockFor = 3 * time.Second
	for _, tc := range []struct {
		name string
		busy time.Duration
	}{
		{"writes wait behind the lock and ticks are skipped", DefaultBusyTimeout},
		{"writes fail with SQLITE_BUSY and are retried", 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			path := dbPath(t)
			s, err := openSQLite(path, tc.busy)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			a, err := NewAggregator(s, 50*time.Millisecond, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			b := newFakeBalancer("w1", "w2", "w3")
			a.AddSource("web", b.source)
			stop := runAggregator(t, a)
			defer stop()

			countCtx, stopCounting := context.WithCancel(ctx)
			counted := make(chan struct{})
			go func() {
				defer close(counted)
				for i := 0; countCtx.Err() == nil; i++ {
					b.hit(i%3, i%9 != 0, time.Duration(i%50)*time.Millisecond)
					if i%16 == 0 {
						time.Sleep(100 * time.Microsecond)
					}
				}
			}()
			waitFor(t, 10*time.Second, "a first flush", func() bool { return a.Health().Flushes > 0 })

			holder := rawDB(t, path)
			conn, err := holder.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
				t.Fatal(err)
			}
			locked := time.Now()
			before := a.Health()

			var worst time.Duration
			calls := 0
			prev := a.Snapshot()
			for time.Since(locked) < lockFor {
				t0 := time.Now()
				cur := a.Snapshot()
				worst = max(worst, time.Since(t0))
				calls++
				if err := checkMonotonic(prev, cur); err != nil {
					t.Fatal(err)
				}
				prev = cur
				time.Sleep(time.Millisecond)
			}
			if tc.busy > lockFor {
				// A write is stuck behind the lock: Flush must wait for it, not race it.
				fctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
				err := a.Flush(fctx)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Flush during the lock = %v, want it to wait for the running write", err)
				}
			}
			during := a.Health()
			if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
				t.Fatal(err)
			}
			conn.Close()
			t.Logf("lock held %v; %d snapshots, worst %v; health before %+v, during %+v",
				time.Since(locked).Round(time.Millisecond), calls, worst, before, during)

			if worst >= 500*time.Millisecond {
				t.Errorf("worst Snapshot took %v while the database was locked, want far below the %v lock", worst, lockFor)
			}
			if during.Flushes > before.Flushes+1 {
				t.Errorf("%d flushes committed while the database was locked", during.Flushes-before.Flushes)
			}
			if during.Skipped == before.Skipped && during.Errors == before.Errors {
				t.Errorf("no skipped tick and no error reported while the database was locked")
			}
			if tc.busy < lockFor && (during.Errors == before.Errors || during.LastError == "") {
				t.Errorf("busy timeout %v < lock %v, yet no write failed: %+v", tc.busy, lockFor, during)
			}

			stopCounting()
			<-counted
			want := a.Snapshot()
			// The flush that commits them also clears LastError (just after the commit).
			waitFor(t, 20*time.Second, "the final totals in the file and a clean health", func() bool {
				return equalTotals(readTotals(t, path), want) && a.Health().LastError == ""
			})
			stop()
			if err := a.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A write stuck behind a locked database must not hold shutdown hostage: cancelling
// Run interrupts it (not counted as an error), and the final Flush writes everything
// once the database is free.
func TestRunStopsPromptlyWhileDatabaseLocked(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	s := openTestSink(t, path) // DefaultBusyTimeout: a write would wait 5s
	defer s.Close()
	a, err := NewAggregator(s, 20*time.Millisecond, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBalancer("w1", "w2")
	a.AddSource("web", b.source)

	holder := rawDB(t, path)
	conn, err := holder.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	stop := runAggregator(t, a)
	b.hit(0, true, time.Millisecond)
	waitFor(t, 10*time.Second, "a write blocked behind the lock", func() bool { return a.Health().Skipped > 0 })

	t0 := time.Now()
	stop()
	took := time.Since(t0)
	t.Logf("Run returned %v after cancel (busy timeout %v)", took, DefaultBusyTimeout)
	if took > DefaultBusyTimeout/2 {
		t.Errorf("Run took %v to stop: it waited out the busy timeout instead of interrupting the write", took)
	}
	if h := a.Health(); h.Errors != 0 || h.Flushes != 0 {
		t.Errorf("Health = %+v: an interrupted write is neither a flush nor an error", h)
	}

	fctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err = a.Flush(fctx)
	cancel()
	if err == nil {
		t.Fatal("Flush succeeded while the database was locked")
	}
	t.Logf("Flush while locked: %v", err)

	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	b.hit(1, false, 2*time.Millisecond)
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := readTotals(t, path), a.Snapshot(); !equalTotals(got, want) {
		t.Fatalf("file holds %+v, want %+v", got, want)
	}
}

// One unattributable count (empty worker id) must not make every batch fail.
func TestEmptyWorkerIDDoesNotBlockFlushes(t *testing.T) {
	path := dbPath(t)
	s := openTestSink(t, path)
	defer s.Close()
	a, err := NewAggregator(s, time.Hour, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBalancer("w1", "")
	a.AddSource("web", b.source)
	b.hit(0, true, time.Millisecond)
	b.hit(1, true, time.Millisecond)
	if err := a.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	want := []Totals{{WorkerID: "w1", Success: 1, LatencySum: time.Millisecond}}
	if got := readTotals(t, path); !equalTotals(got, want) {
		t.Fatalf("file holds %+v, want %+v", got, want)
	}
}

// TestWorkerGoneBeforeItsFirstRequestIsForgotten: a crash-looping group added
// a zero row to /worker/stats and the database for every worker it tried.
// A worker is listed while a source lists it, and after that only if it has
// counts; a zero row loaded from the database is not listed either.
func TestWorkerGoneBeforeItsFirstRequestIsForgotten(t *testing.T) {
	path := dbPath(t)
	sink := openTestSink(t, path)
	if err := sink.Write(context.Background(), []Totals{{WorkerID: "old-zero"}, {WorkerID: "old-busy", Success: 3}}); err != nil {
		t.Fatal(err)
	}
	agg, err := NewAggregator(sink, time.Hour, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBalancer("idle", "busy")
	b.hit(1, true, time.Millisecond)
	agg.AddSource("web", b.source)
	ids := func() []string {
		var out []string
		for _, t := range agg.Snapshot() {
			out = append(out, t.WorkerID)
		}
		return out
	}
	if got := ids(); !slices.Equal(got, []string{"old-busy", "idle", "busy"}) {
		t.Fatalf("while both run: %v, want old-busy (counts), idle (listed), busy", got)
	}
	b.workers = b.workers[1:] // idle leaves without a request
	if got := ids(); !slices.Equal(got, []string{"old-busy", "busy"}) {
		t.Fatalf("after idle left: %v, want old-busy, busy", got)
	}
	if err := agg.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	loaded, err := sink.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range loaded {
		if l.WorkerID == "idle" {
			t.Errorf("the idle worker was written to the database: %+v", loaded)
		}
	}
}

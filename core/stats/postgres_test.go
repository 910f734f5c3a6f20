//go:build !nopostgres

package stats

import (
	"context"
	"errors"
	"math"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/golb/golb/internal/testutil/pgtest"
)

// openPG opens a postgres sink on dsn as instance, closed when t ends.
func openPG(t testing.TB, dsn, instance string) *PostgresSink {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := OpenPostgres(ctx, Settings{Sink: "postgres", DSN: dsn, Instance: instance})
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// pgConn is a connection of the test's own, closed when t ends.
func pgConn(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// pgRows reads golb_worker_totals through a connection of its own.
func pgRows(t testing.TB, dsn string) map[string]Totals {
	t.Helper()
	out, err := readSharedTotals(context.Background(), pgConn(t, dsn), nil)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]Totals{}
	for _, r := range out.Totals {
		m[r.WorkerID] = r
	}
	return m
}

func sumTotals(ts []Totals) (total, ok, bad uint64) {
	for _, t := range ts {
		total += t.Total()
		ok += t.Success
		bad += t.Failed
	}
	return
}

func pgExec(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	if _, err := pgConn(t, dsn).Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// TestPostgresTwoAgentsExactTotals: two aggregators (two agents) flushing every
// 5 ms into one database while 10,000 requests each are counted store exactly
// 20,000, and each reads all 6 workers back, the other's marked with its
// instance.
func TestPostgresTwoAgentsExactTotals(t *testing.T) {
	srv := pgtest.Shared(t)
	dsn := srv.NewDatabase(t)
	const n = 10000
	type agent struct {
		agg *Aggregator
		b   *fakeBalancer
	}
	var agents []agent
	for i, inst := range []string{"host-a:/a", "host-b:/b"} {
		sink := openPG(t, dsn, inst)
		a, err := NewAggregator(sink, 5*time.Millisecond, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		b := newFakeBalancer(inst+"-w1", inst+"-w2", inst+"-w3")
		a.AddSource("web", b.source)
		agents = append(agents, agent{a, b})
		_ = i
	}
	var wg sync.WaitGroup
	for _, ag := range agents {
		stop := runAggregator(t, ag.agg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer stop()
			for i := range n {
				ag.b.hit(i%3, i%7 != 0, time.Millisecond)
				if i%500 == 0 {
					time.Sleep(time.Millisecond) // let ticks interleave with counting
				}
			}
		}()
	}
	wg.Wait()
	for _, ag := range agents {
		if err := ag.agg.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	rows := pgRows(t, dsn)
	var all []Totals
	for _, r := range rows {
		all = append(all, r)
	}
	total, ok, bad := sumTotals(all)
	if len(rows) != 6 || total != 2*n || ok+bad != total {
		t.Fatalf("database: %d workers, %d requests (%d ok + %d failed), want 6 and %d", len(rows), total, ok, bad, 2*n)
	}
	// The first agent's view of the second's workers is as of its last flush:
	// flush once more (nothing to add) to read everyone's.
	for _, ag := range agents {
		ag.b.hit(0, true, 0)
		if err := ag.agg.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for i, ag := range agents {
		snap := ag.agg.Snapshot()
		total, _, _ := sumTotals(snap)
		want := uint64(2*n + 1 + i) // the second flushed after the first's extra hit
		if len(snap) != 6 || total != want {
			t.Errorf("agent %d sees %d workers, %d requests; want 6, %d", i, len(snap), total, want)
		}
		for _, w := range snap {
			if !strings.HasPrefix(w.WorkerID, w.Instance) {
				t.Errorf("agent %d: worker %s marked as run by %q", i, w.WorkerID, w.Instance)
			}
		}
	}
}

// TestPostgresRetryAfterLostCommitNotDoubled: a flush whose commit went
// through but whose answer was lost (the hook fails it after the commit) is
// resent with the same sequence and skipped: no double count. A flush whose
// connection is killed before the commit is resent and applied once.
func TestPostgresRetryAfterLostCommitNotDoubled(t *testing.T) {
	srv := pgtest.Shared(t)
	dsn := srv.NewDatabase(t)
	sink := openPG(t, dsn, "retry")
	a, err := NewAggregator(sink, time.Hour, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBalancer("w1", "w2")
	a.AddSource("web", b.source)
	for i := range 100 {
		b.hit(i%2, true, time.Millisecond)
	}

	sink.hook = func(stage string) error {
		if stage == "after-commit" {
			return errors.New("connection reset by peer (test hook: the answer to COMMIT is lost)")
		}
		return nil
	}
	if err := a.Flush(context.Background()); err == nil {
		t.Fatal("the flush whose answer was lost succeeded")
	}
	if got := pgRows(t, dsn)["w1"].Success; got != 50 {
		t.Fatalf("after the lost answer the database holds %d for w1, want the 50 committed", got)
	}
	if h := a.Health(); h.Errors != 1 || h.Unflushed != 100 {
		t.Fatalf("health after the lost answer: %+v, want 1 error and 100 unflushed", h)
	}
	sink.hook = nil
	b.hit(0, false, time.Millisecond) // counted after the lost flush: goes in the next batch
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	rows := pgRows(t, dsn)
	if w1, w2 := rows["w1"], rows["w2"]; w1.Success != 50 || w1.Failed != 1 || w2.Success != 50 {
		t.Fatalf("after the retry: w1 %+v, w2 %+v; want 50+1 and 50 (no double count)", w1, w2)
	}

	// Killed before the commit: nothing applied, the retry applies it once.
	killer := func(stage string) error {
		if stage != "before-commit" {
			return nil
		}
		ctx := context.Background()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'golb' AND state = 'idle in transaction'`)
		return err
	}
	sink.hook = killer
	for i := range 10 {
		b.hit(1, i%2 == 0, time.Millisecond)
	}
	if err := a.Flush(context.Background()); err == nil {
		t.Fatal("a flush whose connection was killed before COMMIT succeeded")
	} else {
		t.Logf("killed before commit: %v", err)
	}
	if got := pgRows(t, dsn)["w2"].Total(); got != 50 {
		t.Fatalf("the killed transaction left w2 at %d, want 50", got)
	}
	sink.hook = nil
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w2 := pgRows(t, dsn)["w2"]; w2.Success != 55 || w2.Failed != 5 {
		t.Fatalf("w2 after the retry: %+v, want 55 ok and 5 failed", w2)
	}
	if h := a.Health(); h.Unflushed != 0 || h.Failing() {
		t.Fatalf("health after recovery: %+v", h)
	}
}

// TestPostgresOutageLosesNothing: while the server is stopped, flushes fail
// (counted, marked unreachable, backing off), the pending batch holds one
// delta per worker however many requests arrive, and once the server is back
// the next flush stores everything exactly.
func TestPostgresOutageLosesNothing(t *testing.T) {
	srv := pgtest.Private(t)
	dsn := srv.NewDatabase(t)
	sink := openPG(t, dsn, "outage")
	a, err := NewAggregator(sink, 20*time.Millisecond, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBalancer("w1", "w2", "w3")
	a.AddSource("web", b.source)
	stop := runAggregator(t, a)
	defer stop()
	hits := 0
	hit := func(k int) {
		for range k {
			b.hit(hits%3, hits%5 != 0, time.Millisecond)
			hits++
		}
	}
	hit(300)
	waitFor(t, 30*time.Second, "the first flush", func() bool { return a.Health().Unflushed == 0 })
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		hit(500)
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, 30*time.Second, "a failed flush", func() bool { return a.Health().Failing() })
	h := a.Health()
	if !h.Unreachable || h.Unflushed == 0 {
		t.Fatalf("health while the server is down: %+v, want unreachable with requests unflushed", h)
	}
	t.Logf("while down: %s", h.LastError)
	a.fmu.Lock()
	if a.sh.inflight != nil && len(a.sh.inflight.Deltas) > 3 {
		t.Errorf("the pending batch holds %d deltas for 3 workers", len(a.sh.inflight.Deltas))
	}
	a.fmu.Unlock()
	if snap := a.Snapshot(); func() uint64 { n, _, _ := sumTotals(snap); return n }() != uint64(hits) {
		t.Fatalf("/worker/stats while the database is down: %v, want %d", snap, hits)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	hit(100)
	waitFor(t, 60*time.Second, "the flush after the outage", func() bool { h := a.Health(); return !h.Failing() && h.Unflushed == 0 })
	var all []Totals
	for _, r := range pgRows(t, dsn) {
		all = append(all, r)
	}
	if total, ok, bad := sumTotals(all); total != uint64(hits) || ok+bad != total {
		t.Fatalf("after the outage the database holds %d (%d+%d), want %d", total, ok, bad, hits)
	}
	if h := a.Health(); h.Errors == 0 {
		t.Errorf("no failed flush was counted: %+v", h)
	}
}

// TestPostgresOpenErrorsNameTheFix: a wrong password, a missing database, a
// server that is not there and a DSN that does not parse each give one line
// naming the fix, without the password.
func TestPostgresOpenErrorsNameTheFix(t *testing.T) {
	srv := pgtest.Shared(t)
	ctx := context.Background()
	for _, c := range []struct {
		name, dsn, want string
		is              error
	}{
		{"wrong password", srv.DSNAs(pgtest.PasswordUser, "s3cret-wrong", "postgres"), "fix the user or password", nil},
		{"missing database", srv.DSN("no_such_db"), "create the database", nil},
		{"no server", "postgres://golb:s3cret-wrong@/x?host=/nonexistent-golb-dir&connect_timeout=2", "is PostgreSQL running", ErrUnreachable},
		{"unparsable", "postgres://golb:s3cret-wrong@host:notaport/db", "not a libpq URL", ErrBadDSN},
		{"key=value garbage", "host=/tmp port=abc password=s3cret-wrong", "not a libpq URL", ErrBadDSN},
		{"empty", "  ", "no dsn", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, open := range []func() error{
				func() error { _, err := OpenPostgres(ctx, Settings{DSN: c.dsn, Instance: "i"}); return err },
				func() error { return CheckPostgres(ctx, Settings{DSN: c.dsn, Instance: "i"}) },
			} {
				err := open()
				if err == nil {
					t.Fatal("no error")
				}
				msg := err.Error()
				t.Log(msg)
				if !strings.Contains(msg, c.want) || strings.Contains(msg, "s3cret") || strings.Contains(msg, "\n") {
					t.Errorf("error %q: want one line with %q and no password", msg, c.want)
				}
				if c.is != nil && !errors.Is(err, c.is) {
					t.Errorf("error %q is not %v", msg, c.is)
				}
			}
		})
	}
	if _, err := OpenPostgres(ctx, Settings{DSN: srv.DSN("postgres"), Instance: strings.Repeat("x", MaxInstance+1)}); err == nil {
		t.Error("an oversized instance name was accepted")
	}
}

// TestPostgresInstanceClaimedTwice: a second process opening the same instance
// name takes it over; the first one's flushes then fail with ErrInstanceTaken
// instead of mixing two sequences in one row.
func TestPostgresInstanceClaimedTwice(t *testing.T) {
	srv := pgtest.Shared(t)
	dsn := srv.NewDatabase(t)
	first := openPG(t, dsn, "same")
	second := openPG(t, dsn, "same")
	ctx := context.Background()
	_, err := first.Apply(ctx, []Batch{{Seq: first.NextSeq(), Deltas: []Totals{{WorkerID: "w", Success: 1}}}}, nil)
	if !errors.Is(err, ErrInstanceTaken) || !strings.Contains(err.Error(), "stats.instance") {
		t.Fatalf("first after the takeover: %v, want ErrInstanceTaken naming stats.instance", err)
	}
	if _, err := second.Apply(ctx, []Batch{{Seq: second.NextSeq(), Deltas: []Totals{{WorkerID: "w", Success: 2}}}}, nil); err != nil {
		t.Fatal(err)
	}
	// A restart continues the sequence: the new process's first batch is not
	// mistaken for one already applied.
	third := openPG(t, dsn, "same")
	if third.NextSeq() != second.NextSeq()+1 {
		t.Fatalf("NextSeq after a restart = %d, want %d", third.NextSeq(), second.NextSeq()+1)
	}
	v, err := third.Apply(ctx, []Batch{{Seq: third.NextSeq(), Deltas: []Totals{{WorkerID: "w", Success: 3}}}}, nil)
	out := v.Totals
	if err != nil || len(out) != 1 || out[0].Success != 5 || out[0].Instance != "same" {
		t.Fatalf("third: %v %v, want w at 5", out, err)
	}
}

// TestPostgresSchemaVersions: agents opening a new database at once migrate it
// once; a database from a newer golb is refused by Open and by Check.
func TestPostgresSchemaVersions(t *testing.T) {
	srv := pgtest.Shared(t)
	dsn := srv.NewDatabase(t)
	ctx := context.Background()
	if err := CheckPostgres(ctx, Settings{DSN: dsn, Instance: "i"}); err != nil {
		t.Fatalf("Check of an empty database: %v", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := OpenPostgres(ctx, Settings{DSN: dsn, Instance: "i" + string(rune('a'+i))})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent opens: %v", err)
	}
	pgExec(t, dsn, `UPDATE golb_stats_schema SET version = 99`)
	for _, err := range []error{
		func() error { _, err := OpenPostgres(ctx, Settings{DSN: dsn, Instance: "i"}); return err }(),
		CheckPostgres(ctx, Settings{DSN: dsn, Instance: "i"}),
	} {
		if !errors.Is(err, ErrSchemaTooNew) {
			t.Errorf("a version-99 database: %v, want ErrSchemaTooNew", err)
		}
	}
}

// TestPostgresHostileRows: rows no golb wrote (a negative count, an empty
// worker id) are an error naming the row's fix, never a panic or a wrap-around.
func TestPostgresHostileRows(t *testing.T) {
	srv := pgtest.Shared(t)
	dsn := srv.NewDatabase(t)
	sink := openPG(t, dsn, "i")
	pgExec(t, dsn, `ALTER TABLE golb_worker_totals DROP CONSTRAINT golb_worker_totals_success_check`)
	pgExec(t, dsn, `INSERT INTO golb_worker_totals (worker_id, instance, success) VALUES ('bad', 'x', -5)`)
	ctx := context.Background()
	if _, err := sink.Load(ctx); !errors.Is(err, ErrInvalidTotals) || !strings.Contains(err.Error(), "delete its row") {
		t.Fatalf("Load with a negative count: %v", err)
	}
	if _, err := NewAggregator(sink, time.Second, nil); err == nil {
		t.Fatal("an aggregator started over a negative count")
	}
	pgExec(t, dsn, `DELETE FROM golb_worker_totals`)
	pgExec(t, dsn, `INSERT INTO golb_worker_totals (worker_id, instance) VALUES ('', 'x')`)
	if _, err := sink.Load(ctx); !errors.Is(err, ErrInvalidTotals) {
		t.Fatalf("Load with an empty worker id: %v", err)
	}
	if err := sink.Write(ctx, []Totals{{WorkerID: "w", Success: 1}}); !errors.Is(err, ErrSharedSink) {
		t.Fatalf("Write of absolute totals to a shared sink: %v", err)
	}
}

// TestPostgresRowNearTheTopDoesNotBlockFlushes: a row a delta would take
// past bigint's top failed the whole flush ("bigint out of range"), and the
// same batch was sent again for ever: no worker was stored any more. The
// sum now stops at 2^63-1 and the other workers' counts go in.
func TestPostgresRowNearTheTopDoesNotBlockFlushes(t *testing.T) {
	srv := pgtest.Shared(t)
	dsn := srv.NewDatabase(t)
	sink := openPG(t, dsn, "i")
	pgExec(t, dsn, `INSERT INTO golb_worker_totals (worker_id, instance, success, latency_ns) VALUES ('old', 'i', 9223372036854775800, 9223372036854775000)`)
	a, err := NewAggregator(sink, time.Hour, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBalancer("old", "new")
	a.AddSource("web", b.source)
	for range 10 {
		b.hit(0, true, time.Second)
		b.hit(1, true, time.Millisecond)
	}
	if err := a.Flush(context.Background()); err != nil {
		t.Fatalf("Flush with a row near the top: %v", err)
	}
	rows := pgRows(t, dsn)
	if got := rows["old"]; got.Success != math.MaxInt64 || got.LatencySum != math.MaxInt64 {
		t.Errorf("the row near the top: %+v, want success and latency_ns at 2^63-1", got)
	}
	if got := rows["new"]; got.Success != 10 || got.LatencySum != 10*time.Millisecond {
		t.Errorf("the other worker: %+v, want its 10 requests and 10ms stored", got)
	}
}

// TestPostgresFlushesBackOffWhileUnreachable: with the server down, a 10 ms
// flush interval does not become a connection attempt every 10 ms: the delay
// doubles (up to MaxRetryDelay), so 1.5 s see a handful of attempts, not 150.
func TestPostgresFlushesBackOffWhileUnreachable(t *testing.T) {
	srv := pgtest.Private(t)
	sink := openPG(t, srv.NewDatabase(t), "backoff")
	a, err := NewAggregator(sink, 10*time.Millisecond, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBalancer("w1")
	a.AddSource("web", b.source)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	b.hit(0, true, time.Millisecond)
	stop := runAggregator(t, a)
	time.Sleep(1500 * time.Millisecond)
	stop()
	h := a.Health()
	t.Logf("%d failed flushes in 1.5 s at a 10 ms interval", h.Errors)
	if h.Errors == 0 || h.Errors > 40 || !h.Unreachable {
		t.Fatalf("health %+v: want a few failed, unreachable flushes (1 to 40)", h)
	}
}

// TestPostgresRoleWithoutCreateUsesExistingTables: a role that may only read
// and write golb's tables opens a database whose schema is there (no CREATE
// needed), and on an empty database is told to grant CREATE.
func TestPostgresRoleWithoutCreateUsesExistingTables(t *testing.T) {
	srv := pgtest.Shared(t)
	dsn := srv.NewDatabase(t)
	openPG(t, dsn, "owner") // migrates as the superuser
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := strings.TrimPrefix(u.Path, "/")
	pgExec(t, dsn, `REVOKE CREATE ON SCHEMA public FROM PUBLIC`)
	pgExec(t, dsn, `GRANT SELECT, INSERT, UPDATE ON golb_worker_totals, golb_stats_instances, golb_stats_schema TO `+pgtest.PasswordUser)
	pgExec(t, dsn, `GRANT USAGE ON SEQUENCE golb_worker_totals_seq_seq TO `+pgtest.PasswordUser)
	s := openPG(t, srv.DSNAs(pgtest.PasswordUser, pgtest.Password, db), "limited")
	if _, err := s.Apply(context.Background(), []Batch{{Seq: s.NextSeq(), Deltas: []Totals{{WorkerID: "w", Success: 1}}}}, nil); err != nil {
		t.Fatalf("a flush by a role without CREATE: %v", err)
	}

	empty := srv.NewDatabase(t)
	u, _ = url.Parse(empty)
	pgExec(t, empty, `REVOKE CREATE ON SCHEMA public FROM PUBLIC`)
	_, err = OpenPostgres(context.Background(), Settings{DSN: srv.DSNAs(pgtest.PasswordUser, pgtest.Password, strings.TrimPrefix(u.Path, "/")), Instance: "limited"})
	if err == nil || !strings.Contains(err.Error(), "grant the role CREATE") {
		t.Fatalf("a role without CREATE on an empty database: %v, want the grant named", err)
	}
	t.Log(err)
}

package stats

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The b-trees of a golb stats file: the table, and the index behind its UNIQUE
// worker_id, which every upsert reads.
const (
	tableName = "worker_totals"
	indexName = "sqlite_autoindex_worker_totals_1"
)

// rootPage is the page number of the b-tree root of the table or index name.
func rootPage(t testing.TB, db *sql.DB, name string) int {
	t.Helper()
	var page int
	if err := db.QueryRow(`SELECT rootpage FROM sqlite_schema WHERE name = ?`, name).Scan(&page); err != nil {
		t.Fatalf("finding the root page of %s: %v", name, err)
	}
	return page
}

// damagePage overwrites page number page (1-based) of the SQLite file at path with
// random bytes, the same for the same seed.
func damagePage(t testing.TB, path string, page int, seed uint64) {
	t.Helper()
	if page < 2 {
		t.Fatalf("damagePage(%d): damage a page after the header page", page)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr := make([]byte, 100)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		t.Fatal(err)
	}
	size := int64(binary.BigEndian.Uint16(hdr[16:18])) // the page size; 1 means 65536
	if size == 1 {
		size = 65536
	}
	if fi, err := f.Stat(); err != nil || fi.Size() < int64(page)*size {
		t.Fatalf("%s has no page %d of %d bytes (stat: %v)", path, page, size, err)
	}
	rng := rand.New(rand.NewPCG(seed, uint64(page)))
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	if _, err := f.WriteAt(buf, int64(page-1)*size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// damagedFile makes a stats file with the sink, closes it (which moves the WAL into
// the file) and fills the root page of the b-tree name with random bytes.
func damagedFile(t testing.TB, name string) string {
	t.Helper()
	path := dbPath(t)
	s := openTestSink(t, path)
	var rows []Totals
	for i := range 20 {
		rows = append(rows, Totals{WorkerID: fmt.Sprintf("hello-%08x", i*7919), Success: uint64(10 * i), Failed: uint64(i), LatencySum: time.Duration(i) * time.Second})
	}
	if err := s.Write(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	page := rootPage(t, s.db, name)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the WAL is still beside the closed file (stat: %v): damaging the file alone would miss pages", err)
	}
	damagePage(t, path, page, 1)
	return path
}

// damageUnderSink fills the root page of the b-tree name with random bytes while a
// sink has the file open, as a failing disk or a stray program would. It first moves
// the WAL into the file, and afterwards commits from a connection of its own: any
// other writer's commit makes the sink's connection drop its page cache, so it reads
// the damaged page from the file from then on.
func damageUnderSink(t testing.TB, path, name string) {
	t.Helper()
	db := rawDB(t, path)
	var busy, walFrames, moved int
	if err := db.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &walFrames, &moved); err != nil || busy != 0 {
		t.Fatalf("checkpointing the WAL: busy %d, err %v", busy, err)
	}
	damagePage(t, path, rootPage(t, db, name), 1)
	if _, err := db.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, SchemaVersion)); err != nil {
		t.Fatalf("committing from a second connection: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedStatsFileIsRefusedAtOpen pins a defect: a stats file with random bytes
// in an index page opened without complaint, every flush then failed, and the whole
// run's counts were lost at shutdown. OpenSQLite now runs PRAGMA quick_check and
// refuses a damaged file, index or table page, with one line that names the file and
// the way out, leaving the file as it was; moved aside, golb starts afresh.
func TestDamagedStatsFileIsRefusedAtOpen(t *testing.T) {
	for _, name := range []string{indexName, tableName} {
		t.Run(name, func(t *testing.T) {
			path := damagedFile(t, name)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := OpenSQLite(path)
			if err == nil {
				s.Close()
				t.Fatal("OpenSQLite accepted a file with a damaged page")
			}
			t.Logf("OpenSQLite: %v", err)
			msg := err.Error()
			if !errors.Is(err, ErrDamaged) {
				t.Errorf("error is not ErrDamaged: %v", err)
			}
			if want := "opening stats database " + path + ": the file is damaged ("; !strings.HasPrefix(msg, want) {
				t.Errorf("error %q does not start with %q", msg, want)
			}
			if !strings.HasSuffix(msg, ": "+recoverHint) || strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error %q is not one line ending in the way to recover (%q)", msg, recoverHint)
			}
			if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, before) {
				t.Errorf("the refused file changed (read: %v)", err)
			}
			for _, suffix := range []string{"", "-wal", "-shm"} {
				if err := os.Rename(path+suffix, path+suffix+".damaged"); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
			}
			s = openTestSink(t, path)
			defer s.Close()
			if got, err := s.Load(context.Background()); err != nil || len(got) != 0 {
				t.Fatalf("with the damaged file moved aside: Load = %+v, %v; want a fresh, empty file", got, err)
			}
		})
	}
}

// TestDamagedTablePageErrorNamesTheFile pins a defect: a table page damaged under a
// running golb gave "loading stats: database disk image is malformed", without
// saying which file. Every error of the sink now names it, and says it is damaged.
func TestDamagedTablePageErrorNamesTheFile(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	s := openTestSink(t, path)
	defer s.Close()
	rows := []Totals{{WorkerID: "w1", Success: 3, LatencySum: time.Millisecond}, {WorkerID: "w2", Failed: 1}}
	if err := s.Write(ctx, rows); err != nil {
		t.Fatal(err)
	}
	damageUnderSink(t, path, tableName)

	check := func(what string, err error, prefix string) {
		t.Helper()
		t.Logf("%s: %v", what, err)
		if !errors.Is(err, ErrDamaged) || !strings.HasPrefix(err.Error(), prefix) {
			t.Errorf("%s = %v, want ErrDamaged starting with %q", what, err, prefix)
		}
	}
	_, err := s.Load(ctx)
	check("Load", err, "loading stats from "+path+": the file is damaged: ")
	_, err = NewAggregator(s, time.Hour, nil)
	check("NewAggregator", err, "creating stats aggregator: loading stats from "+path+": ")
	rows[0].Success++
	check("Write", s.Write(ctx, rows), "writing stats to "+path+": the file is damaged: ")
}

// logRecorder keeps every log record (and shows it in the test's output).
type logRecorder struct {
	next slog.Handler
	mu   sync.Mutex
	recs []slog.Record
}

func newLogRecorder(t testing.TB) *logRecorder {
	return &logRecorder{next: slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})}
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(ctx context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.recs = append(r.recs, rec.Clone())
	r.mu.Unlock()
	return r.next.Handle(ctx, rec)
}

func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { panic("logRecorder: WithAttrs unused") }
func (r *logRecorder) WithGroup(string) slog.Handler      { panic("logRecorder: WithGroup unused") }

// records returns the records at level with message msg, oldest first.
func (r *logRecorder) records(level slog.Level, msg string) []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []slog.Record
	for _, rec := range r.recs {
		if rec.Level == level && rec.Message == msg {
			out = append(out, rec)
		}
	}
	return out
}

// attr is the value of rec's attribute key as text, or "" if it has none.
func attr(rec slog.Record, key string) string {
	v := ""
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

const flushFailedMsg = "stats flush failed; retrying at the next tick"

// TestFailingFlushesKeepWarningWithRequestsAtRisk pins a defect: with a page of the
// stats file damaged under a running golb, every flush failed, and after the first
// WARN golb said nothing until "final stats flush failed" at shutdown. It now warns
// at the first failure and then every interval (a minute; shorter here) while writes
// keep failing, each time with the requests not yet stored, and Health says since
// when it fails; the final Flush's error counts the requests it could not store.
func TestFailingFlushesKeepWarningWithRequestsAtRisk(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	s := openTestSink(t, path)
	defer s.Close()
	logs := newLogRecorder(t)
	a, err := NewAggregator(s, 10*time.Millisecond, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	const warnEvery = 200 * time.Millisecond
	a.warnEvery = warnEvery
	b := newFakeBalancer("w1", "w2", "w3")
	a.AddSource("web", b.source)
	for i := range 30 {
		b.hit(i%3, i%5 != 0, time.Millisecond)
	}
	if err := a.Flush(ctx); err != nil { // 30 requests stored: the index holds w1…w3
		t.Fatal(err)
	}

	damaged := time.Now()
	damageUnderSink(t, path, indexName) // every upsert reads this index
	for i := range 7 {
		b.hit(i%3, true, time.Millisecond)
	}
	stop := runAggregator(t, a)
	defer stop()
	waitFor(t, 20*time.Second, "the first WARN", func() bool { return len(logs.records(slog.LevelWarn, flushFailedMsg)) > 0 })
	for range 5 {
		b.hit(0, false, time.Millisecond)
	}
	waitFor(t, 30*time.Second, "a later WARN with the 12 requests at risk", func() bool {
		ws := logs.records(slog.LevelWarn, flushFailedMsg)
		return len(ws) > 1 && attr(ws[len(ws)-1], "unflushed_requests") == "12"
	})
	h := a.Health()
	stop()
	warns := logs.records(slog.LevelWarn, flushFailedMsg)
	t.Logf("%d failed writes, %d WARNs; health %+v", h.Errors, len(warns), h)

	first := warns[0]
	if got := attr(first, "unflushed_requests"); got != "7" {
		t.Errorf("first WARN: unflushed_requests = %q, want 7 (counted since the damage)", got)
	}
	if got := attr(first, "consecutive_failures"); got != "1" {
		t.Errorf("first WARN: consecutive_failures = %q, want 1: the first failure warns at once", got)
	}
	for i, w := range warns {
		if e := attr(w, "err"); !strings.HasPrefix(e, "writing stats to "+path+": the file is damaged: ") {
			t.Errorf("WARN %d: err = %q, want it to name the file and say it is damaged", i, e)
		}
		if n := attr(w, "unflushed_requests"); n != "7" && n != "12" {
			t.Errorf("WARN %d: unflushed_requests = %q, want 7 or 12", i, n)
		}
		if attr(w, "failing_since") == "" {
			t.Errorf("WARN %d has no failing_since", i)
		}
		if i == 0 {
			continue
		}
		// Writes fail every 10 ms: one WARN per failure would be 20 in each interval.
		if gap := w.Time.Sub(warns[i-1].Time); gap < warnEvery/2 {
			t.Errorf("WARN %d came %v after the one before, want about %v", i, gap, warnEvery)
		}
		// The WARN repeats by time, not every so many failures (60 failures are a
		// minute only at a 1 s tick with writes that fail at once): 200 ms of 10 ms
		// ticks hold about 20 failures, never 60.
		prev, _ := strconv.Atoi(attr(warns[i-1], "consecutive_failures"))
		if cur, _ := strconv.Atoi(attr(w, "consecutive_failures")); cur-prev > 40 {
			t.Errorf("WARN %d came %d failed writes after the one before, want about %v of 10 ms ticks", i, cur-prev, warnEvery)
		}
	}
	if h.Errors <= uint64(len(warns)) {
		t.Errorf("%d failed writes, %d WARNs: want fewer WARNs than failures", h.Errors, len(warns))
	}
	if !h.Failing() || h.FailedWrites < len(warns) || h.Unflushed != 12 || !strings.Contains(h.LastError, path) {
		t.Errorf("Health = %+v, want failing, with 12 requests unflushed and the error naming %s", h, path)
	}
	if h.FailingSince.Before(damaged) || h.FailingSince.After(first.Time) {
		t.Errorf("FailingSince = %v, want between the damage (%v) and the first WARN (%v)", h.FailingSince, damaged, first.Time)
	}

	err = a.Flush(ctx)
	t.Logf("final Flush: %v", err)
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "(12 requests not stored)") || !strings.Contains(err.Error(), path) {
		t.Errorf("final Flush = %v, want ErrDamaged counting the 12 requests not stored, naming %s", err, path)
	}
}

// TestFlushRecoveryClearsFailingState: once a write succeeds again (here: a lock
// held by another connection is released), Health is no longer failing, nothing is
// unflushed, and "stats flush recovered" says after how many failed writes.
func TestFlushRecoveryClearsFailingState(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	s, err := openSQLite(path, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	logs := newLogRecorder(t)
	a, err := NewAggregator(s, time.Hour, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBalancer("w1")
	a.AddSource("web", b.source)
	b.hit(0, true, time.Millisecond)

	conn, err := rawDB(t, path).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := a.Flush(ctx); err == nil {
			t.Fatal("Flush succeeded while another connection held the write lock")
		}
	}
	if h := a.Health(); !h.Failing() || h.FailedWrites != 2 || h.Unflushed != 1 || h.FailingSince.IsZero() {
		t.Fatalf("Health while locked = %+v, want failing after 2 writes with 1 request unflushed", h)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if h := a.Health(); h.Failing() || h.FailedWrites != 0 || h.Unflushed != 0 || !h.FailingSince.IsZero() || h.LastError != "" {
		t.Errorf("Health after recovery = %+v, want ok with nothing unflushed", h)
	}
	rec := logs.records(slog.LevelInfo, "stats flush recovered")
	if len(rec) != 1 || attr(rec[0], "failed_writes") != "2" {
		t.Errorf("recovery logs %v, want one INFO with failed_writes=2", rec)
	}
}

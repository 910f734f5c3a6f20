package stats

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite" // also registers the pure-Go "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

// DefaultBusyTimeout is how long a statement waits for another connection's lock
// before failing with SQLITE_BUSY.
const DefaultBusyTimeout = 5 * time.Second

// SQLiteSink stores Totals in one SQLite file, in WAL mode, through a single
// connection, so golb is the file's only writer and readers (golb stats, sqlite3)
// never block it. See migrate.go for the schema and its versions.
type SQLiteSink struct {
	db     *sql.DB
	path   string
	upsert *sql.Stmt
	busy   time.Duration
	// file is the file opened: Write compares path's with it, so that a file
	// removed or replaced while golb runs is noticed, not written unlinked.
	file os.FileInfo
}

// OpenSQLite opens the stats database at path, creating the file, its directory and
// the schema when missing and migrating older schema versions. The connection uses
// journal_mode=WAL, synchronous=NORMAL (durable across process crashes; the last
// transactions may roll back on power loss), busy_timeout=DefaultBusyTimeout, and
// BEGIN IMMEDIATE for every transaction.
//
// A file that fails PRAGMA quick_check (a damaged page in a table or an index) is
// refused with ErrDamaged, and one that is no SQLite database at all with
// ErrNotDatabase, before anything is written to it: a damaged file may open, but
// every later write to it can fail, and the counts of a whole run would be lost at
// shutdown. Every error, of OpenSQLite and of the sink's methods, names the file.
func OpenSQLite(path string) (*SQLiteSink, error) {
	return openSQLite(path, DefaultBusyTimeout)
}

func openSQLite(path string, busy time.Duration) (*SQLiteSink, error) {
	s, err := openSQLiteErr(path, busy)
	if err != nil {
		return nil, fmt.Errorf("opening stats database %s: %w", path, err)
	}
	return s, nil
}

func openSQLiteErr(path string, busy time.Duration) (*SQLiteSink, error) {
	if path == "" {
		return nil, errors.New("no path given")
	}
	if strings.ContainsRune(path, '?') {
		// The driver reads everything after '?' as connection parameters.
		return nil, errors.New("path must not contain '?'")
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating directory: %w", err)
		}
	}
	dsn := fmt.Sprintf("%s?_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate",
		path, busy.Milliseconds())
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	// One connection: golb is a single writer, and SQLite serialises writers anyway;
	// more connections would only turn that into SQLITE_BUSY retries.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)

	ctx := context.Background()
	s := &SQLiteSink{db: db, path: path, busy: busy}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if s.file, err = os.Stat(path); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *SQLiteSink) init(ctx context.Context) error {
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return damaged(err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("%w: journal_mode is %q", ErrNoWAL, mode)
	}
	if err := quickCheck(ctx, s.db); err != nil {
		return err
	}
	if err := migrate(ctx, s.db); err != nil {
		return damaged(err)
	}
	if err := checkSQLiteSchema(ctx, s.db); err != nil {
		return damaged(err)
	}
	if err := probeWrite(ctx, s.db); err != nil {
		return damaged(err)
	}
	st, err := s.db.PrepareContext(ctx, upsertSQL)
	if err != nil {
		return damaged(fmt.Errorf("preparing upsert: %w", err))
	}
	s.upsert = st
	return nil
}

// quickCheck runs PRAGMA quick_check, which reads every page of the file and checks
// the structure of each table and index (in time linear in the file's size; a stats
// file is small), and returns ErrDamaged with the first problem it reports.
func quickCheck(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return damaged(fmt.Errorf("checking the file: %w", err))
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return damaged(fmt.Errorf("checking the file: %w", err))
		}
		if p != "ok" {
			problems = append(problems, p)
		}
	}
	if err := rows.Err(); err != nil {
		return damaged(fmt.Errorf("checking the file: %w", err))
	}
	if len(problems) == 0 {
		return nil
	}
	// A problem may span lines ("*** in database main ***\nTree 3 page 3: …"):
	// the error is one line.
	first := strings.Join(strings.Fields(strings.TrimPrefix(problems[0], "*** in database main ***")), " ")
	if n := len(problems) - 1; n > 0 {
		first += fmt.Sprintf(" (and %d more)", n)
	}
	return fmt.Errorf("%w (quick_check: %s): %s", ErrDamaged, first, recoverHint)
}

// recoverHint is what to do with a damaged file. The -wal and -shm files go with it:
// a WAL left beside a new file would be replayed into it.
const recoverHint = "move it and its -wal and -shm files aside, or delete them, to start afresh"

// damaged marks err with ErrDamaged or ErrNotDatabase, and the way out, when SQLite
// reports the file as corrupt or as no database; other errors are returned as they are.
func damaged(err error) error {
	if errors.Is(err, ErrDamaged) || errors.Is(err, ErrNotDatabase) {
		return err
	}
	switch sqliteCode(err) {
	case sqlite3.SQLITE_CORRUPT:
		return fmt.Errorf("%w (%w): %s", ErrDamaged, err, recoverHint)
	case sqlite3.SQLITE_NOTADB:
		return fmt.Errorf("%w (%w): check stats.path, or move the file aside to start afresh", ErrNotDatabase, err)
	}
	return err
}

// sqliteCode is the primary SQLite result code in err's chain, or 0.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return 0
	}
	return se.Code() & 0xff // extended codes carry the primary one in the low byte
}

// fileErr names the file in an error of Load or Write ("writing stats to PATH: …"),
// and marks a file found damaged with ErrDamaged.
func (s *SQLiteSink) fileErr(doing string, err error) error {
	if sqliteCode(err) == sqlite3.SQLITE_CORRUPT {
		return fmt.Errorf("%s %s: %w: %w", doing, s.path, ErrDamaged, err)
	}
	return fmt.Errorf("%s %s: %w", doing, s.path, err)
}

const upsertSQL = `INSERT INTO worker_totals (worker_id, success, failed, latency_ns, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (worker_id) DO UPDATE SET
	success    = excluded.success,
	failed     = excluded.failed,
	latency_ns = excluded.latency_ns,
	updated_at = excluded.updated_at`

// Path is the database file.
func (s *SQLiteSink) Path() string { return s.path }

// Load returns every stored worker in first-seen order. A row golb would never
// have written (a count or latency that is negative or no integer, a worker id
// that is empty, oversized or no text) is refused with ErrDamaged and the way
// out: loaded, a negative count would wrap to 2^64-5 in every view, and the
// next flush would store it back.
func (s *SQLiteSink) Load(ctx context.Context) ([]Totals, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT seq, worker_id, success, failed, latency_ns FROM worker_totals ORDER BY seq`)
	if err != nil {
		return nil, s.fileErr("loading stats from", err)
	}
	defer rows.Close()
	var out []Totals
	for rows.Next() {
		var seq, id, ok, bad, lat any
		if err := rows.Scan(&seq, &id, &ok, &bad, &lat); err != nil {
			return nil, s.fileErr("loading stats from", err)
		}
		t, err := storedTotals(id, ok, bad, lat)
		if err != nil {
			return nil, fmt.Errorf("loading stats from %s: %w (worker_totals row seq=%v: %w): %s",
				s.path, ErrDamaged, oneLine(fmt.Sprint(seq), 24), err, recoverHint)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fileErr("loading stats from", err)
	}
	return out, nil
}

// storedTotals checks one row of worker_totals as SQLite returned it.
func storedTotals(id, ok, bad, lat any) (Totals, error) {
	wid, isText := id.(string)
	switch {
	case !isText:
		return Totals{}, fmt.Errorf("%w: worker id is %s, not text", ErrInvalidTotals, sqlType(id))
	case wid == "":
		return Totals{}, fmt.Errorf("%w: empty worker id", ErrInvalidTotals)
	case len(wid) > maxWorkerID:
		return Totals{}, fmt.Errorf("%w: worker id of %d bytes (at most %d)", ErrInvalidTotals, len(wid), maxWorkerID)
	}
	var n [3]int64
	for i, v := range []any{ok, bad, lat} {
		name := [...]string{"success", "failed", "latency_ns"}[i]
		x, isInt := v.(int64)
		switch {
		case !isInt:
			return Totals{}, fmt.Errorf("%w: worker %q: %s is %s, not an integer", ErrInvalidTotals, oneLine(wid, 80), name, sqlType(v))
		case x < 0:
			return Totals{}, fmt.Errorf("%w: worker %q: negative %s %d", ErrInvalidTotals, oneLine(wid, 80), name, x)
		}
		n[i] = x
	}
	return Totals{WorkerID: wid, Success: uint64(n[0]), Failed: uint64(n[1]), LatencySum: time.Duration(n[2])}, nil
}

// sqlType names the SQLite storage class of a value as database/sql scanned it.
func sqlType(v any) string {
	switch v.(type) {
	case nil:
		return "NULL"
	case int64:
		return "an integer"
	case float64:
		return "a real"
	case string:
		return "text"
	case []byte:
		return "a blob"
	}
	return fmt.Sprintf("%T", v)
}

// Write upserts the absolute totals in batch in one transaction.
func (s *SQLiteSink) Write(ctx context.Context, batch []Totals) error {
	if len(batch) == 0 {
		return nil
	}
	for _, t := range batch {
		if err := checkTotals(t); err != nil {
			return s.fileErr("writing stats to", err)
		}
	}
	if err := s.sameFile(); err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.fileErr("writing stats to", fmt.Errorf("beginning transaction: %w", err))
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	st := tx.StmtContext(ctx, s.upsert)
	now := time.Now().UnixMilli()
	for _, t := range batch {
		if _, err := st.ExecContext(ctx, t.WorkerID, int64(t.Success), int64(t.Failed), int64(t.LatencySum), now, now); err != nil {
			return s.fileErr("writing stats to", fmt.Errorf("worker %s: %w", t.WorkerID, err))
		}
	}
	if err := tx.Commit(); err != nil {
		return s.fileErr("writing stats to", fmt.Errorf("committing: %w", err))
	}
	return nil
}

// sameFile checks that path is still the file opened. A file removed (or
// replaced) while golb runs would take every write into the unlinked one,
// lost at exit without a word: the sink opens path afresh (creating it, or
// checking what is there now as at start) and answers ErrFileReplaced, so
// that the Aggregator writes every worker's totals into it, not only those
// changed since.
func (s *SQLiteSink) sameFile() error {
	if s.db != nil {
		if fi, err := os.Stat(s.path); err == nil && os.SameFile(fi, s.file) {
			return nil
		}
		if s.upsert != nil {
			_ = s.upsert.Close()
		}
		_ = s.db.Close()
		s.db, s.upsert = nil, nil
	}
	fresh, err := openSQLiteErr(s.path, s.busy)
	if err != nil {
		return fmt.Errorf("writing stats to %s: %w: opening it again: %w", s.path, ErrFileReplaced, err)
	}
	s.db, s.upsert, s.file = fresh.db, fresh.upsert, fresh.file
	return fmt.Errorf("writing stats to %s: %w: opened it again, to write every worker's totals into", s.path, ErrFileReplaced)
}

func checkTotals(t Totals) error {
	switch {
	case t.WorkerID == "":
		return fmt.Errorf("%w: empty worker id", ErrInvalidTotals)
	case len(t.WorkerID) > maxWorkerID:
		// Load refuses it: a file golb wrote must load again.
		return fmt.Errorf("%w: worker id of %d bytes (at most %d)", ErrInvalidTotals, len(t.WorkerID), maxWorkerID)
	case t.Success > math.MaxInt64, t.Failed > math.MaxInt64:
		return fmt.Errorf("%w: worker %s: count beyond 2^63-1", ErrInvalidTotals, t.WorkerID)
	case t.LatencySum < 0:
		return fmt.Errorf("%w: worker %s: negative latency sum", ErrInvalidTotals, t.WorkerID)
	}
	return nil
}

// Close closes the database; SQLite checkpoints the WAL into the main file.
func (s *SQLiteSink) Close() error {
	var errs []error
	if s.upsert != nil {
		errs = append(errs, s.upsert.Close())
	}
	if s.db != nil {
		errs = append(errs, s.db.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing stats database %s: %w", s.path, err)
	}
	return nil
}

var _ Sink = (*SQLiteSink)(nil)

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

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" database/sql driver
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
}

// OpenSQLite opens the stats database at path, creating the file, its directory and
// the schema when missing and migrating older schema versions. The connection uses
// journal_mode=WAL, synchronous=NORMAL (durable across process crashes; the last
// transactions may roll back on power loss), busy_timeout=DefaultBusyTimeout, and
// BEGIN IMMEDIATE for every transaction.
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
	s := &SQLiteSink{db: db, path: path}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *SQLiteSink) init(ctx context.Context) error {
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("%w: journal_mode is %q", ErrNoWAL, mode)
	}
	if err := migrate(ctx, s.db); err != nil {
		return err
	}
	st, err := s.db.PrepareContext(ctx, upsertSQL)
	if err != nil {
		return fmt.Errorf("preparing upsert: %w", err)
	}
	s.upsert = st
	return nil
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

// Load returns every stored worker in first-seen order.
func (s *SQLiteSink) Load(ctx context.Context) ([]Totals, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT worker_id, success, failed, latency_ns FROM worker_totals ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("loading stats: %w", err)
	}
	defer rows.Close()
	var out []Totals
	for rows.Next() {
		var (
			id           string
			ok, bad, lat int64
		)
		if err := rows.Scan(&id, &ok, &bad, &lat); err != nil {
			return nil, fmt.Errorf("loading stats: %w", err)
		}
		out = append(out, Totals{WorkerID: id, Success: uint64(ok), Failed: uint64(bad), LatencySum: time.Duration(lat)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading stats: %w", err)
	}
	return out, nil
}

// Write upserts the absolute totals in batch in one transaction.
func (s *SQLiteSink) Write(ctx context.Context, batch []Totals) error {
	if len(batch) == 0 {
		return nil
	}
	for _, t := range batch {
		if err := checkTotals(t); err != nil {
			return fmt.Errorf("writing stats: %w", err)
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("writing stats: beginning transaction: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	st := tx.StmtContext(ctx, s.upsert)
	now := time.Now().UnixMilli()
	for _, t := range batch {
		if _, err := st.ExecContext(ctx, t.WorkerID, int64(t.Success), int64(t.Failed), int64(t.LatencySum), now, now); err != nil {
			return fmt.Errorf("writing stats of worker %s: %w", t.WorkerID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("writing stats: committing: %w", err)
	}
	return nil
}

func checkTotals(t Totals) error {
	switch {
	case t.WorkerID == "":
		return fmt.Errorf("%w: empty worker id", ErrInvalidTotals)
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
	errs = append(errs, s.db.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing stats database %s: %w", s.path, err)
	}
	return nil
}

var _ Sink = (*SQLiteSink)(nil)

package stats

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Schema versions, kept in PRAGMA user_version:
//
//	0  No golb schema: a new, empty file, or a file written by the seed (GoLoadBalancer),
//	   whose gorm model left the table
//	     worker_stats(worker_id TEXT PRIMARY KEY, timestamp, successful_requests,
//	                  failed_requests, total_requests, average_response_time REAL)
//	   with average_response_time in milliseconds.
//	1  Table worker_totals: one row of absolute totals per worker; seq (the rowid) is
//	   the first-seen order. Migration 0→1 creates it and, when the seed's table is
//	   present, copies its rows in rowid order: success and failed as stored (total
//	   is recomputed as their sum, since the seed's total_requests could drift through
//	   lost updates), and latency_ns = average_response_time × (success+failed). The
//	   seed stored the last latency rather than a mean, so that sum is an estimate —
//	   the only latency figure the old file has. The seed's table is left untouched.
//
// Every migration runs in one BEGIN IMMEDIATE transaction together with the
// user_version update, so a crash mid-migration leaves the file at its old version.
// A file with a version above SchemaVersion is refused (ErrSchemaTooNew).
const SchemaVersion = 1

// migrations[v] upgrades a database at version v to v+1.
var migrations = []func(ctx context.Context, tx *sql.Tx) error{
	0: migrate0to1,
}

func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("checking schema version: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("checking schema version: %w", err)
	}
	switch {
	case v == SchemaVersion:
		return nil
	case v > SchemaVersion || v < 0:
		return fmt.Errorf("%w: file has version %d, this golb knows up to %d", ErrSchemaTooNew, v, SchemaVersion)
	}
	for ; v < SchemaVersion; v++ {
		if err := migrations[v](ctx, tx); err != nil {
			return fmt.Errorf("migrating schema from version %d to %d: %w", v, v+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion)); err != nil {
		return fmt.Errorf("setting schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing schema migration: %w", err)
	}
	return nil
}

func migrate0to1(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `CREATE TABLE worker_totals (
	seq        INTEGER PRIMARY KEY,
	worker_id  TEXT    NOT NULL UNIQUE,
	success    INTEGER NOT NULL DEFAULT 0 CHECK (success >= 0),
	failed     INTEGER NOT NULL DEFAULT 0 CHECK (failed >= 0),
	latency_ns INTEGER NOT NULL DEFAULT 0 CHECK (latency_ns >= 0),
	created_at INTEGER NOT NULL, -- unix milliseconds
	updated_at INTEGER NOT NULL  -- unix milliseconds
)`); err != nil {
		return fmt.Errorf("creating table worker_totals: %w", err)
	}

	cols, err := tableColumns(ctx, tx, "worker_stats")
	if err != nil {
		return err
	}
	if len(cols) == 0 {
		return nil // a new file: nothing to import
	}
	for _, c := range []string{"worker_id", "successful_requests", "failed_requests"} {
		if !cols[c] {
			return fmt.Errorf("%w: table worker_stats has no column %s (move the file aside to start afresh)", ErrLegacySchema, c)
		}
	}
	avg := "0" // the seed's mean latency in ms, when it has the column
	if cols["average_response_time"] {
		avg = "MAX(COALESCE(average_response_time, 0), 0)"
	}
	now := time.Now().UnixMilli()
	q := fmt.Sprintf(`INSERT INTO worker_totals (worker_id, success, failed, latency_ns, created_at, updated_at)
SELECT id, ok, bad, CAST(ROUND(avg_ms * 1000000.0 * (ok + bad)) AS INTEGER), ?, ?
FROM (SELECT CAST(worker_id AS TEXT) AS id,
             MAX(CAST(COALESCE(successful_requests, 0) AS INTEGER), 0) AS ok,
             MAX(CAST(COALESCE(failed_requests, 0) AS INTEGER), 0) AS bad,
             %s AS avg_ms
      FROM worker_stats
      WHERE worker_id IS NOT NULL AND worker_id <> ''
      ORDER BY rowid)
WHERE true
ON CONFLICT (worker_id) DO NOTHING`, avg)
	if _, err := tx.ExecContext(ctx, q, now, now); err != nil {
		return fmt.Errorf("importing the seed's worker_stats: %w", err)
	}
	return nil
}

// tableColumns returns the column names of table, or an empty set if it does not exist.
func tableColumns(ctx context.Context, tx *sql.Tx, table string) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, "SELECT name FROM pragma_table_info(?)", table)
	if err != nil {
		return nil, fmt.Errorf("reading columns of %s: %w", table, err)
	}
	defer rows.Close()
	cols := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("reading columns of %s: %w", table, err)
		}
		cols[strings.ToLower(n)] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading columns of %s: %w", table, err)
	}
	return cols, nil
}

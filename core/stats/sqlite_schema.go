package stats

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	sqlite3 "modernc.org/sqlite/lib"
)

// totalsColumns are the columns of worker_totals that Load and the upsert use.
var totalsColumns = []string{"seq", "worker_id", "success", "failed", "latency_ns", "created_at", "updated_at"}

// checkSQLiteSchema refuses a worker_totals table that golb cannot use: one without a
// column Load or the upsert names, or without the unique index on worker_id alone
// that the upsert's ON CONFLICT (worker_id) needs. Such a file was written by
// another program (or by hand); it is refused at open with the way out, never
// with the raw SQL error of the first flush.
func checkSQLiteSchema(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("checking the schema: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read only
	cols, err := tableColumns(ctx, tx, "worker_totals")
	if err != nil {
		return err
	}
	if len(cols) == 0 {
		return foreignSchema("there is no table worker_totals")
	}
	for _, c := range totalsColumns {
		if !cols[c] {
			return foreignSchema("table worker_totals has no column " + c)
		}
	}
	ok, err := uniqueOnWorkerID(ctx, tx)
	if err != nil {
		return err
	}
	if !ok {
		return foreignSchema("table worker_totals has no unique index on worker_id")
	}
	return nil
}

// probeID is the worker id probeWrite writes, in a transaction it rolls back.
const probeID = "golb-open-probe"

// probeWrite writes a row as a flush will, reads it back and rolls it back. A
// file golb can read but not write is refused at open, not found out at the
// first flush with the run's counts at stake: a read-only file or mount, a
// column golb does not fill that is NOT NULL or CHECKed, a trigger that
// fails, or a column that keeps golb's integers as text (written, then
// refused by the next start's Load).
func probeWrite(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("trying a write: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // rolled back on purpose
	now := time.Now().UnixMilli()
	if _, err := tx.ExecContext(ctx, upsertSQL, probeID, 1, 1, 1, now, now); err != nil {
		if sqliteCode(err) == sqlite3.SQLITE_READONLY {
			return fmt.Errorf("the file cannot be written (%w): check its mode, owner and mount", err)
		}
		if c := sqliteCode(err); c == sqlite3.SQLITE_CONSTRAINT || c == sqlite3.SQLITE_ERROR {
			return foreignSchema("a row as golb writes it is refused: " + err.Error())
		}
		return fmt.Errorf("trying a write: %w", err)
	}
	var ts, tf, tl string
	err = tx.QueryRowContext(ctx, `SELECT typeof(success), typeof(failed), typeof(latency_ns) FROM worker_totals WHERE worker_id = ?`, probeID).Scan(&ts, &tf, &tl)
	if err != nil {
		return foreignSchema("a row golb writes cannot be read back: " + err.Error())
	}
	if ts != "integer" || tf != "integer" || tl != "integer" {
		return foreignSchema(fmt.Sprintf("its counts are stored as %s, %s and %s, not integers", ts, tf, tl))
	}
	return nil
}

// uniqueOnWorkerID reports whether worker_totals has a unique index (or a
// UNIQUE or PRIMARY KEY constraint) on worker_id alone, without a WHERE clause.
func uniqueOnWorkerID(ctx context.Context, tx *sql.Tx) (bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM pragma_index_list('worker_totals') WHERE "unique" AND NOT partial`)
	if err != nil {
		return false, fmt.Errorf("reading the indexes of worker_totals: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return false, fmt.Errorf("reading the indexes of worker_totals: %w", err)
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("reading the indexes of worker_totals: %w", err)
	}
	for _, n := range names {
		var (
			count int
			col   sql.NullString
		)
		err := tx.QueryRowContext(ctx, `SELECT count(*), max(name) FROM pragma_index_info(?)`, n).Scan(&count, &col)
		if err != nil {
			return false, fmt.Errorf("reading index %s of worker_totals: %w", n, err)
		}
		if count == 1 && strings.EqualFold(col.String, "worker_id") {
			return true, nil
		}
	}
	return false, nil
}

func foreignSchema(what string) error {
	return fmt.Errorf("%w (%s): %s", ErrForeignSchema, what, recoverHint)
}

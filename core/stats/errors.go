package stats

import "errors"

var (
	// ErrUnknownSink is returned by Open for a sink name nobody registered.
	ErrUnknownSink = errors.New("unknown stats sink")

	// ErrSchemaTooNew is returned when the database was written by a newer golb whose
	// schema version this build does not know.
	ErrSchemaTooNew = errors.New("stats database schema is newer than this golb")

	// ErrLegacySchema is returned when a version-0 file holds a worker_stats table that
	// does not look like the seed's, so its rows cannot be imported safely.
	ErrLegacySchema = errors.New("unrecognised legacy worker_stats table")

	// ErrNoWAL is returned when SQLite refuses write-ahead logging for the file (for
	// example on a filesystem without shared-memory support).
	ErrNoWAL = errors.New("write-ahead logging unavailable")

	// ErrDamaged is returned when the database file is corrupt: by OpenSQLite when
	// PRAGMA quick_check finds a damaged page (the file is then left as it was), and
	// by Load and Write when SQLite finds one later.
	ErrDamaged = errors.New("the file is damaged")

	// ErrNotDatabase is returned by OpenSQLite for a file that is not an SQLite
	// database at all (stats.path may name the wrong file).
	ErrNotDatabase = errors.New("the file is not an SQLite database")

	// ErrForeignSchema is returned by OpenSQLite for a file at golb's schema
	// version whose worker_totals table golb did not create: a column or the
	// unique index on worker_id is missing.
	ErrForeignSchema = errors.New("the file's worker_totals table is not golb's")

	// ErrInvalidTotals is returned by Write for a row that cannot be stored: an empty
	// worker id, or a count beyond SQLite's signed 64-bit integers.
	ErrInvalidTotals = errors.New("invalid worker totals")
)

var (
	// ErrUnreachable marks an error of a database sink whose server could not be
	// reached or went away (refused, timed out, shut down): the flush is retried.
	ErrUnreachable = errors.New("database unreachable")

	// ErrBadDSN is returned for a connection string that does not parse.
	ErrBadDSN = errors.New("invalid stats dsn")

	// ErrInstanceTaken is returned by a shared sink's flush once another process
	// has claimed this agent's instance name: two agents must not share one.
	ErrInstanceTaken = errors.New("another golb agent has claimed this stats instance")

	// ErrSharedSink is returned by Write of a sink that takes deltas (Apply).
	// ErrFileReplaced is returned by a SQLiteSink's Write when its file was
	// removed or replaced since it was opened: the sink opened the path
	// afresh, and every worker's totals must be written again.
	ErrFileReplaced = errors.New("the stats file was removed or replaced while golb ran")
	ErrSharedSink   = errors.New("a shared sink adds deltas through Apply, not absolute totals")
)

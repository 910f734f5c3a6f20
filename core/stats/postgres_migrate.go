//go:build !nopostgres

package stats

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgreSQL schema versions, kept in the one row of golb_stats_schema (versioned
// apart from SQLite's, whose versions are in migrate.go):
//
//	0  No golb tables.
//	1  golb_worker_totals: one row of shared totals per worker, whichever agent runs
//	   it (instance: the agent that last added to it); seq is the first-seen order.
//	   golb_stats_instances: one row per agent name with the last flush sequence
//	   it applied (last_seq) and the process that holds the name now (run_id).
//
// Every migration runs in one transaction with the version update, under a
// transaction-scoped advisory lock, so agents starting at once migrate one at a
// time and a crash mid-migration leaves the old version. A database at a version
// above PostgresSchemaVersion is refused (ErrSchemaTooNew).
const PostgresSchemaVersion = 1

// pgMigrations[v] upgrades a database at version v to v+1.
var pgMigrations = []string{
	0: `CREATE TABLE golb_worker_totals (
	seq        bigserial   NOT NULL UNIQUE,
	worker_id  text        PRIMARY KEY,
	instance   text        NOT NULL,
	success    bigint      NOT NULL DEFAULT 0 CHECK (success >= 0),
	failed     bigint      NOT NULL DEFAULT 0 CHECK (failed >= 0),
	latency_ns bigint      NOT NULL DEFAULT 0 CHECK (latency_ns >= 0),
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE golb_stats_instances (
	instance   text        PRIMARY KEY,
	run_id     text        NOT NULL,
	last_seq   bigint      NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
	started_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
)`,
}

// pgMigrateLock is the advisory lock key of migrations ("golbstat" in ASCII).
const pgMigrateLock int64 = 0x676f6c6273746174

func migratePostgres(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("checking schema version: %w", err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, pgMigrateLock); err != nil {
		return fmt.Errorf("locking the schema: %w", err)
	}
	// Created only when missing: CREATE TABLE IF NOT EXISTS would need the
	// CREATE privilege even when the table is there, and a role that only
	// reads and writes golb's tables is enough once they exist.
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('golb_stats_schema') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("checking schema version: %w", err)
	}
	if !exists {
		if _, err := tx.Exec(ctx, `CREATE TABLE golb_stats_schema (version integer NOT NULL)`); err != nil {
			return fmt.Errorf("creating golb_stats_schema: %w", err)
		}
	}
	v, err := schemaVersion(ctx, tx)
	if err != nil {
		return err
	}
	if v == PostgresSchemaVersion {
		return nil
	}
	for ; v < PostgresSchemaVersion; v++ {
		if _, err := tx.Exec(ctx, pgMigrations[v]); err != nil {
			return fmt.Errorf("migrating schema from version %d to %d: %w", v, v+1, err)
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM golb_stats_schema`); err != nil {
		return fmt.Errorf("setting schema version: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO golb_stats_schema (version) VALUES ($1)`, PostgresSchemaVersion); err != nil {
		return fmt.Errorf("setting schema version: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("committing schema migration: %w", err)
	}
	return nil
}

// checkSchema reports whether this golb can use the database's schema as it is
// or by migrating it, without changing anything.
func checkSchema(ctx context.Context, pool *pgxpool.Pool) error {
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('golb_stats_schema') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("checking schema version: %w", err)
	}
	if !exists {
		return nil // a new database: golb run creates the tables
	}
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("checking schema version: %w", err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // read only
	_, err = schemaVersion(ctx, tx)
	return err
}

// schemaVersion reads golb_stats_schema: 0 when it has no row.
func schemaVersion(ctx context.Context, tx pgx.Tx) (int, error) {
	var v int
	err := tx.QueryRow(ctx, `SELECT version FROM golb_stats_schema ORDER BY version DESC LIMIT 1`).Scan(&v)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("checking schema version: %w", err)
	case v > PostgresSchemaVersion || v < 0:
		return 0, fmt.Errorf("%w: database has version %d, this golb knows up to %d", ErrSchemaTooNew, v, PostgresSchemaVersion)
	}
	return v, nil
}

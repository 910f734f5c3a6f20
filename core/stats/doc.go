// Package stats keeps golb's per-worker request counts: the balancers count in memory,
// an Aggregator adds those live counts to the totals stored by a Sink and flushes them
// in batches, and Handler serves them as the seed's /worker/stats JSON.
//
// Two sinks, one per file: SQLite (sqlite.go, the default) stores one agent's absolute,
// cumulative totals, so a write is an idempotent upsert; PostgreSQL (postgres.go) is a
// SharedSink that several agents write at once, each adding its own workers' deltas in
// transactions that record its last applied flush sequence, so a retried flush is never
// counted twice (shared.go is the Aggregator's side of it). Each keeps its own
// versioned migrations (migrate.go, postgres_migrate.go).
package stats

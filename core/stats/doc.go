// Package stats keeps golb's per-worker request counts: the balancers count in memory,
// an Aggregator adds those live counts to the totals stored by a Sink (SQLite by default)
// and flushes them in batches, and Handler serves them as the seed's /worker/stats JSON.
// Stored totals are absolute and cumulative across golb restarts, so a write is an
// idempotent upsert and a lost or repeated flush never loses or double-counts a request.
package stats

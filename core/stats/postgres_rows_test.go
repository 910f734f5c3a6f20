//go:build !nopostgres

package stats

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/golb/golb/internal/testutil"
	"github.com/golb/golb/internal/testutil/pgtest"
)

// TestPostgresOverMaxSharedWorkersStillFlushesAndStarts pins the bug where a
// shared database holding more than MaxSharedWorkers worker rows (every worker
// that ever served has one: autoscaling churn gets there in weeks) failed every
// flush of every agent, and every agent's start: golb's own rows must never stop
// its writes. The agent's own workers stay exact, even one older than the rows
// read back; the others are read up to the bound, with a WARN.
func TestPostgresOverMaxSharedWorkersStillFlushesAndStarts(t *testing.T) {
	srv := pgtest.Shared(t)
	dsn := srv.NewDatabase(t)
	sink := openPG(t, dsn, "me")
	// An own worker from an earlier run, first seen before all the others.
	pgExec(t, dsn, `INSERT INTO golb_worker_totals (worker_id, instance, success) VALUES ('me-old', 'me', 7)`)
	pgExec(t, dsn, `INSERT INTO golb_worker_totals (worker_id, instance, success)
SELECT 'gone-' || g, 'churn:/x', 1 FROM generate_series(1, $1::int) g`, MaxSharedWorkers+10)

	var logs testutil.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	a, err := NewAggregator(sink, time.Hour, logger)
	if err != nil {
		t.Fatalf("NewAggregator over %d rows: %v", MaxSharedWorkers+11, err)
	}
	if !strings.Contains(logs.String(), "holds more workers than golb reads back") {
		t.Errorf("no WARN about the rows left out; log:\n%s", logs.String())
	}
	b := newFakeBalancer("me-old", "me-new")
	a.AddSource("web", b.source)
	for i := range 5 {
		b.hit(i%2, true, time.Millisecond)
	}
	if err := a.Flush(context.Background()); err != nil {
		t.Fatalf("flush over %d rows: %v", MaxSharedWorkers+11, err)
	}
	b.hit(1, true, time.Millisecond)
	if err := a.Flush(context.Background()); err != nil {
		t.Fatalf("second flush: %v", err)
	}
	snap := a.Snapshot()
	got := map[string]uint64{}
	for _, x := range snap {
		got[x.WorkerID] = x.Total()
	}
	if got["me-old"] != 10 || got["me-new"] != 3 {
		t.Errorf("snapshot: me-old %d, me-new %d; want 10 and 3", got["me-old"], got["me-new"])
	}
	if len(snap) > MaxSharedWorkers+2 {
		t.Errorf("snapshot holds %d workers, want at most %d", len(snap), MaxSharedWorkers+2)
	}
	if !a.Has("me-old") || !a.Has("gone-99999") {
		t.Error("Has does not know a stored worker")
	}
	var stored int64
	if err := pgConn(t, dsn).QueryRow(context.Background(), `SELECT success FROM golb_worker_totals WHERE worker_id = 'me-old'`).Scan(&stored); err != nil || stored != 10 {
		t.Fatalf("me-old's row: %d %v, want 10", stored, err)
	}

	// A restart of the agent starts, and adds to its rows.
	sink.Close()
	again, err := NewAggregator(openPG(t, dsn, "me"), time.Hour, logger)
	if err != nil {
		t.Fatalf("restart over %d rows: %v", MaxSharedWorkers+12, err)
	}
	b2 := newFakeBalancer("me-old")
	again.AddSource("web", b2.source)
	b2.hit(0, false, time.Millisecond)
	if err := again.Flush(context.Background()); err != nil {
		t.Fatalf("flush after the restart: %v", err)
	}
	for _, x := range again.Snapshot() {
		if x.WorkerID == "me-old" && (x.Total() != 11 || x.Failed != 1) {
			t.Errorf("after the restart me-old is %+v, want 11 requests, 1 failed", x)
		}
	}
}

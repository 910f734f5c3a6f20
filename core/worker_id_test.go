package core

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golb/golb/core/state"
	"github.com/golb/golb/core/stats"
)

// TestNewWorkerIDNeverReusesAStoredID pins the bug where a new worker's 32
// random bits were never checked against the ids in use: a draw equal to an
// id of the state store, or of a worker whose totals the stats file holds,
// gave the new worker the old one's totals. Such a draw is drawn again, a
// bounded number of times.
func TestNewWorkerIDNeverReusesAStoredID(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "stats.db")
	s, err := stats.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Write(ctx, []stats.Totals{{WorkerID: "g-00000001", Success: 41, LatencySum: time.Second}}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	ta := crashAgent(t)
	sink, err := stats.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	if ta.agg, err = stats.NewAggregator(sink, time.Hour, nil); err != nil {
		t.Fatal(err)
	}
	if err := ta.Store().UpsertWorker(&state.Worker{ID: "g-00000002", Group: "g", Driver: "process", Status: state.StatusRunning}); err != nil {
		t.Fatal(err)
	}

	// The first draw is the stored worker's, the second the running one's.
	r := bytes.NewReader([]byte{0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3})
	id, err := newWorkerID(r, "g", ta.workerIDTaken)
	if err != nil || id != "g-00000003" {
		t.Fatalf("newWorkerID = %q, %v; want g-00000003 (g-00000001 has stored totals, g-00000002 runs)", id, err)
	}

	// Every draw taken: an error, after a bounded number of draws.
	same := bytes.Repeat([]byte{0, 0, 0, 1}, workerIDDraws+1)
	r = bytes.NewReader(same)
	if id, err := newWorkerID(r, "g", ta.workerIDTaken); err == nil || !strings.Contains(err.Error(), "taken") {
		t.Fatalf("newWorkerID with every draw taken = %q, %v; want an error", id, err)
	}
	if left := r.Len(); left != 4 {
		t.Fatalf("%d bytes left of %d: want exactly %d draws", left, len(same), workerIDDraws)
	}
}

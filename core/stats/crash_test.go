package stats

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golb/golb/internal/testutil/pgtest"
)

// crashHelperEnv makes the test binary run crashHelper instead of the tests (the
// re-exec pattern of go-plugin's helperProcess): the value is the database path.
const crashHelperEnv = "GOLB_STATS_CRASH_HELPER"

const crashWorkers = 5

func TestMain(m *testing.M) {
	if path := os.Getenv(crashHelperEnv); path != "" {
		if err := crashHelper(path); err != nil {
			fmt.Fprintln(os.Stderr, "crash helper:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	code := m.Run()
	if err := pgtest.StopShared(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the private postgres:", err)
	}
	os.Exit(code)
}

// crashRound is what every worker has counted after round r: all workers advance
// together, so a torn batch (some rows from round r, some from r+1) is detectable.
func crashRound(k int, r uint64) Count {
	return Count{
		WorkerID:   "worker-" + strconv.Itoa(k),
		Success:    r * uint64(k+1),
		Failed:     r,
		LatencySum: time.Duration(r*uint64(k+1)) * time.Millisecond,
	}
}

// crashHelper flushes round after round and prints each committed round, until killed
// (or, so that it always ends, after a minute).
func crashHelper(path string) error {
	s, err := OpenSQLite(path)
	if err != nil {
		return err
	}
	a, err := NewAggregator(s, time.Hour, nil)
	if err != nil {
		return err
	}
	var round atomic.Uint64
	a.AddSource("crash", func() []Count {
		r := round.Load()
		out := make([]Count, crashWorkers)
		for k := range out {
			out[k] = crashRound(k, r)
		}
		return out
	})
	deadline := time.Now().Add(time.Minute)
	for r := uint64(1); time.Now().Before(deadline); r++ {
		round.Store(r)
		if err := a.Flush(context.Background()); err != nil {
			return err
		}
		fmt.Fprintf(os.Stdout, "%d\n", r) // unbuffered: the parent sees it at once
	}
	return nil
}

func TestCrashMidFlushLeavesConsistentDatabase(t *testing.T) {
	path := dbPath(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+path)
	cmd.Stderr = t.Output()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // in case of an early t.Fatal

	const killAfter = 300
	var last uint64
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		r, err := strconv.ParseUint(sc.Text(), 10, 64)
		if err != nil {
			t.Fatalf("helper printed %q", sc.Text())
		}
		last = r
		if r >= killAfter {
			break
		}
	}
	if last < killAfter {
		cmd.Wait()
		t.Fatalf("helper stopped after round %d (%v)", last, sc.Err())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper did not die of SIGKILL: %v", err)
	}
	if fi, err := os.Stat(path + "-wal"); err == nil {
		t.Logf("killed after round %d; WAL left behind: %d bytes", last, fi.Size())
	}

	db := rawDB(t, path)
	if got := pragma(t, db, "integrity_check"); got != "ok" {
		t.Fatalf("integrity_check = %q after SIGKILL", got)
	}
	db.Close()

	s := openTestSink(t, path)
	defer s.Close()
	got, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != crashWorkers {
		t.Fatalf("Load returned %d workers, want %d: %+v", len(got), crashWorkers, got)
	}
	// Every row is from the same round, and no committed round was lost: the helper
	// printed round `last` only after its commit, and may have committed one or a few
	// more before the signal landed.
	r := got[0].Failed
	for k, tt := range got {
		want := crashRound(k, r)
		if tt != (Totals{WorkerID: want.WorkerID, Success: want.Success, Failed: want.Failed, LatencySum: want.LatencySum}) {
			t.Fatalf("worker %d = %+v, want round %d's %+v: a torn batch", k, tt, r, want)
		}
	}
	if r < last {
		t.Fatalf("Load holds round %d, but round %d had been committed", r, last)
	}
	t.Logf("database holds round %d (last reported %d)", r, last)
}

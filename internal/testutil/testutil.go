// Package testutil holds helpers shared by golb's tests that run real
// processes on real ports: a log buffer safe for many writers, a scan of
// /proc for worker processes, and port ranges that concurrent test packages
// do not fight over.
package testutil

import (
	"bytes"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/golb/golb/drivers/proc"
)

// SyncBuffer collects output from many goroutines.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Alive reports whether pid runs and is not a zombie.
func Alive(pid int) bool {
	_, err := proc.StartTime(pid)
	return err == nil
}

// WorkerProcs scans /proc for live processes whose environment has
// GOLB_WORKER_ID, keeping those keep accepts, as pid -> worker id: the ground
// truth for orphans and duplicates.
func WorkerProcs(keep func(pid int, workerID string) bool) map[int]string {
	out := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !Alive(pid) {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if id, ok := strings.CutPrefix(string(kv), "GOLB_WORKER_ID="); ok && keep(pid, id) {
				out[pid] = id
			}
		}
	}
	return out
}

var cursor atomic.Int64

// PortRange finds n consecutive ports in [lo, hi) that can be bound on
// 127.0.0.1 now, each call further on so that one test's ranges do not
// overlap. Give each test package its own [lo, hi), below the kernel's
// ephemeral range (32768+), where concurrent load tests' outgoing
// connections take local ports.
func PortRange(t testing.TB, lo, hi, n int) int {
	t.Helper()
	span := hi - lo - n
	for range 2000 {
		base := lo + int((int64(os.Getpid())*7919+cursor.Add(int64(n+3)))%int64(span))
		if free(base, n) {
			return base
		}
	}
	t.Fatalf("no %d free consecutive ports in %d-%d on 127.0.0.1", n, lo, hi)
	return 0
}

func free(base, n int) bool {
	for p := base; p < base+n; p++ {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// Required reports whether $GOLB_REQUIRE (a comma list, as CI sets it) names
// engine: a test that cannot use engine then fails instead of skipping.
func Required(engine string) bool {
	for _, name := range strings.Split(os.Getenv("GOLB_REQUIRE"), ",") {
		if strings.TrimSpace(name) == engine {
			return true
		}
	}
	return false
}

// SkipOrFail skips t because engine cannot be used, for the reason why, or
// fails it when $GOLB_REQUIRE names engine.
func SkipOrFail(t testing.TB, engine string, why error) {
	t.Helper()
	if Required(engine) {
		t.Fatalf("GOLB_REQUIRE names %s, but it cannot be used: %v", engine, why)
	}
	t.Skipf("%s cannot be used (set GOLB_REQUIRE=%s to fail instead): %v", engine, engine, why)
}

package proc_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/proc"
)

type record struct {
	Version int `json:"version"`
	proc.Identity
	Labels    map[string]string `json:"labels"`
	StartedAt time.Time         `json:"started_at"`
	Payload   string            `json:"payload,omitempty"`
}

func TestStoreRoundTrip(t *testing.T) {
	s := proc.Store{Dir: filepath.Join(t.TempDir(), "workers")}
	if ids, err := s.IDs(); err != nil || ids != nil {
		t.Fatalf("IDs of a missing directory = %v, %v; want none", ids, err)
	}
	in := record{Version: 1, Identity: proc.Identity{PID: 42, StartTime: 12345},
		Labels: map[string]string{"golb.group": "web"}, StartedAt: time.Now().UTC().Round(0)}
	if err := s.Write("w1", in); err != nil {
		t.Fatalf("Write: %v", err)
	}
	var out record
	if err := s.Read("w1", &out); err != nil {
		t.Fatalf("Read: %v", err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("Read = %+v, want %+v", out, in)
	}
	// The embedded Identity keeps the state files' field names.
	raw, _ := os.ReadFile(s.Path("w1"))
	for _, field := range []string{`"pid": 42`, `"start_time": 12345`} {
		if !bytes.Contains(raw, []byte(field)) {
			t.Errorf("state file lacks %s:\n%s", field, raw)
		}
	}
	if fi, err := os.Stat(s.Path("w1")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("state file mode: %v, %v; want 0644", fi.Mode(), err)
	}

	in.Identity.PID = 43
	if err := s.Write("w1", in); err != nil {
		t.Fatalf("overwriting: %v", err)
	}
	if err := s.Read("w1", &out); err != nil || out.PID != 43 {
		t.Errorf("after overwrite: pid %d, %v; want 43", out.PID, err)
	}
	entries, _ := os.ReadDir(s.Dir)
	if len(entries) != 1 || entries[0].Name() != "w1.json" {
		t.Errorf("directory holds %v, want only w1.json (no temporary files)", names(entries))
	}
}

func names(entries []os.DirEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestStoreIDs(t *testing.T) {
	s := proc.Store{Dir: t.TempDir()}
	for _, id := range []string{"b", "a", "c.d"} {
		if err := s.Write(id, record{}); err != nil {
			t.Fatal(err)
		}
	}
	// What is not a record: another file, a directory, a temporary file left
	// by a crash during Write, a file named only ".json".
	for _, f := range []string{"notes.txt", "x.123.tmp", ".json", "c.d.json.bak"} {
		if err := os.WriteFile(filepath.Join(s.Dir, f), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(s.Dir, "sub.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	ids, err := s.IDs()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b", "c.d"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("IDs = %v, want %v", ids, want)
	}
}

func TestStoreReadMissing(t *testing.T) {
	s := proc.Store{Dir: t.TempDir()}
	var r record
	if err := s.Read("nobody", &r); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read of a missing record: %v, want fs.ErrNotExist", err)
	}
}

// TestStoreTornFile pins that a cut-off or garbled record is reported as a
// stale handle (not a panic, not a zero record), is still listed so that a
// driver can say which file is bad, and is repaired by the next Write.
func TestStoreTornFile(t *testing.T) {
	s := proc.Store{Dir: t.TempDir()}
	if err := s.Write("w1", record{Version: 1, Identity: proc.Identity{PID: 7, StartTime: 9}}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(s.Path("w1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{raw[:len(raw)/2], {}, []byte("\x00\x00\x00"), []byte(`{"pid": "seven"}`)} {
		if err := os.WriteFile(s.Path("w1"), bad, 0o644); err != nil {
			t.Fatal(err)
		}
		var r record
		if err := s.Read("w1", &r); !errors.Is(err, drivers.ErrStaleHandle) {
			t.Errorf("Read of %q: %v, want ErrStaleHandle", bad, err)
		}
	}
	if ids, _ := s.IDs(); !reflect.DeepEqual(ids, []string{"w1"}) {
		t.Errorf("IDs = %v, want the torn record listed", ids)
	}
	if err := s.Write("w1", record{Identity: proc.Identity{PID: 8}}); err != nil {
		t.Fatal(err)
	}
	var r record
	if err := s.Read("w1", &r); err != nil || r.PID != 8 {
		t.Errorf("after rewrite: %+v, %v", r, err)
	}
}

// TestStoreWriteIsAtomic reads a record while it is rewritten, with two
// contents large enough that a write in place would be seen half done.
func TestStoreWriteIsAtomic(t *testing.T) {
	s := proc.Store{Dir: t.TempDir()}
	payloads := []string{strings.Repeat("a", 32<<10), strings.Repeat("b", 16<<10)}
	if err := s.Write("w", record{Payload: payloads[0]}); err != nil {
		t.Fatal(err)
	}
	const rounds = 200
	var wg sync.WaitGroup
	wg.Add(1)
	stop := make(chan struct{})
	go func() {
		defer wg.Done()
		defer close(stop)
		for i := range rounds {
			if err := s.Write("w", record{Payload: payloads[i%2]}); err != nil {
				t.Errorf("Write: %v", err)
				return
			}
		}
	}()
	reads := 0
	for done := false; !done; {
		select {
		case <-stop:
			done = true
		default:
		}
		var r record
		if err := s.Read("w", &r); err != nil {
			t.Fatalf("Read during rewrites (after %d reads): %v", reads, err)
		}
		if r.Payload != payloads[0] && r.Payload != payloads[1] {
			t.Fatalf("Read a mix of two records (%d bytes)", len(r.Payload))
		}
		reads++
	}
	wg.Wait()
	t.Logf("%d reads during %d writes", reads, rounds)
}

func TestStoreRemove(t *testing.T) {
	s := proc.Store{Dir: t.TempDir()}
	if err := s.Write("w1", record{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("w1"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(s.Path("w1")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("record still there: %v", err)
	}
	if err := s.Remove("w1"); err != nil {
		t.Errorf("Remove of a missing record: %v, want nil", err)
	}
	if err := (proc.Store{Dir: filepath.Join(s.Dir, "none")}).Remove("w1"); err != nil {
		t.Errorf("Remove in a missing directory: %v, want nil", err)
	}
}

// TestStoreRejectsBadIDs pins that an id cannot name a file outside Dir.
func TestStoreRejectsBadIDs(t *testing.T) {
	parent := t.TempDir()
	s := proc.Store{Dir: filepath.Join(parent, "workers")}
	victim := filepath.Join(parent, "victim.json")
	if err := os.WriteFile(victim, []byte(`{"pid": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "../victim", "a/b", "a\x00b"} {
		var r record
		for op, err := range map[string]error{
			"Write":  s.Write(id, record{}),
			"Read":   s.Read(id, &r),
			"Remove": s.Remove(id),
		} {
			if !errors.Is(err, drivers.ErrBadConfig) {
				t.Errorf("%s(%q): %v, want ErrBadConfig", op, id, err)
			}
		}
		if _, _, err := proc.OpenLogs(s.Dir, id); !errors.Is(err, drivers.ErrBadConfig) {
			t.Errorf("OpenLogs(%q): %v, want ErrBadConfig", id, err)
		}
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("a file outside the store was touched: %v", err)
	}
}

func TestStoreWriteUnencodable(t *testing.T) {
	s := proc.Store{Dir: t.TempDir()}
	if err := s.Write("w1", map[string]any{"c": make(chan int)}); err == nil {
		t.Fatal("Write of a channel succeeded")
	}
	if entries, _ := os.ReadDir(s.Dir); len(entries) != 0 {
		t.Errorf("a failed Write left %v", names(entries))
	}
}

func TestOpenLogs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	for _, line := range []string{"one\n", "two\n"} {
		stdout, stderr, err := proc.OpenLogs(dir, "w1")
		if err != nil {
			t.Fatalf("OpenLogs: %v", err)
		}
		if stdout.Name() != filepath.Join(dir, "w1.stdout.log") || stderr.Name() != filepath.Join(dir, "w1.stderr.log") {
			t.Errorf("log names %s, %s", stdout.Name(), stderr.Name())
		}
		if _, err := stdout.WriteString("out " + line); err != nil {
			t.Fatal(err)
		}
		if _, err := stderr.WriteString("err " + line); err != nil {
			t.Fatal(err)
		}
		stdout.Close()
		stderr.Close()
	}
	// Reopening appends: a restarted worker's output follows the old one.
	for name, want := range map[string]string{"w1.stdout.log": "out one\nout two\n", "w1.stderr.log": "err one\nerr two\n"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
}

// TestPruneLogsKeepsNewestGoneAndLive: a crash-looping group left two log
// files per attempt forever. PruneLogs keeps the newest gone workers' logs
// and every live one's, and touches no other file.
func TestPruneLogsKeepsNewestGoneAndLive(t *testing.T) {
	dir := t.TempDir()
	base := time.Now().Add(-time.Hour)
	ids := []string{"live", "a", "b", "c", "d"} // oldest first
	for i, id := range ids {
		out, errf, err := proc.OpenLogs(dir, id)
		if err != nil {
			t.Fatal(err)
		}
		out.Close()
		errf.Close()
		at := base.Add(time.Duration(i) * time.Minute)
		for _, f := range []string{id + ".stdout.log", id + ".stderr.log"} {
			if err := os.Chtimes(filepath.Join(dir, f), at, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := proc.PruneLogs(dir, 2, func(id string) bool { return id == "live" }); err != nil {
		t.Fatal(err)
	}
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{"c.stderr.log", "c.stdout.log", "d.stderr.log", "d.stdout.log", "live.stderr.log", "live.stdout.log", "notes.txt"}
	if !slices.Equal(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
	if err := proc.PruneLogs(filepath.Join(dir, "missing"), 2, func(string) bool { return false }); err != nil {
		t.Errorf("PruneLogs of a missing dir: %v", err)
	}
}

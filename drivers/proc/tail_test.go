package proc_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golb/golb/drivers/proc"
)

func writeLog(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "w.stderr.log")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTailFile(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		n             int
		want          string
	}{
		{"whole small file", "a\nb\n", 100, "a\nb\n"},
		{"empty file", "", 100, ""},
		{"partial first line dropped", "first line\nsecond\n", 10, "second\n"},
		{"cut exactly at a line start", "first\nsecond\n", 7, "second\n"},
		{"one long line kept", "abcdefghij", 4, "ghij"},
		{"only break at the end: the line is kept", "abcdefgh\n", 4, "fgh\n"},
	} {
		got, err := proc.TailFile(writeLog(t, tc.content), tc.n)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: TailFile(%q, %d) = %q, %v; want %q", tc.name, tc.content, tc.n, got, err, tc.want)
		}
	}
	if _, err := proc.TailFile(filepath.Join(t.TempDir(), "missing.log"), 10); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("TailFile of a missing file: %v, want fs.ErrNotExist", err)
	}
}

// TestTailFileOfLargeLog: the end of a 6 MiB log comes back bounded and
// starting at a line.
func TestTailFileOfLargeLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 99) + "\n"
	if _, err := f.WriteString(strings.Repeat(line, 1<<16)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("golb worker: the last words\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := proc.TailFile(path, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) > 4096 || !bytes.HasPrefix(got, []byte("xxx")) || !bytes.HasSuffix(got, []byte("golb worker: the last words\n")) || (len(got)-len("golb worker: the last words\n"))%len(line) != 0 {
		t.Fatalf("TailFile of a large log = %d bytes ending %q: want at most 4096 bytes of whole lines", len(got), got[max(len(got)-60, 0):])
	}
}

func TestExitOutput(t *testing.T) {
	path := writeLog(t, "time=1 level=INFO msg=starting\n\ngolb worker: GOLB_FAILURE_RATE \"bogus\": not a number\n")
	want := "time=1 level=INFO msg=starting\ngolb worker: GOLB_FAILURE_RATE \"bogus\": not a number"
	if got := proc.ExitOutput(path); got != want {
		t.Fatalf("ExitOutput = %q, want %q", got, want)
	}
	if got := proc.ExitOutput(filepath.Join(t.TempDir(), "missing.log")); got != "" {
		t.Fatalf("ExitOutput of a missing log = %q, want empty", got)
	}
}

package proc

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/golb/golb/drivers"
)

// outputTail is how much of a log ExitOutput reads: enough for
// drivers.MaxOutputLines lines within drivers.MaxOutputBytes, with room for
// blank lines and escapes that TrimOutput drops.
const outputTail = 4 << 10

// TailFile returns the end of the file at path: at most n bytes, read from
// the end without reading the rest, however large the file. When that is not
// the whole file, it starts after a line break: a partial first line is
// dropped, unless it is the only line there is.
func TailFile(path string, n int) ([]byte, error) {
	if n <= 0 {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the end of %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading the end of %s: %w", path, err)
	}
	size := fi.Size()
	start := max(size-int64(n), 0)
	from := start
	if start > 0 {
		from = start - 1 // one byte more: is start a line's beginning?
	}
	buf := make([]byte, size-from)
	got, err := f.ReadAt(buf, from)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("reading the end of %s: %w", path, err)
	}
	buf = buf[:got] // the file may have shrunk since Stat
	if start == 0 || len(buf) == 0 {
		return buf, nil
	}
	lineStart := buf[0] == '\n'
	buf = buf[1:]
	if !lineStart {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 && i < len(buf)-1 {
			buf = buf[i+1:]
		}
	}
	return buf, nil
}

// ExitOutput is the drivers.ExitResult.Output of a worker whose output went
// to the log file at path (its stderr, for golb's process-style drivers): the
// last lines of the file, as drivers.TrimOutput makes them. A log that
// cannot be read gives "": the exit is reported without it.
func ExitOutput(path string) string {
	tail, err := TailFile(path, outputTail)
	if err != nil {
		return ""
	}
	return drivers.TrimOutput(tail)
}

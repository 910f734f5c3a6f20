package drivers

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Bounds of what a Client keeps of its plugin's stderr: the last lines, for
// a post-mortem (a panicking plugin's stack trace), never the whole stream.
const (
	StderrTailLines = 40
	maxStderrLine   = 300 // bytes of one kept line; the rest is cut, marked "…"
)

// stderrTail is an io.Writer that keeps the last StderrTailLines lines
// written to it, each cut to maxStderrLine bytes, and the first line of the
// last panic (or fatal error) even when its trace has pushed it out. It is
// safe for concurrent use; its memory is bounded whatever is written.
type stderrTail struct {
	mu      sync.Mutex
	lines   []string // a ring of the last lines, oldest at next once full
	next    int
	total   int    // lines seen
	partial []byte // the line being written, up to maxStderrLine bytes
	cut     bool   // partial was cut
	panic   string // "panic: …" or "fatal error: …", the last one seen
}

func (t *stderrTail) Write(p []byte) (int, error) {
	n := len(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := maxStderrLine - len(t.partial); room < len(chunk) {
			t.partial = append(t.partial, chunk[:max(room, 0)]...)
			t.cut = true
		} else {
			t.partial = append(t.partial, chunk...)
		}
		if i < 0 {
			break
		}
		t.endLine()
		p = p[i+1:]
	}
	return n, nil
}

// endLine keeps the line in partial.
func (t *stderrTail) endLine() {
	line := strings.ToValidUTF8(strings.TrimRight(string(t.partial), "\r"), "\uFFFD")
	if t.cut {
		line += "…"
	}
	t.partial, t.cut = t.partial[:0], false
	if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") {
		t.panic = line
	}
	if len(t.lines) < StderrTailLines {
		t.lines = append(t.lines, line)
	} else {
		t.lines[t.next] = line
		t.next = (t.next + 1) % StderrTailLines
	}
	t.total++
}

// String is the kept lines, oldest first, joined by "\n", after a line
// saying how many earlier ones were dropped, if any. A panic's first line
// that was dropped comes first.
func (t *stderrTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	kept := append(append([]string(nil), t.lines[t.next:]...), t.lines[:t.next]...)
	if dropped := t.total - len(kept); dropped > 0 {
		if t.panic != "" && !slices.Contains(kept, t.panic) {
			b.WriteString(t.panic + "\n")
		}
		b.WriteString("… " + strconv.Itoa(dropped) + " earlier lines dropped\n")
	}
	b.WriteString(strings.Join(kept, "\n"))
	if len(t.partial) > 0 {
		if len(kept) > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(strings.ToValidUTF8(string(t.partial), "\uFFFD"))
	}
	return b.String()
}

// Panic is the first line of the last panic or fatal error written, or "".
func (t *stderrTail) Panic() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.panic
}

package drivers

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// Bounds of ExitResult.Output: a worker's last words, not its log.
const (
	MaxOutputLines = 5
	MaxOutputBytes = 500
)

// maxNoteLine bounds the output line ExitResult.String shows, so that the
// reason stays one short line in `golb status`.
const maxNoteLine = 200

// ansiCSI matches terminal control sequences (colours, cursor moves), which
// have no place in a status note.
var ansiCSI = regexp.MustCompile(`\x1b\[[0-9;?]*[ -/]*[@-~]`)

// TrimOutput turns the end of what a worker wrote into an ExitResult.Output:
// its last MaxOutputLines non-blank lines, joined by "\n", at most
// MaxOutputBytes (cut at the front, marked "…"), with terminal escapes and
// other control characters removed and invalid UTF-8 replaced. Its first line
// is taken to be whole: a caller that read from the middle of a stream drops
// the partial line first (proc.TailFile does).
func TrimOutput(tail []byte) string {
	s := strings.ToValidUTF8(string(tail), "\uFFFD")
	s = ansiCSI.ReplaceAllString(s, "")
	lines := strings.Split(s, "\n")
	kept := make([]string, 0, MaxOutputLines)
	for i := len(lines) - 1; i >= 0 && len(kept) < MaxOutputLines; i-- {
		line := strings.TrimRight(stripControl(lines[i]), " \t")
		if strings.TrimSpace(line) == "" {
			continue
		}
		kept = append(kept, line)
	}
	for i, j := 0, len(kept)-1; i < j; i, j = i+1, j-1 {
		kept[i], kept[j] = kept[j], kept[i]
	}
	out := strings.Join(kept, "\n")
	if len(out) > MaxOutputBytes {
		const mark = "…"
		cut := len(out) - (MaxOutputBytes - len(mark))
		for cut < len(out) && !utf8.RuneStart(out[cut]) {
			cut++
		}
		out = mark + out[cut:]
	}
	return out
}

// stripControl removes control characters but tabs from one line (a
// carriage return, a bell, a lone escape).
func stripControl(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return -1
		}
		return r
	}, s)
}

func isControl(r rune) bool { return (r < 0x20 && r != '\t') || r == 0x7f }

// noteLine is one line of an Output, at most maxNoteLine bytes (cut at the
// end, marked "…").
func noteLine(line string) string {
	line = strings.TrimSpace(line)
	if len(line) > maxNoteLine {
		cut := maxNoteLine - len("…")
		for cut > 0 && !utf8.RuneStart(line[cut]) {
			cut--
		}
		line = line[:cut] + "…"
	}
	return line
}

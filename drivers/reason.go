package drivers

import (
	"regexp"
	"strings"
)

// A worker's last line is a reason for its end only when it reads like one.
// A routine log line (INFO "worker listening", written long before a kill
// from outside) is not, however last it is.

// levelPatterns find the level of a log line, in the formats workers use:
// logfmt and slog's text (level=INFO), JSON (slog, zap, hclog's @level),
// a bare upper-case word among the first three fields (log.Logger with
// slog's default handler: "2026/12/01 22:30:46 INFO …"; "[WARN] …"), a
// leading "error: " and klog's one-letter prefix (E1201 22:30:46.123456).
var levelPatterns = []*regexp.Regexp{
	regexp.MustCompile(`(?i)\blevel=["']?([a-z]+)`),
	regexp.MustCompile(`(?i)"@?(?:level|severity|lvl)"\s*:\s*"([a-z]+)"`),
	regexp.MustCompile(`^(?:\S+\s+){0,2}\[?(TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|FATAL|CRIT|CRITICAL|PANIC)\]?(?:[:\s]|$)`),
	regexp.MustCompile(`(?i)^(trace|debug|info|notice|warn|warning|error|fatal|panic):\s`),
	regexp.MustCompile(`^([IWEF])\d{4} \d\d:\d\d:\d\d`),
}

// lineLevel is the lower-case level of a log line ("info", "error", "e"),
// or "" for a line that names none.
func lineLevel(line string) string {
	for _, p := range levelPatterns {
		if m := p.FindStringSubmatch(line); m != nil {
			return strings.ToLower(m[1])
		}
	}
	return ""
}

// routineLevels are the levels of lines that say all is well.
var routineLevels = map[string]bool{"trace": true, "debug": true, "info": true, "notice": true, "i": true}

// errorWords mark an untagged line that reads like an error.
var errorWords = regexp.MustCompile(`(?i)\b(error|err|errno|fatal|panic|failed|failure|fail|cannot|can't|unable|refused|denied|invalid|exception|abort|aborted|segmentation fault|out of memory|killed|no such|not found|bad|giving up)\b`)

// isPanic reports the first line of a Go panic or fatal runtime error.
func isPanic(line string) bool {
	return strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ")
}

// routine reports a log line whose level says all is well.
func routine(line string) bool { return routineLevels[lineLevel(line)] }

// errorLike reports a line that reads like an error: a log line of level
// WARN or above, or an untagged one with an error word.
func errorLike(line string) bool {
	if lvl := lineLevel(line); lvl != "" {
		return !routineLevels[lvl]
	}
	return errorWords.MatchString(line)
}

// reasonLine is the line of output that says why the worker ended, or "":
// a panic's first line if there is one; else the last line, unless it is a
// routine log line, or, when strict (the exit status is unknown, so the
// last line may be old news), unless it reads like no error; else the last
// line that reads like an error.
func reasonLine(output string, strict bool) string {
	var lines []string
	for _, l := range strings.Split(output, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if isPanic(lines[i]) {
			return noteLine(lines[i])
		}
	}
	if n := len(lines); n > 0 {
		if last := lines[n-1]; !routine(last) && (!strict || errorLike(last)) {
			return noteLine(last)
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if errorLike(lines[i]) {
			return noteLine(lines[i])
		}
	}
	return ""
}

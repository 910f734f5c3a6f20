package drivers

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// This file bounds what the agent keeps of a plugin's words. A plugin is
// someone else's code: an error message, an exit's reason or a detail it
// sends lands in logs, in `golb status` and in every dashboard snapshot,
// so each is cut to a size a person can read (a reply of megabytes was
// kept whole, and logged again on each retry), and a reply itself is
// refused over a size limit before it is decoded.

const (
	// MaxReplySize bounds any reply from a plugin (List's, the largest: a
	// handle per worker); a larger one is refused as a bad reply.
	MaxReplySize = 16 << 20
	// maxSmallReply bounds the replies that carry no state blob (Wait,
	// Inspect, Info, Fingerprint, …); Start's may carry one.
	maxSmallReply = 256 << 10
	maxStartReply = MaxStateSize + maxSmallReply
	// MaxErrorText bounds a plugin's error message and ExitResult.Err.
	MaxErrorText = 1024
	// maxShortText bounds a name, a version, a label, a detail's key or value.
	maxShortText = 256
	// maxDetailText bounds Fingerprint.Detail and a diagnostic's detail.
	maxDetailText = 2048
	// maxEntries bounds the entries of a map in a reply (Details, Attrs, Labels).
	maxEntries = 64
	// maxDiagnostics bounds ValidateConfig's list.
	maxDiagnostics = 100
	// maxAddress bounds a worker address (a DNS name is at most 253 bytes).
	maxAddress = 262
)

// cutText returns s as valid UTF-8 of at most max bytes, saying how much
// it cut.
func cutText(s string, max int) string {
	if len(s) <= max && utf8.ValidString(s) {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	mark := fmt.Sprintf("… (%d bytes cut)", len(s)-max)
	end := max - len(mark)
	if end < 0 {
		end = 0
	}
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end] + mark
}

// cutMap keeps at most maxEntries entries of m (by key order, so that the
// same reply keeps the same ones), each key and value cut.
func cutMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	small := len(m) <= maxEntries
	for k, v := range m {
		if len(k) > maxShortText || len(v) > maxShortText || !utf8.ValidString(k) || !utf8.ValidString(v) {
			small = false
			break
		}
	}
	if small {
		return m
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > maxEntries {
		keys = keys[:maxEntries]
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		out[cutText(k, maxShortText)] = cutText(m[k], maxShortText)
	}
	return out
}

// cutExit bounds an ExitResult a plugin sent.
func cutExit(r *ExitResult) *ExitResult {
	if r == nil {
		return nil
	}
	r.Err = cutText(r.Err, MaxErrorText)
	if len(r.Output) > MaxOutputBytes || strings.ContainsFunc(r.Output, isControlButNewline) || !utf8.ValidString(r.Output) {
		r.Output = TrimOutput([]byte(r.Output))
	}
	return r
}

func isControlButNewline(r rune) bool { return r != '\n' && isControl(r) }

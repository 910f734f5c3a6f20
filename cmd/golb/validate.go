package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"

	"github.com/golb/golb/core"
	"github.com/golb/golb/core/config"
)

// plural is "1 what" or "N whats".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// loadConfig parses the file (or the default) and prints diagnostics.
func loadConfig(path string, stderr io.Writer) (*config.Config, map[string]*hcl.File, bool) {
	cfg, files, diags := config.Load(path)
	printDiags(stderr, files, diags)
	return cfg, files, !diags.HasErrors()
}

// The most printDiags shows: a hostile file can make HCL report one
// diagnostic per byte, each on a line as long as the file.
const (
	maxPrintedDiags = 20   // diagnostics; the rest are counted
	maxDiagText     = 1024 // bytes of a summary or a hint
	maxSourceLine   = 120  // bytes of a source line, cut around the span
)

// printDiags prints each diagnostic once, compiler style: a
// `file:line:column: severity: summary` line (for editors and scripts), the
// offending source line with the span underlined, then the fix hint. It
// prints the first maxPrintedDiags and then how many more there are.
//
//	x.hcl:3:13: error: Invalid admin address "127.0.0.1:5040x"
//	    3 |   address = "127.0.0.1:5040x"
//	      |             ^^^^^^^^^^^^^^^^^
//	  Write host:port with a port of 0 to 65535, …
//
// The diagnostics are printed in file, line, column order (config.SortDiags):
// this is where every verb's diagnostics are rendered.
func printDiags(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics) {
	diags = config.SortDiags(diags)
	for i, d := range diags {
		if i == maxPrintedDiags {
			var errs, warns int
			for _, d := range diags[i:] {
				if d.Severity == hcl.DiagWarning {
					warns++
				} else {
					errs++
				}
			}
			var more []string
			if errs > 0 {
				more = append(more, plural(errs, "more error"))
			}
			if warns > 0 {
				more = append(more, plural(warns, "more warning"))
			}
			fmt.Fprintf(w, "golb: %s not shown: fix the ones above first\n", strings.Join(more, " and "))
			return
		}
		sev := "error"
		if d.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		if d.Subject == nil {
			fmt.Fprintf(w, "golb: %s: %s\n", sev, clip(d.Summary, maxDiagText))
		} else {
			s := d.Subject
			fmt.Fprintf(w, "%s:%d:%d: %s: %s\n", s.Filename, s.Start.Line, s.Start.Column, sev, clip(d.Summary, maxDiagText))
			if f := files[s.Filename]; f != nil {
				writeSourceLine(w, f.Bytes, *s)
			}
		}
		if d.Detail != "" {
			fmt.Fprintf(w, "  %s\n", clip(d.Detail, maxDiagText))
		}
	}
}

// clip cuts s after at most n bytes (at a rune boundary), saying how much
// was left out.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes more)", s[:cut], len(s)-cut)
}

// writeSourceLine prints the line where r starts, numbered, and underlines
// r (up to the end of that line). A line longer than maxSourceLine is cut
// to that many bytes around the start of r, with … where it was cut.
func writeSourceLine(w io.Writer, src []byte, r hcl.Range) {
	if r.Start.Byte < 0 || r.Start.Byte > len(src) {
		return
	}
	lineStart := bytes.LastIndexByte(src[:r.Start.Byte], '\n') + 1
	lineEnd := len(src)
	if i := bytes.IndexByte(src[lineStart:], '\n'); i >= 0 {
		lineEnd = lineStart + i
	}
	from, to := lineStart, lineEnd
	if to-from > maxSourceLine {
		from = max(lineStart, r.Start.Byte-maxSourceLine/4)
		for from > lineStart && !utf8.RuneStart(src[from]) {
			from--
		}
		to = min(lineEnd, from+maxSourceLine)
		for to > r.Start.Byte && to < lineEnd && !utf8.RuneStart(src[to]) {
			to--
		}
	}
	var cutStart, cutEnd string
	if from > lineStart {
		cutStart = "…"
	}
	if to < lineEnd {
		cutEnd = "…"
	}
	line := strings.TrimRight(string(src[from:to]), "\r")
	end := max(min(r.End.Byte, from+len(line)), r.Start.Byte)
	// Keep tabs in the indent so the carets line up under the span.
	pad := []rune(string(src[from:r.Start.Byte]))
	for i, c := range pad {
		if c != '\t' {
			pad[i] = ' '
		}
	}
	if cutStart != "" {
		pad = append([]rune{' '}, pad...)
	}
	marks := max(utf8.RuneCount(src[r.Start.Byte:end]), 1)
	num := strconv.Itoa(r.Start.Line)
	gutter := strings.Repeat(" ", len(num))
	fmt.Fprintf(w, "  %s | %s%s%s\n  %s | %s%s\n", num, cutStart, line, cutEnd, gutter, string(pad), strings.Repeat("^", marks))
}

// cmdValidate is `golb validate FILE`; loadConfig and printDiags above are
// also how `golb run` and `golb drivers` read a config and report it.
// Unlike loadConfig, validate resolves the groups' driver names while it
// parses, so that a missing driver is reported along with the file's other
// errors; all its diagnostics are printed at once, in order.
func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", stderr, "Usage: golb validate FILE\n\nChecks FILE, including each driver's config block, and starts nothing.\nExit 0 when valid, 1 on any error.")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	opts := coreOptions(newLogger(io.Discard, false), false)
	cfg, files, diags := config.LoadWith(fs.Arg(0), config.Options{Builtins: opts.Builtins})
	if diags.HasErrors() {
		printDiags(stderr, files, diags)
		return exitError
	}
	agent, err := core.New(cfg, opts)
	if err != nil {
		printDiags(stderr, files, diags)
		fmt.Fprintln(stderr, "golb:", err)
		return exitError
	}
	defer agent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	diags = append(diags, agent.Prepare(ctx)...)
	printDiags(stderr, files, diags)
	if diags.HasErrors() {
		return exitError
	}
	fmt.Fprintf(stdout, "%s: valid (%s, %s)\n", fs.Arg(0), plural(len(cfg.Groups), "group"), plural(len(cfg.Balancers), "balancer"))
	return exitOK
}

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/golb/golb/core/config"
)

// TestPrintDiagsOncePerError: each diagnostic is printed once, as a
// file:line:column line, its source line with the span underlined (tabs kept
// so the carets line up), and its fix hint.
func TestPrintDiagsOncePerError(t *testing.T) {
	for _, tc := range []struct{ src, want, summary string }{
		{"group \"a\" {\n\tport  = 7000\n\tfoo   = 1\n}\n",
			"x.hcl:3:2: error: Unsupported argument\n  3 | \tfoo   = 1\n    | \t^^^\n  An argument named", "Unsupported argument"},
		{"group \"a\" {\n  port = 7000\n}\nbalancer \"b\" {\n  group = \"a\"\n  port = 5050\n  policy = \"fastest\"\n}\n",
			"x.hcl:7:12: error: Unknown policy \"fastest\"\n  7 |   policy = \"fastest\"\n    |            ^^^^^^^^^\n", "Unknown policy"},
	} {
		_, files, diags := config.Parse("x.hcl", []byte(tc.src))
		var out bytes.Buffer
		printDiags(&out, files, diags)
		got := out.String()
		t.Logf("\n%s", got)
		if !strings.Contains(got, tc.want) {
			t.Errorf("output lacks %q", tc.want)
		}
		if n := strings.Count(got, tc.summary); n != 1 {
			t.Errorf("%q is reported %d times, want once", tc.summary, n)
		}
	}
}

// Regression: a 20 KB file of "${" repeated made golb validate print 301 MB
// of diagnostics: hcl reports thousands of errors, each printed with the
// whole 20 KB line. printDiags now prints the first 20, each with at most
// maxSourceLine bytes of its line, then how many more there are; and golb
// validate refuses that file (nested too deep) with one error.
func TestPrintDiagsDollarBraceFloodIsBounded(t *testing.T) {
	src := []byte(strings.Repeat("${", 10_000))
	// hcl's own parse, without the config's limits, gives the flood.
	file, diags := hclsyntax.ParseConfig(src, "x.hcl", hcl.InitialPos)
	if len(diags) <= maxPrintedDiags {
		t.Fatalf("hcl gave %d diagnostics, want a flood", len(diags))
	}
	var out bytes.Buffer
	printDiags(&out, map[string]*hcl.File{"x.hcl": file}, diags)
	got := out.String()
	t.Logf("%d diagnostics, %d bytes printed; the end:\n%s", len(diags), len(got), got[max(0, len(got)-600):])
	if n := strings.Count(got, ": error: "); n != maxPrintedDiags {
		t.Errorf("%d diagnostics printed, want %d", n, maxPrintedDiags)
	}
	if want := fmt.Sprintf("golb: %d more errors not shown: fix the ones above first\n", len(diags)-maxPrintedDiags); !strings.HasSuffix(got, want) {
		t.Errorf("output does not end with %q", want)
	}
	if len(got) > 16<<10 {
		t.Errorf("printed %d bytes, want under 16 KiB", len(got))
	}

	path := filepath.Join(t.TempDir(), "flood.hcl")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := cmdValidate([]string{path}, &stdout, &stderr); code != exitError {
		t.Errorf("golb validate exit %d, want %d", code, exitError)
	}
	t.Logf("golb validate:\n%s", stderr.String())
	if n := strings.Count(stderr.String(), ": error: "); n != 1 || stderr.Len() > 1<<10 {
		t.Errorf("golb validate printed %d errors in %d bytes, want one in under 1 KiB", n, stderr.Len())
	}
}

// After maxPrintedDiags diagnostics, one line counts the rest, errors and
// warnings apart.
func TestPrintDiagsCountsTheRest(t *testing.T) {
	diag := func(sev hcl.DiagnosticSeverity) *hcl.Diagnostic {
		return &hcl.Diagnostic{Severity: sev, Summary: "s", Detail: "d"}
	}
	for _, tc := range []struct {
		errs, warns int
		want        string
	}{
		{maxPrintedDiags, 0, ""},
		{maxPrintedDiags + 1, 0, "golb: 1 more error not shown: fix the ones above first\n"},
		{maxPrintedDiags + 5, 2, "golb: 5 more errors and 2 more warnings not shown: fix the ones above first\n"},
		{maxPrintedDiags, 3, "golb: 3 more warnings not shown: fix the ones above first\n"},
	} {
		var diags hcl.Diagnostics
		for range tc.errs {
			diags = append(diags, diag(hcl.DiagError))
		}
		for range tc.warns {
			diags = append(diags, diag(hcl.DiagWarning))
		}
		var out bytes.Buffer
		printDiags(&out, nil, diags)
		got := out.String()
		if n := strings.Count(got, "golb: error: ") + strings.Count(got, "golb: warning: "); n != min(len(diags), maxPrintedDiags) {
			t.Errorf("%d errors, %d warnings: %d printed", tc.errs, tc.warns, n)
		}
		if tc.want == "" && strings.Contains(got, "not shown") || tc.want != "" && !strings.HasSuffix(got, tc.want) {
			t.Errorf("%d errors, %d warnings: output ends %q, want %q", tc.errs, tc.warns, got[max(0, len(got)-80):], tc.want)
		}
	}
}

// A source line longer than maxSourceLine is cut around the span, at rune
// boundaries, with … at each cut, and the carets stay under the span; a long
// hint is cut too.
func TestPrintDiagsCutsLongSourceLines(t *testing.T) {
	const head = "x = 1\n"
	line := strings.Repeat("é", 150_000) + "a" + "BAD" + strings.Repeat("é", 150_000)
	start := len(head) + 300_001
	rng := hcl.Range{Filename: "x.hcl", Start: hcl.Pos{Line: 2, Column: 150_002, Byte: start}, End: hcl.Pos{Line: 2, Column: 150_005, Byte: start + 3}}
	diags := hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Bad", Detail: strings.Repeat("d", 5000), Subject: &rng}}
	var out bytes.Buffer
	printDiags(&out, map[string]*hcl.File{"x.hcl": {Bytes: []byte(head + line + "\n")}}, diags)
	t.Logf("\n%s", out.String()[:min(out.Len(), 400)])
	lines := strings.Split(out.String(), "\n")
	if len(lines) != 5 || lines[0] != "x.hcl:2:150002: error: Bad" {
		t.Fatalf("got %d lines, first %q", len(lines), lines[0])
	}
	src, carets := lines[1], lines[2]
	if !utf8.ValidString(src) || len(src) > maxSourceLine+20 || !strings.HasPrefix(src, "  2 | …é") || !strings.HasSuffix(src, "é…") {
		t.Errorf("source line %q: want valid UTF-8, cut at both ends, under %d bytes", src, maxSourceLine+20)
	}
	col := utf8.RuneCountInString(src[:strings.Index(src, "BAD")])
	if got := utf8.RuneCountInString(carets[:strings.Index(carets, "^")]); got != col || strings.Count(carets, "^") != 3 {
		t.Errorf("carets %q start at column %d, want 3 at %d under BAD", carets, got, col)
	}
	if !strings.HasSuffix(lines[3], "d… (3976 bytes more)") || len(lines[3]) > maxDiagText+30 {
		t.Errorf("hint of %d bytes printed as %d bytes ending %q", 5000, len(lines[3]), lines[3][max(0, len(lines[3])-30):])
	}
}

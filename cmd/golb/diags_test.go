package main

import (
	"bytes"
	"strings"
	"testing"

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

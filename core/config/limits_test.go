package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// oneError parses src, which must fail with exactly one error, and returns it.
func oneError(t *testing.T, src string) *hcl.Diagnostic {
	t.Helper()
	cfg, files, diags := Parse("test.hcl", []byte(src))
	if cfg != nil || len(diags) != 1 || !diags.HasErrors() {
		t.Fatalf("want one error and no Config, got %v and %d diagnostics (first: %v)", cfg, len(diags), diags[:min(len(diags), 1)])
	}
	if files["test.hcl"] == nil || len(files["test.hcl"].Bytes) != len(src) {
		t.Errorf("files lacks the source, so the diagnostic cannot show it")
	}
	return diags[0]
}

// Regression: `count = ` then 100,000 "(", a 1 and 100,000 ")" killed golb
// validate with "fatal error: stack overflow" at 1.1 GB (hcl's parser
// recurses once per level). That file, and every other way of nesting deep
// (each tried here 10,000 levels deep), is now one "Nested more than
// 100 levels deep" error, found before hcl parses.
func TestDeepNestingDoesNotOverflowTheStack(t *testing.T) {
	const n = 10_000
	r := strings.Repeat
	for _, tc := range []struct{ name, src string }{
		{"parentheses", "count = " + r("(", 100_000) + "1" + r(")", 100_000)},
		{"tuples", "x = " + r("[", n) + r("]", n)},
		{"objects", "x = " + r("{a=", n) + "1" + r("}", n)},
		{"blocks", r("a {\n", n) + r("}\n", n)},
		{"negations", "count = " + r("-", n) + "1"},
		{"nots", "x = " + r("!", n) + "true"},
		{"conditionals", "x = " + r("true?", n) + "1" + r(":1", n)},
		{"conditional chain", "x = " + r("true?1:", n) + "1"},
		{"conditional chain over lines", "x = (" + r("true?1:\n", n) + "1)"},
		{"sums", "count = 1" + r("+1", n)},
		{"indexes", "x = (1)" + r("[0]", n)},
		{"attributes", "x = (1)" + r(".a", n)},
		{"interpolations", "x = " + r(`"${`, n) + "1" + r(`}"`, n)},
		{"heredoc", "x = <<EOT\n${" + r("(", n) + "1" + r(")", n) + "}\nEOT\n"},
		{"dollar braces", r("${", 10_000)}, // the 20 KB file that printed 301 MB of diagnostics
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.src) > maxFileSize {
				t.Fatalf("%d bytes: over the file limit", len(tc.src))
			}
			d := oneError(t, tc.src)
			if !strings.HasPrefix(d.Summary, "Nested more than 100 levels deep") || d.Detail == "" {
				t.Errorf("got %q (%s), want the nesting error with a hint", d.Summary, d.Detail)
			}
		})
	}
	d := oneError(t, "count = "+r("(", 200)+"1"+r(")", 200))
	if s := d.Subject; s == nil || s.Start.Line != 1 || s.Start.Column != 9+100 {
		t.Errorf("nesting error at %v, want at the 101st parenthesis, 1:109", d.Subject)
	}
	// The limit is what it says: 100 levels pass, 101 do not.
	mustParse(t, "data_dir = "+r("(", 99)+`".golb"`+r(")", 99)+"\ngroup \"a\" { port = 7000 }\n")
	oneError(t, "data_dir = "+r("(", 100)+`".golb"`+r(")", 100)+"\ngroup \"a\" { port = 7000 }\n")
}

// Regression: a valid 100,000-line heredoc took 7.4 s to parse (hcl joins
// the lines of a string in quadratic time), and 100,000 lone $ in a string
// 5.5 s. Either is refused at once, pointing at the string; a heredoc of
// maxTemplatePieces lines still parses.
func TestHundredThousandLineHeredocIsRefused(t *testing.T) {
	for _, src := range []string{
		"group \"a\" { port = 7000 }\ndata_dir = <<EOT\n" + strings.Repeat("x\n", 100_000) + "EOT\n",
		"group \"a\" { port = 7000 }\ndata_dir = <<-EOT\n" + strings.Repeat(" x\n", 80_000) + " EOT\n",
		"group \"a\" { port = 7000 }\ndata_dir = \"" + strings.Repeat("$", 100_000) + "\"\n",
	} {
		d := oneError(t, src)
		if d.Summary != "String or heredoc too long" || d.Subject == nil || d.Subject.Start.Line != 2 || d.Subject.Start.Column != 12 {
			t.Errorf("got %q at %v, want the too-long error at the string's start, 2:12", d.Summary, d.Subject)
		}
	}
	cfg := mustParse(t, "group \"a\" { port = 7000 }\ndata_dir = <<EOT\n"+strings.Repeat("x\n", maxTemplatePieces)+"EOT\n")
	if len(cfg.DataDir) != 2*maxTemplatePieces {
		t.Errorf("data_dir has %d bytes, want %d", len(cfg.DataDir), 2*maxTemplatePieces)
	}
	// Lines apart from each other by an interpolation are not joined.
	mustParse(t, "group \"a\" { port = 7000 }\ndata_dir = <<EOT\n"+strings.Repeat("x${\"y\"}\n", 2*maxTemplatePieces)+"EOT\n")
}

// Regression: golb validate /dev/zero read until it ran out of memory. Load
// reads at most maxFileSize+1 bytes of any file, and says which file, the
// limit and what to check.
func TestLoadDevZeroIsRefused(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skipf("no /dev/zero: %v", err)
	}
	cfg, _, diags := Load("/dev/zero")
	if cfg != nil || len(diags) != 1 {
		t.Fatalf("got %v and %v, want one error", cfg, diags)
	}
	d := diags[0]
	for _, want := range []string{fmt.Sprintf("/dev/zero has more than %d bytes", maxFileSize), "at most 256 KiB", "golb config you meant"} {
		if d.Summary != "Config file too large" || !strings.Contains(d.Detail, want) {
			t.Errorf("got %q: %q, want %q in the detail", d.Summary, d.Detail, want)
		}
	}
	if d.Subject == nil || d.Subject.Filename != "/dev/zero" || d.Subject.Start.Line != 1 {
		t.Errorf("subject %v, want /dev/zero:1:1", d.Subject)
	}
}

// A file of exactly maxFileSize bytes is read; one byte more is refused with
// the file's size. Parse, which other callers use, applies the same limit.
func TestLoadOversizedFileNamesItsSize(t *testing.T) {
	dir := t.TempDir()
	valid := "group \"a\" { port = 7000 }\n"
	pad := func(n int) []byte { return []byte(valid + "#" + strings.Repeat("x", n-len(valid)-2) + "\n") }
	atLimit, over := filepath.Join(dir, "at.hcl"), filepath.Join(dir, "over.hcl")
	if err := os.WriteFile(atLimit, pad(maxFileSize), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(over, pad(maxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if cfg, files, diags := Load(atLimit); cfg == nil {
		t.Fatalf("a file of exactly the limit is refused:\n%s", diagText(t, files, diags))
	}
	_, _, diags := Load(over)
	if want := fmt.Sprintf("%s has %d bytes", over, maxFileSize+1); len(diags) != 1 || !strings.Contains(diags[0].Detail, want) {
		t.Fatalf("got %v, want one error saying %q", diags, want)
	}
	d := oneError(t, string(pad(maxFileSize+1)))
	if !strings.Contains(d.Detail, fmt.Sprintf("test.hcl has %d bytes", maxFileSize+1)) {
		t.Errorf("Parse: got %q, want the size error", d.Detail)
	}
}

// Config files are read through a limit rather than refused when not
// regular, so a pipe (golb validate <(generate-config)) still works.
func TestLoadReadsFromAPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() {
		fmt.Fprint(w, "group \"a\" { port = 7000 }\n")
		w.Close()
	}()
	path := fmt.Sprintf("/proc/self/fd/%d", r.Fd())
	cfg, files, diags := Load(path)
	if cfg == nil {
		t.Fatalf("reading %s:\n%s", path, diagText(t, files, diags))
	}
}

// Regression: a balancer naming a group that is not there got a hint that
// listed every group, so 3,000 such balancers beside 3,000 groups (a 250 KB
// file) made golb validate print 60 MB. The hint names the first few.
func TestUnknownGroupHintIsShortWithManyGroups(t *testing.T) {
	var b strings.Builder
	for i := range 3 * maxHintNames {
		fmt.Fprintf(&b, "group \"g%d\" {\n  port = %d\n}\n", i, 10000+i)
	}
	b.WriteString("balancer \"b\" {\n  group = \"nope\"\n  port = 5050\n}\n")
	errs := errorsOf(t, b.String())
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Summary, "Unknown group") {
		t.Fatalf("got %v, want one Unknown group error", errs)
	}
	if want := "g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, … (30 groups)."; !strings.HasSuffix(errs[0].Detail, want) {
		t.Errorf("hint %q, want it to end %q", errs[0].Detail, want)
	}
}

// fill repeats unit between head and tail as often as fits in maxFileSize.
func fill(head, unit, tail string) []byte {
	n := (maxFileSize - len(head) - len(tail)) / len(unit)
	return []byte(head + strings.Repeat(unit, n) + tail)
}

// BenchmarkParseAtTheLimits parses the costliest files the limits let
// through, and two that they refuse, as golb validate does before it starts
// any driver:
//
//	go test -run '^$' -bench ParseAtTheLimits -benchtime 3x ./core/config
func BenchmarkParseAtTheLimits(b *testing.B) {
	const group = "group \"a\" { port = 7000 }\n"
	line := strings.Repeat("x", maxFileSize/maxTemplatePieces-8) + "\n"
	var groups strings.Builder
	for i := 0; groups.Len() < maxFileSize-64; i++ {
		fmt.Fprintf(&groups, "group \"g%d\" {\n  port = 7000\n}\n", i)
	}
	for _, bc := range []struct {
		name string
		src  []byte
	}{
		{"heredoc of the longest lines", []byte(group + "data_dir = <<EOT\n" + strings.Repeat(line, maxTemplatePieces) + "EOT\n")},
		{"heredoc of the most lines", []byte(group + "data_dir = <<EOT\n" + strings.Repeat("x\n", maxTemplatePieces) + "EOT\n")},
		{"unknown attributes", fill(group, "abcdef = 1\n", "")},
		{"invalid characters", fill("", "$", "")},
		{"tuple", fill(group+"data_dir = [", "1,", "]\n")},
		{"groups on one port", []byte(groups.String())},
		{"refused: 100,000-line heredoc", []byte(group + "data_dir = <<EOT\n" + strings.Repeat("x\n", 100_000) + "EOT\n")},
		{"refused: 100,000 parentheses", []byte("count = " + strings.Repeat("(", 100_000) + "1" + strings.Repeat(")", 100_000))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if len(bc.src) > maxFileSize {
				b.Fatalf("%d bytes, over the limit", len(bc.src))
			}
			b.SetBytes(int64(len(bc.src)))
			b.ReportAllocs()
			for b.Loop() {
				Parse("bench.hcl", bc.src)
			}
		})
	}
}

// Regression: four nested for expressions over 100 numbers each, a 1.4 KB
// file (retry_on = [for v0 in [0,…,99]: [for v1 in …: … "5xx"]]), ran
// golb validate out of memory (2.3 GB), and a reload to it crashed a
// running agent. golb has no variables, so a for expression is refused,
// at its keyword, before HCL evaluates anything.
func TestNestedForExpressionsRunOutOfMemory(t *testing.T) {
	r := strings.Repeat
	list := "[" + strings.TrimSuffix(r("0,", 100), ",") + "]"
	nested := "x = " + r("[for v in "+list+": ", 4) + `"5xx"` + r("]", 4) + "\n"
	for _, tc := range []struct {
		name, src string
		col       int
	}{
		{"nested tuples", nested, 6},
		{"tuple", `x = [for v in [1, 2]: v]`, 6},
		{"object", `x = {for k in ["a"]: k => 1}`, 6},
		{"over lines", "x = [\n  # why not\n  for v in [1]: v]", 3},
		{"in an interpolation", `x = "${[for v in [1]: v][0]}"`, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := oneError(t, "group \"a\" { port = 7000 }\n"+tc.src)
			if d.Summary != "for expressions are not allowed" || !strings.Contains(d.Detail, "write out") {
				t.Errorf("got %q (%s), want the for expression refused with a hint", d.Summary, d.Detail)
			}
			if s := d.Subject; s == nil || s.Start.Column != tc.col || string(s.SliceBytes([]byte("group \"a\" { port = 7000 }\n"+tc.src))) != "for" {
				t.Errorf("diagnostic at %v, want at the for keyword, column %d", d.Subject, tc.col)
			}
		})
	}
	// An attribute or a string that says "for" is no for expression.
	mustParse(t, "group \"a\" {\n  port = 7000\n  health_check { path = \"/for\" }\n}\n")
}

// Regression: path = "/%{for v0 in [..100..]}%{for v1 in …}…x%{endfor}…"
// kept golb validate busy for over a minute. golb has no variables, so
// %{for} and %{if} directives are refused at their first keyword; an
// escaped %%{ is text.
func TestTemplateForDirectivesRunForMinutes(t *testing.T) {
	r := strings.Repeat
	list := "[" + strings.TrimSuffix(r("0,", 100), ",") + "]"
	for _, tc := range []struct{ name, src string }{
		{"nested for", `x = "/` + r("%{for v in "+list+"}", 4) + "x" + r("%{endfor}", 4) + `"`},
		{"if", `x = "%{if true}a%{else}b%{endif}"`},
		{"strip marker", `x = "%{~ for v in [1] ~}a%{ endfor }"`},
		{"heredoc", "x = <<EOT\n%{for v in [1]}a\n%{endfor}\nEOT\n"},
		{"deep", `x = "` + r("%{if true}", 10_000) + r("%{endif}", 10_000) + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := oneError(t, "group \"a\" { port = 7000 }\n"+tc.src)
			if d.Summary != "Template directives are not allowed" || !strings.Contains(d.Detail, "%%{") {
				t.Errorf("got %q (%s), want the directive refused with a hint", d.Summary, d.Detail)
			}
			if s := d.Subject; s == nil || !strings.HasPrefix(string(s.SliceBytes([]byte("group \"a\" { port = 7000 }\n"+tc.src))), "%{") {
				t.Errorf("diagnostic at %v, want at the first directive", d.Subject)
			}
		})
	}
	mustParse(t, "data_dir = \"/tmp/%%{for}\"\ngroup \"a\" { port = 7000 }\n")
}

package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// testBuiltins are golb's built-in drivers, as cmd/golb hands them to LoadWith.
var testBuiltins = []string{"containerd", "docker", "process"}

// TestDriverNamesGolden parses every testdata/drivers file with the driver
// names resolved (ParseWith and the built-ins, plugin_dir testdata/plugins
// where the file sets it), as TestInvalidGolden does testdata/invalid.
func TestDriverNamesGolden(t *testing.T) {
	invalidGolden(t, "drivers", Options{Builtins: testBuiltins})
}

// Regression: golb validate reported a group's unknown driver only once every
// other error in the file was fixed (it was found when the driver plugin was
// launched, which an invalid file never got to). It is now an error of the
// parse, with the file's other errors, at the driver attribute.
func TestUnknownDriverReportedWithOtherErrors(t *testing.T) {
	for name, src := range map[string]string{
		"checks":  "group \"a\" {\n  driver = \"nosuch\"\n  count = -1\n  port = 99999\n}\n",
		"decode":  "group \"a\" {\n  driver = \"nosuch\"\n  port = 7000\n  bogus = 1\n}\n",
		"nothing": "group \"a\" {\n  driver = \"nosuch\"\n  port = 7000\n}\n",
	} {
		t.Run(name, func(t *testing.T) {
			cfg, _, diags := ParseWith("x.hcl", []byte(src), Options{Builtins: testBuiltins})
			if cfg != nil {
				t.Fatal("a Config along with errors")
			}
			var found *hcl.Diagnostic
			for _, d := range diags {
				if d.Summary == `Driver "nosuch" not found` {
					found = d
				}
			}
			if found == nil {
				t.Fatalf("no unknown-driver error in %v", diags)
			}
			if s := found.Subject; s == nil || s.Start.Line != 2 || s.Start.Column != 12 {
				t.Errorf("at %v, want x.hcl:2:12 (the driver's value)", found.Subject)
			}
			for _, want := range []string{"containerd, docker, process", "golb-driver-nosuch", "./plugins"} {
				if !strings.Contains(found.Detail, want) {
					t.Errorf("hint %q lacks %q", found.Detail, want)
				}
			}
			if strings.Contains(found.Detail, "\n") {
				t.Errorf("hint %q is more than one line", found.Detail)
			}
		})
	}
}

// Without Builtins (Parse, Load), driver names are left to the plugin launch.
func TestParseLeavesDriverNamesUnresolved(t *testing.T) {
	mustParse(t, "group \"a\" {\n  driver = \"nosuch\"\n  port = 7000\n}\n")
}

// A file whose groups use built-in drivers and an executable plugin in
// plugin_dir is valid with the names resolved.
func TestResolvedDriverNamesValid(t *testing.T) {
	src := "plugin_dir = \"testdata/plugins\"\ngroup \"a\" {\n  driver = \"extra\"\n  port = 7000\n}\n" +
		"group \"b\" {\n  port = 7100\n}\ngroup \"c\" {\n  driver = \"docker\"\n  port = 7200\n}\n"
	cfg, files, diags := ParseWith("x.hcl", []byte(src), Options{Builtins: testBuiltins})
	if len(diags) > 0 || cfg == nil {
		t.Fatalf("unexpected diagnostics:\n%s", diagText(t, files, diags))
	}
}

// The hint names at most maxHintNames external drivers, then how many.
// (It looks for ", d10" in the list: the temp dir's own name, e.g.
// TestDriverNotFoundHintIsBounded1078048929, can hold "d10" and once
// failed CI.)
func TestDriverNotFoundHintIsBounded(t *testing.T) {
	dir := t.TempDir()
	for i := range 3 * maxHintNames {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%sd%02d", PluginPrefix, i)), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d := DriverNotFound("nosuch", hcl.Range{}, testBuiltins, dir)
	if !strings.Contains(d.Detail, "d09, … (30 drivers)") || strings.Contains(d.Detail, ", d10") {
		t.Errorf("hint %q does not stop after %d names", d.Detail, maxHintNames)
	}
}

// Regression: golb validate printed the errors in the order the checks ran,
// so a group's port error (line 4) came before its count error (line 3).
func TestParseDiagsInPositionOrder(t *testing.T) {
	for name, src := range map[string]string{
		"group":  "group \"a\" {\n  driver = \"nosuch\"\n  count = -1\n  port = 99999\n}\nbalancer \"web\" {\n  group = \"zz\"\n  port = 5050\n  policy = \"bogus\"\n}\n",
		"decode": "group \"a\" {\n  port = \"x\"\n  nope = 1\n}\nnope = 2\ngroup \"b\" {\n  nope = 3\n  port = \"y\"\n}\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, _, diags := Parse("x.hcl", []byte(src))
			if len(diags) < 3 {
				t.Fatalf("want several diagnostics, got %v", diags)
			}
			for i := 1; i < len(diags); i++ {
				a, b := diags[i-1].Subject, diags[i].Subject
				if a.Start.Line > b.Start.Line || a.Start.Line == b.Start.Line && a.Start.Column > b.Start.Column {
					t.Errorf("%d:%d %q comes before %d:%d %q", a.Start.Line, a.Start.Column, diags[i-1].Summary, b.Start.Line, b.Start.Column, diags[i].Summary)
				}
			}
		})
	}
}

// SortDiags orders by file, line, column, keeps the order of those at one
// position, puts those without a position first, and leaves its input be.
func TestSortDiags(t *testing.T) {
	at := func(summary, file string, line, col int) *hcl.Diagnostic {
		p := hcl.Pos{Line: line, Column: col}
		return &hcl.Diagnostic{Summary: summary, Subject: &hcl.Range{Filename: file, Start: p, End: p}}
	}
	in := hcl.Diagnostics{
		at("b3", "b.hcl", 1, 1),
		at("a4", "a.hcl", 4, 10),
		at("a3-second", "a.hcl", 3, 11),
		at("a3-first", "a.hcl", 3, 2),
		{Summary: "nowhere"},
		at("a3-second-too", "a.hcl", 3, 11),
	}
	var got []string
	for _, d := range SortDiags(in) {
		got = append(got, d.Summary)
	}
	want := "nowhere a3-first a3-second a3-second-too a4 b3"
	if strings.Join(got, " ") != want {
		t.Errorf("got %v, want %s", got, want)
	}
	if in[0].Summary != "b3" {
		t.Error("SortDiags reordered its input")
	}
}

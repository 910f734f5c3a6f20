package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// positionRe is a printed diagnostic's file:line:column line.
var positionRe = regexp.MustCompile(`(?m)^[^ \n]+\.hcl:(\d+):(\d+): (error|warning): (.*)$`)

// printedPositions are the line:column of each diagnostic printDiags wrote.
func printedPositions(t *testing.T, out string) [][2]int {
	t.Helper()
	var pos [][2]int
	for _, m := range positionRe.FindAllStringSubmatch(out, -1) {
		line, _ := strconv.Atoi(m[1])
		col, _ := strconv.Atoi(m[2])
		pos = append(pos, [2]int{line, col})
	}
	return pos
}

// Regression: golb validate printed a group's port error (line 4) before
// its count error (line 3), and did not report the unknown driver (line 2)
// at all until every other error was fixed. All five now come at once, in
// file order, the driver's with a one-line hint naming the drivers.
func TestValidateUnknownDriverWithOtherErrorsInOrder(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.hcl")
	src := "group \"a\" {\n  driver = \"nosuch\"\n  count = -1\n  port = 99999\n}\n" +
		"balancer \"web\" {\n  group = \"zz\"\n  port = 5050\n  policy = \"bogus\"\n}\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := cmdValidate([]string{path}, &stdout, &stderr); code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	out := stderr.String()
	t.Logf("\n%s", out)
	want := [][2]int{{2, 12}, {3, 11}, {4, 10}, {7, 11}, {9, 12}}
	if got := printedPositions(t, out); !slices.Equal(got, want) {
		t.Errorf("diagnostics at %v, want %v", got, want)
	}
	head := path + ":2:12: error: Driver \"nosuch\" not found\n"
	if !strings.HasPrefix(out, head) {
		t.Fatalf("output does not start with %q", head)
	}
	lines := strings.Split(out, "\n")
	if hint := lines[3]; !strings.Contains(hint, "containerd, docker, process") || !strings.Contains(hint, "golb-driver-nosuch") {
		t.Errorf("hint line %q does not name the drivers and the plugin file", hint)
	}
}

// The unknown driver's hint names the executable golb-driver-NAME files of
// plugin_dir, even though the file has another error.
func TestValidateUnknownDriverHintNamesPlugins(t *testing.T) {
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	if err := os.Mkdir(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"golb-driver-extra": 0o755, "golb-driver-noexec": 0o644} {
		if err := os.WriteFile(filepath.Join(plugins, name), []byte("#!/bin/sh\nexit 1\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "x.hcl")
	src := "plugin_dir = " + strconv.Quote(plugins) + "\ngroup \"a\" {\n  driver = \"nosuch\"\n  port = 7000\n  bogus = 1\n}\n" +
		"group \"b\" {\n  driver = \"extra\"\n  port = 7100\n}\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := cmdValidate([]string{path}, &stdout, &stderr); code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	out := stderr.String()
	t.Logf("\n%s", out)
	if got, want := printedPositions(t, out), [][2]int{{3, 12}, {5, 3}}; !slices.Equal(got, want) {
		t.Errorf("diagnostics at %v, want %v (nosuch, then bogus; extra exists)", got, want)
	}
	if !strings.Contains(out, "(extra)") || strings.Contains(out, "noexec") {
		t.Errorf("hint does not name exactly the executable plugin extra")
	}
}

// printDiags renders every verb's diagnostics (validate, run, drivers, a
// reload's answer): in file, line, column order whatever order it is given,
// same-position ones in their order, the first maxPrintedDiags of that order.
func TestValidatePrintDiagsSortsByPosition(t *testing.T) {
	at := func(summary string, line, col int) *hcl.Diagnostic {
		p := hcl.Pos{Line: line, Column: col}
		return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: "fix", Subject: &hcl.Range{Filename: "x.hcl", Start: p, End: p}}
	}
	diags := hcl.Diagnostics{at("four", 4, 10), at("three-b", 3, 11), at("two", 2, 12), at("three-c", 3, 11), at("three-a", 3, 2)}
	var out bytes.Buffer
	printDiags(&out, nil, diags)
	var got []string
	for _, m := range positionRe.FindAllStringSubmatch(out.String(), -1) {
		got = append(got, m[4])
	}
	if want := "two three-a three-b three-c four"; strings.Join(got, " ") != want {
		t.Errorf("printed %v, want %s", got, want)
	}
	if diags[0].Summary != "four" {
		t.Error("printDiags reordered its caller's diagnostics")
	}

	var many hcl.Diagnostics
	for i := maxPrintedDiags + 5; i >= 1; i-- {
		many = append(many, at("d"+strconv.Itoa(i), i, 1))
	}
	out.Reset()
	printDiags(&out, nil, many)
	pos := printedPositions(t, out.String())
	if len(pos) != maxPrintedDiags || pos[0][0] != 1 || pos[len(pos)-1][0] != maxPrintedDiags {
		t.Errorf("printed lines %v, want 1 to %d", pos, maxPrintedDiags)
	}
}

// golb run reported a group's unknown driver only once every other error
// in the file was fixed: it now reads the file as validate does.
func TestRunReportsUnknownDriverWithOtherErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.hcl")
	src := "group \"a\" {\n  driver = \"nosuch\"\n  count = -1\n  port = 16990\n}\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := cmdRun([]string{path}, &stdout, &stderr); code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	out := stderr.String()
	t.Logf("\n%s", out)
	if got, want := printedPositions(t, out), [][2]int{{2, 12}, {3, 11}}; !slices.Equal(got, want) {
		t.Errorf("diagnostics at %v, want %v", got, want)
	}
	if !strings.Contains(out, "not starting: fix the config first") {
		t.Errorf("no \"not starting\" line in %q", out)
	}
}

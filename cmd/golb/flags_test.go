package main

import (
	"flag"
	"io"
	"slices"
	"testing"
)

func TestFlagsFirst(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Bool("json", false, "")
	fs.String("admin", "", "")
	for _, tc := range []struct{ in, want []string }{
		{[]string{"hello", "3", "--admin", "A"}, []string{"--admin", "A", "hello", "3"}},
		{[]string{"--json", "hello"}, []string{"--json", "hello"}},
		{[]string{"hello", "--json", "3"}, []string{"--json", "hello", "3"}},
		{[]string{"hello", "--admin=A"}, []string{"--admin=A", "hello"}},
		{[]string{"a", "--", "--admin", "b"}, []string{"a", "--", "--admin", "b"}},
		{[]string{"-", "x"}, []string{"-", "x"}},
		{[]string{"--nope", "x"}, []string{"--nope", "x"}},
		{[]string{"hello", "-1", "--json"}, []string{"--json", "hello", "-1"}}, // a negative count is an argument
		{[]string{"-1", "hello"}, []string{"--", "-1", "hello"}},
	} {
		if got := flagsFirst(fs, tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("flagsFirst(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSeedRows(t *testing.T) {
	raw := []byte(`{"SuccessfulRequests":[{"total":3},{"w1":2},{"w2":1}],"FailedRequests":[{"total":1},{"w1":0},{"w2":1}],"TotalRequests":[{"total":4},{"w1":2},{"w2":2}],"AverageResponseTime":[{"total":12.5},{"w1":10},{"w2":15}]}`)
	rows, err := seedRows(raw)
	if err != nil || len(rows) != 3 {
		t.Fatalf("seedRows: %v %v", rows, err)
	}
	if last := rows[2]; last.id != "total" || last.ok != 3 || last.failed != 1 || last.total != 4 || last.mean != 12.5 {
		t.Fatalf("total row = %+v", last)
	}
	if rows[0].id != "w1" && rows[0].id != "w2" {
		t.Fatalf("first row = %+v", rows[0])
	}
}

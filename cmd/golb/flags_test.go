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

// TestOptionalAdminFlag: `golb drivers --admin [ADDR]` takes the address
// when one follows, and stands alone before a file name or at the end.
func TestOptionalAdminFlag(t *testing.T) {
	for _, tc := range []struct {
		in        []string
		set       bool
		addr, arg string
	}{
		{[]string{"--admin"}, true, "D:1", ""},
		{[]string{"--admin", "127.0.0.1:6000"}, true, "127.0.0.1:6000", ""},
		{[]string{"--admin=localhost:7"}, true, "localhost:7", ""},
		{[]string{"--admin", "golb.hcl"}, true, "D:1", "golb.hcl"},
		{[]string{"golb.hcl", "--admin"}, true, "D:1", "golb.hcl"},
		{[]string{"--json", "--admin", ":5040", "--json"}, true, ":5040", ""},
		{[]string{"golb.hcl"}, false, "D:1", "golb.hcl"},
	} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Bool("json", false, "")
		admin := optionalFlag(fs, "admin", "D:1", "", isAddress)
		if err := fs.Parse(flagsFirst(fs, tc.in)); err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if admin.set != tc.set || admin.value != tc.addr || fs.Arg(0) != tc.arg {
			t.Errorf("%q: set %v, address %q, argument %q; want %v, %q, %q", tc.in, admin.set, admin.value, fs.Arg(0), tc.set, tc.addr, tc.arg)
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

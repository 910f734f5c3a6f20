package drivers

import (
	"strings"
	"testing"
	"unicode/utf8"

	gproto "google.golang.org/protobuf/proto"

	"github.com/golb/golb/drivers/proto"
)

func TestTrimOutput(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"blank lines only", "\n \n\t\r\n", ""},
		{"one line", "golb worker: bad setting\n", "golb worker: bad setting"},
		{"keeps the last five non-blank lines", "1\n2\n3\n\n4\n5\n6\n7\n\n", "3\n4\n5\n6\n7"},
		{"trailing spaces and CRs go", "a  \r\nb\t\r\n", "a\nb"},
		{"terminal escapes go", "\x1b[31merror:\x1b[0m boom\a\n", "error: boom"},
		{"invalid UTF-8 is replaced", "bad \xff byte\n", "bad \uFFFD byte"},
	} {
		if got := TrimOutput([]byte(tc.in)); got != tc.want {
			t.Errorf("%s: TrimOutput(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}

	// Long output keeps its end, within the byte bound, on a rune boundary.
	long := strings.Repeat("é", 400) + "\n" + strings.Repeat("x", 300) + " the end\n"
	got := TrimOutput([]byte(long))
	if len(got) > MaxOutputBytes || !utf8.ValidString(got) || !strings.HasPrefix(got, "…") || !strings.HasSuffix(got, "x the end") {
		t.Fatalf("TrimOutput of %d bytes = %q (%d bytes): want its valid UTF-8 end within %d bytes, marked cut", len(long), got, len(got), MaxOutputBytes)
	}
}

func TestExitResultString(t *testing.T) {
	for _, tc := range []struct {
		res  ExitResult
		want string
	}{
		{ExitResult{ExitCode: 2}, "exit code 2"},
		{ExitResult{ExitCode: 2, Output: "starting\ngolb worker: GOLB_FAILURE_RATE \"bogus\": not a number"}, `exit code 2: golb worker: GOLB_FAILURE_RATE "bogus": not a number`},
		{ExitResult{ExitCode: -1, Signal: 6, Output: "last words\n"}, "killed by signal 6: last words"},
		// Killed by someone else: its last line is routine, not a reason.
		{ExitResult{ExitCode: -1, Signal: 9, Output: "worker listening\n"}, "killed by signal 9"},
		{ExitResult{ExitCode: -1, Signal: 15, Output: "worker listening\n"}, "killed by signal 15"},
		{ExitResult{ExitCode: -1, Err: "exit status unknown", Output: "  \n"}, "error: exit status unknown"},
	} {
		if got := tc.res.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.res, got, tc.want)
		}
	}
	long := ExitResult{ExitCode: 1, Output: strings.Repeat("ü", 300)}.String()
	if len(long) > len("exit code 1: ")+maxNoteLine || !utf8.ValidString(long) || !strings.HasSuffix(long, "…") || strings.Contains(long, "\n") {
		t.Fatalf("String of a long output = %q (%d bytes): want one valid line cut to %d bytes", long, len(long), maxNoteLine)
	}
}

// TestExitOutputSurvivesTheWire pins that Output crosses gRPC both ways, and
// that output which is not valid UTF-8 (a driver that did not use
// TrimOutput) cannot make the reply fail to marshal.
func TestExitOutputSurvivesTheWire(t *testing.T) {
	res := ExitResult{ExitCode: 2, Output: "golb worker: bad setting"}
	if got := exitFromProto(exitToProto(&res)); got == nil || *got != res {
		t.Fatalf("round trip of %+v = %+v", res, got)
	}
	bad := &proto.WaitResponse{Result: exitToProto(&ExitResult{ExitCode: 1, Output: "raw \xff bytes"})}
	raw, err := gproto.Marshal(bad)
	if err != nil {
		t.Fatalf("marshalling an exit result with invalid UTF-8 output: %v", err)
	}
	var back proto.WaitResponse
	if err := gproto.Unmarshal(raw, &back); err != nil || back.Result.Output != "raw \uFFFD bytes" {
		t.Fatalf("unmarshalled %q, %v", back.Result.GetOutput(), err)
	}
}

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
		// A routine log line is no reason, even the last one.
		{ExitResult{ExitCode: 0, Output: `time=2026-12-01T22:30:46Z level=INFO msg="worker stopped"`}, "exit code 0"},
		{ExitResult{ExitCode: 1, Output: "level=ERROR msg=\"db down\"\nlevel=INFO msg=\"shutting down\""}, `exit code 1: level=ERROR msg="db down"`},
		{ExitResult{ExitCode: 2, Output: "2026/12/01 22:30:46 INFO listening\n{\"level\":\"info\",\"msg\":\"bye\"}"}, "exit code 2"},
		// A panic's first line is the reason, wherever it is.
		{ExitResult{ExitCode: 2, Output: "panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/src/main.go:9 +0x25"}, "exit code 2: panic: boom"},
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

// TestReattachedExitIsNotItsLastInfoLine pins a bug: a re-attached worker
// that died (exit status unknown: not our child) was reported as
// `exit code -1: time=… msg="worker listening"`, its routine start-up line
// taken for the reason.
func TestReattachedExitIsNotItsLastInfoLine(t *testing.T) {
	for _, tc := range []struct {
		output, want string
	}{
		{`time=2026-12-01T22:30:46Z level=INFO msg="worker listening" addr=127.0.0.1:6000`, "exit status unknown (not our child)"},
		{"listening on 127.0.0.1:6000", "exit status unknown (not our child)"},
		{"", "exit status unknown (not our child)"},
		{"fatal: lost my database", "exit status unknown (not our child): fatal: lost my database"},
		{`level=ERROR msg="db down"` + "\n" + `level=INFO msg="retrying"`, `exit status unknown (not our child): level=ERROR msg="db down"`},
		{"panic: boom\n\ngoroutine 1 [running]:", "exit status unknown (not our child): panic: boom"},
	} {
		if got := (ExitResult{ExitCode: -1, Output: tc.output}).String(); got != tc.want {
			t.Errorf("output %q: String() = %q, want %q", tc.output, got, tc.want)
		}
	}
}

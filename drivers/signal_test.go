package drivers

import (
	"errors"
	"syscall"
	"testing"
)

// Regression: golb's config, the process driver and the docker driver each
// kept a list of stop signals, and they disagreed (docker took "15", the
// config refused it). There is one list now: every name it gives parses, in
// any case and without SIG, back to the signal SignalName names; anything
// else is ErrBadConfig.
func TestStopSignalsAreOneList(t *testing.T) {
	names := StopSignals()
	if len(names) == 0 || names[0] != "SIGTERM" {
		t.Fatalf("StopSignals() = %v, want SIGTERM first", names)
	}
	for _, name := range names {
		sig, err := ParseSignal(name)
		if err != nil {
			t.Fatalf("ParseSignal(%q): %v", name, err)
		}
		if got := SignalName(sig); got != name {
			t.Errorf("SignalName(ParseSignal(%q)) = %q", name, got)
		}
		for _, alt := range []string{name[len("SIG"):], "sig" + name[len("SIG"):], "Sig" + name[len("SIG"):]} {
			if s, err := ParseSignal(alt); err != nil || s != sig {
				t.Errorf("ParseSignal(%q) = %v, %v; want %v", alt, s, err, sig)
			}
		}
	}
	if sig, err := ParseSignal(""); err != nil || sig != syscall.SIGTERM {
		t.Errorf(`ParseSignal("") = %v, %v; want SIGTERM`, sig, err)
	}
	for _, name := range []string{"SIG", "SIGSTOP", "STOP", "SIGSIGTERM", "15", "9", "-15", " TERM", "TERM "} {
		if sig, err := ParseSignal(name); !errors.Is(err, ErrBadConfig) {
			t.Errorf("ParseSignal(%q) = %v, %v; want ErrBadConfig", name, sig, err)
		}
	}
	if got := SignalName(syscall.SIGSEGV); got != "11" {
		t.Errorf("SignalName(SIGSEGV) = %q, want its number", got)
	}
}

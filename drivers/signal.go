package drivers

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
)

// stopSignals are the signals a worker may be stopped with: the one list
// that golb's config (stop_signal), the built-in drivers' Stop and external
// drivers read, through StopSignals, ParseSignal and SignalName. The order
// is the one messages list them in.
var stopSignals = []struct {
	name string
	sig  syscall.Signal
}{
	{"SIGTERM", syscall.SIGTERM},
	{"SIGINT", syscall.SIGINT},
	{"SIGQUIT", syscall.SIGQUIT},
	{"SIGHUP", syscall.SIGHUP},
	{"SIGUSR1", syscall.SIGUSR1},
	{"SIGUSR2", syscall.SIGUSR2},
	{"SIGKILL", syscall.SIGKILL},
}

// StopSignals returns the names of the signals Driver.Stop accepts, e.g.
// "SIGTERM", in a fixed order.
func StopSignals() []string {
	names := make([]string, len(stopSignals))
	for i, s := range stopSignals {
		names[i] = s.name
	}
	return names
}

// ParseSignal reads a stop signal as Driver.Stop takes it: "" is SIGTERM,
// and each name of StopSignals is accepted in any case, with or without its
// SIG prefix ("term", "SIGTERM"). Any other name, and a number, is an error
// wrapping ErrBadConfig.
func ParseSignal(name string) (syscall.Signal, error) {
	if name == "" {
		return syscall.SIGTERM, nil
	}
	u := strings.ToUpper(name)
	for _, s := range stopSignals {
		if u == s.name || "SIG"+u == s.name {
			return s.sig, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown signal %q (known: %s)", ErrBadConfig, name, strings.Join(StopSignals(), ", "))
}

// SignalName is the name StopSignals gives sig, e.g. "SIGTERM"; a signal
// that is not a stop signal gives its number.
func SignalName(sig syscall.Signal) string {
	for _, s := range stopSignals {
		if s.sig == sig {
			return s.name
		}
	}
	return strconv.Itoa(int(sig))
}

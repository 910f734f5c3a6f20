package drivertest

import (
	"net"
	"testing"
)

// TestFreePortAsksTheKernel pins that FreePort no longer draws from a fixed
// 7000-9999 range, where suites run side by side clashed.
func TestFreePortAsksTheKernel(t *testing.T) {
	p := FreePort(t)
	if err := portFree(p); err != nil {
		t.Fatalf("FreePort gave %d, which cannot be bound: %v", p, err)
	}
}

func TestFreePortInSkipsTakenPorts(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	tp := taken.Addr().(*net.TCPAddr).Port
	other := tp + 1
	if tp == 65535 {
		other = tp - 1
	}
	if portFree(other) != nil {
		t.Skipf("port %d beside the taken one is in use too", other)
	}
	r := PortRange{First: min(tp, other), Last: max(tp, other)}
	for range 10 { // the start is random: each time, the free one
		if got := FreePortIn(t, r); got != other {
			t.Fatalf("FreePortIn(%v) = %d, want %d (%d is taken)", r, got, other, tp)
		}
	}
}

package testutil

import (
	"net"
	"os"
	"strconv"
	"testing"
)

func TestPortRangeIsFreeAndInBounds(t *testing.T) {
	a, b := PortRange(t, 12000, 12100, 5), PortRange(t, 12000, 12100, 5)
	for _, base := range []int{a, b} {
		if base < 12000 || base+5 > 12100 {
			t.Fatalf("range %d-%d outside 12000-12099", base, base+4)
		}
	}
	if a == b {
		t.Fatalf("two calls gave the same range %d", a)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(a))
	if err != nil {
		t.Fatalf("port %d from PortRange cannot be bound: %v", a, err)
	}
	l.Close()
}

func TestAlive(t *testing.T) {
	if !Alive(os.Getpid()) || Alive(1<<22+1) {
		t.Fatal("Alive is wrong about this process or a pid that cannot exist")
	}
}

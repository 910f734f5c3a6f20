//go:build !linux

package balancer

import (
	"io"
	"net"
	"time"
)

// newRawIO returns nc: raw system calls (and the write stall bound) are
// used on Linux only.
func newRawIO(nc net.Conn, _ time.Duration) io.ReadWriter { return nc }

// writeWithin writes p on rw, waiting at most d for a full socket.
func writeWithin(rw io.ReadWriter, nc net.Conn, p []byte, d time.Duration) (int, error) {
	_ = nc.SetWriteDeadline(time.Now().Add(d))
	defer func() { _ = nc.SetWriteDeadline(time.Time{}) }()
	return rw.Write(p)
}

// peerClosed cannot tell without raw system calls: it says no.
func peerClosed(io.ReadWriter) bool { return false }

// sentBytes cannot tell: ok is false.
func sentBytes(io.ReadWriter) (int64, bool) { return 0, false }

// silent cannot tell without raw system calls: it says yes.
func silent(io.ReadWriter) bool { return true }

// waitReadable returns at once: the next read waits instead.
func waitReadable(io.ReadWriter) error { return nil }

// ask sends nothing: the caller writes and reads as usual.
func ask(io.ReadWriter, []byte) (int, error) { return 0, nil }

package balancer

import (
	"io"
	"net"
	"syscall"
	"time"
	"unsafe"
)

// rawIO reads and writes a TCP connection's non-blocking socket with raw
// system calls, waiting through the runtime's poller (RawConn) only when
// the socket is not ready. A read or write of a loopback socket takes
// longer than the scheduler's 20 µs syscall threshold while other
// connections' goroutines wait, so net.Conn's calls had the runtime hand
// the processor to another thread on most requests: measured on one core,
// 0.26 context switches per proxied request against HAProxy's 0.07, and
// about 8 µs more CPU per request. The calls never block, so the runtime
// need not know of them. recvfrom and sendto (with MSG_NOSIGNAL: a closed
// peer is an EPIPE error, not a signal) skip the file layer of read and
// write.
type rawIO struct {
	rc      syscall.RawConn
	p       []byte
	n       int
	errno   syscall.Errno
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
	peekFn  func(fd uintptr) bool
	peek    [1]byte
	peeked  bool // peekFn looked once: its next call means "readable"
	askFn   func(fd uintptr) bool
	asked   bool             // askFn sent all of p: its next call means "readable"
	nowFn   func(fd uintptr) // peekNow's, made once: a closure per call would escape
	nowN    int
	nowErr  syscall.Errno

	nc    net.Conn
	stall time.Duration
	armed bool  // a write deadline is set
	sent  int64 // bytes written, for sentBytes
}

// newRawIO returns a reader and writer for nc: a rawIO for a TCP
// connection, nc itself for anything else.
//
// A write that finds the socket full (the peer reads nothing) waits at most
// stall, then fails with a timeout: the deadline is set only then, so a
// write that goes through at once costs no timer.
func newRawIO(nc net.Conn, stall time.Duration) io.ReadWriter {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nc
	}
	r := &rawIO{rc: rc, nc: nc, stall: stall}
	r.readFn = func(fd uintptr) bool {
		for {
			n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(r.p))), uintptr(len(r.p)), 0, 0, 0)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait in the poller, then call again
			}
			r.n, r.errno = int(n), e
			return true
		}
	}
	r.writeFn = func(fd uintptr) bool {
		for len(r.p) > 0 {
			n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(r.p))), uintptr(len(r.p)), syscall.MSG_NOSIGNAL, 0, 0)
			switch e {
			case 0:
				r.n += int(n)
				r.p = r.p[n:]
				continue
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				if !r.armed && r.stall > 0 {
					r.armed = true
					_ = r.nc.SetWriteDeadline(time.Now().Add(r.stall))
				}
				return false
			}
			r.errno = e
			return true
		}
		return true
	}
	r.peekFn = func(fd uintptr) bool {
		if r.peeked {
			return true // the poller saw the socket readable: the read will tell
		}
		r.peeked = true
		for {
			_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&r.peek[0])), 1, syscall.MSG_PEEK, 0, 0)
			if e != syscall.EINTR {
				return e != syscall.EAGAIN
			}
		}
	}
	r.askFn = func(fd uintptr) bool {
		if r.asked {
			return true // the poller saw the socket readable
		}
		for len(r.p) > 0 {
			n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(r.p))), uintptr(len(r.p)), syscall.MSG_NOSIGNAL, 0, 0)
			switch e {
			case 0:
				r.n += int(n)
				r.p = r.p[n:]
				continue
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return true // the socket is full: the caller writes the rest
			}
			r.errno = e
			return true
		}
		r.asked = true
		return false // all sent: wait in the poller until the answer comes
	}
	r.nowFn = func(fd uintptr) {
		for r.nowErr = syscall.EINTR; r.nowErr == syscall.EINTR; {
			n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&r.peek[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
			r.nowN, r.nowErr = int(n), e
		}
	}
	return r
}

func (r *rawIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.p, r.n, r.errno = p, 0, 0
	err := r.rc.Read(r.readFn)
	r.p = nil
	switch {
	case err != nil:
		return 0, err // a deadline, or the connection closed
	case r.errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: r.errno}
	case r.n == 0:
		return 0, io.EOF
	}
	return r.n, nil
}

func (r *rawIO) Write(p []byte) (int, error) {
	r.p, r.n, r.errno = p, 0, 0
	err := r.rc.Write(r.writeFn)
	r.p = nil
	if r.armed {
		r.armed = false
		_ = r.nc.SetWriteDeadline(time.Time{})
	}
	n := r.n
	r.sent += int64(n)
	switch {
	case err != nil:
		return n, err
	case r.errno != 0:
		return n, &net.OpError{Op: "write", Net: "tcp", Err: r.errno}
	}
	return n, nil
}

// writeWithin writes p on rw, waiting at most d for a full socket (a
// client that reads nothing of golb's own answer). A rawIO's own stall
// bound gives way to d for this write: a deadline set on nc would be
// replaced by it.
func writeWithin(rw io.ReadWriter, nc net.Conn, p []byte, d time.Duration) (int, error) {
	r, ok := rw.(*rawIO)
	if !ok {
		_ = nc.SetWriteDeadline(time.Now().Add(d))
		defer func() { _ = nc.SetWriteDeadline(time.Time{}) }()
		return rw.Write(p)
	}
	stall := r.stall
	r.stall = d
	defer func() { r.stall = stall }()
	return r.Write(p)
}

// ask sends p on rw (a rawIO) and waits until the socket has something to
// read (the answer, or the peer's close), or its read deadline passes. It
// saves the read that would find nothing yet: the send happens inside the
// poller's read call, after the poller forgot the socket's earlier
// readiness, so the answer's arrival cannot be missed (which is also why
// it is for a peer that sends nothing unasked, a worker). n is how much of
// p was sent; when n < len(p) and err is nil, the socket was full (or rw
// is not a rawIO) and the caller writes the rest itself and reads as
// usual.
func ask(rw io.ReadWriter, p []byte) (n int, err error) {
	r, ok := rw.(*rawIO)
	if !ok {
		return 0, nil
	}
	r.p, r.n, r.errno, r.asked = p, 0, 0, false
	err = r.rc.Read(r.askFn)
	r.p = nil
	n = r.n
	switch {
	case err != nil:
		return n, err // a deadline, or the connection closed
	case r.errno != 0:
		return n, &net.OpError{Op: "write", Net: "tcp", Err: r.errno}
	}
	return n, nil
}

// peerClosed reports whether the peer of rw (a rawIO) has closed or reset
// the connection, without consuming any byte it sent: a one-byte
// MSG_PEEK that does not wait.
func peerClosed(rw io.ReadWriter) bool {
	n, e, ok := peekNow(rw)
	return ok && (e == 0 && n == 0 || e != 0 && e != syscall.EAGAIN)
}

// sentBytes is how many bytes Write has sent on rw (a rawIO); ok is false
// for another writer.
func sentBytes(rw io.ReadWriter) (n int64, ok bool) {
	r, ok := rw.(*rawIO)
	if !ok {
		return 0, false
	}
	return r.sent, true
}

// silent reports whether rw (a rawIO) has nothing to read: no byte, no
// close, no error. An idle pooled worker connection must be silent to be
// reused: a byte there is one its worker sent unasked (more than its
// answer's framing said, a body after a HEAD answer), which the next
// request would read as the start of its own answer. Another reader is
// taken as silent.
func silent(rw io.ReadWriter) bool {
	_, e, ok := peekNow(rw)
	return !ok || e == syscall.EAGAIN
}

// peekNow is a one-byte MSG_PEEK on rw (a rawIO) that does not wait: n and
// errno are recvfrom's. ok is false for another reader.
func peekNow(rw io.ReadWriter) (n int, errno syscall.Errno, ok bool) {
	r, ok := rw.(*rawIO)
	if !ok {
		return 0, 0, false
	}
	r.nowN, r.nowErr = 0, syscall.EBADF // what a Control refused (closed) leaves
	_ = r.rc.Control(r.nowFn)
	return r.nowN, r.nowErr, true
}

// waitReadable blocks until rw (a rawIO) has bytes to read, its peer
// closed, or its read deadline passed, without holding a buffer. For any
// other reader it returns at once.
func waitReadable(rw io.ReadWriter) error {
	r, ok := rw.(*rawIO)
	if !ok {
		return nil
	}
	r.peeked = false
	return r.rc.Read(r.peekFn)
}

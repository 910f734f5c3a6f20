package balancer

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// splice relays an upgraded connection (a 101 answer, e.g. WebSocket)
// both ways until either side closes, or neither side sends a byte for
// TunnelIdleTimeout.
func (c *clientConn) splice(uc *upstream, r *reqInfo) {
	defer c.b.closeConn(uc)
	out := responseHead(c.scratch[:0], &uc.head, frameNone, r.minor, false, true)
	c.scratch = out
	uc.rd.Discard(uc.headLen)
	_ = c.nc.SetDeadline(time.Time{})
	_ = uc.nc.SetDeadline(time.Time{})
	if _, err := c.nc.Write(out); err != nil {
		return
	}
	if p := uc.rd.Buffered(); len(p) > 0 {
		if _, err := c.nc.Write(p); err != nil {
			return
		}
		uc.rd.Discard(len(p))
	}
	if p := c.rd.Buffered(); len(p) > 0 {
		if _, err := uc.nc.Write(p); err != nil {
			return
		}
		c.rd.Discard(len(p))
	}
	c.rd.Release()
	uc.rd.Release()
	conf := c.b.conf()
	t := &tunnel{start: time.Now(), idle: conf.TunnelIdleTimeout, stall: conf.IdleTimeout}
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.pipe(c.nc, uc.nc, uc.io)
	}()
	t.pipe(uc.nc, c.nc, c.io)
	<-done
}

// tunnel is the state both directions of an upgraded connection share.
type tunnel struct {
	start time.Time
	idle  time.Duration // TunnelIdleTimeout
	stall time.Duration // IdleTimeout: the longest a write waits on a side that reads nothing
	last  atomic.Int64  // when either side last sent a byte, as nanoseconds since start
}

// errTunnelIdle ends a tunnel in which neither side sent a byte for
// TunnelIdleTimeout.
var errTunnelIdle = errors.New("tunnel idle")

// tunnelBufSize is the most one read of a tunnel moves. The buffer is
// held only while bytes are on their way: a waiting tunnel holds none.
const tunnelBufSize = 32 << 10

var tunnelBufs = sync.Pool{New: func() any { return new([tunnelBufSize]byte) }}

// pipe copies what src sends into dst until src ends, either connection
// breaks, or the tunnel is idle. srcIO is src's reader (a rawIO), used by
// this direction alone, to wait for bytes without holding a buffer.
func (t *tunnel) pipe(dst, src net.Conn, srcIO io.ReadWriter) {
	_ = src.SetReadDeadline(time.Now().Add(t.idle))
	for {
		err := waitReadable(srcIO)
		var werr error
		if err == nil {
			err, werr = t.move(dst, src)
		}
		switch {
		case werr != nil:
			err = werr // dst broke, or read nothing for stall
		case err == nil:
			continue
		case err == io.EOF:
			endTunnel(nil, dst, src)
			return
		case isTimeout(err):
			// This side was quiet for a while; the tunnel is idle only if
			// the other one was too.
			quiet := time.Since(t.start) - time.Duration(t.last.Load())
			if quiet < t.idle {
				_ = src.SetReadDeadline(time.Now().Add(t.idle - quiet))
				continue
			}
			err = errTunnelIdle
		}
		endTunnel(err, dst, src)
		return
	}
}

// move makes one read of src and writes what came into dst, which may
// wait at most stall for a side that reads nothing.
func (t *tunnel) move(dst, src net.Conn) (rerr, werr error) {
	buf := tunnelBufs.Get().(*[tunnelBufSize]byte)
	defer tunnelBufs.Put(buf)
	n, rerr := src.Read(buf[:])
	if n == 0 {
		return rerr, nil
	}
	t.last.Store(int64(time.Since(t.start)))
	_ = dst.SetWriteDeadline(time.Now().Add(t.stall))
	_, werr = dst.Write(buf[:n])
	return rerr, werr
}

// endTunnel finishes the direction of a tunnel that copied from src into
// dst until err. A clean end (src's half-close) is passed on as dst's
// half-close; the other direction goes on until its own end. A broken end
// (a reset, a stalled write, an idle tunnel) closes both connections, so
// that the other direction's copy does not wait on, holding a worker
// connection and the request's in-flight count, for a peer that is gone.
func endTunnel(err error, dst, src net.Conn) {
	if err != nil {
		_ = dst.Close()
		_ = src.Close()
		return
	}
	closeWrite(dst)
}

func closeWrite(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

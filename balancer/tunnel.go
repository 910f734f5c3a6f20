package balancer

import (
	"io"
	"net"
	"time"
)

// splice relays an upgraded connection (a 101 answer, e.g. WebSocket)
// both ways until either side closes.
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
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := io.Copy(c.nc, uc.nc)
		endTunnel(err, c.nc, uc.nc)
	}()
	_, err := io.Copy(uc.nc, c.nc)
	endTunnel(err, uc.nc, c.nc)
	<-done
}

// endTunnel finishes the direction of a tunnel that copied from src into
// dst until err. A clean end (src's half-close) is passed on as dst's
// half-close; the other direction goes on until its own end. A broken end
// (a reset) closes both connections, so that the other direction's copy
// does not wait on, holding a worker connection and the request's
// in-flight count, for a peer that is gone.
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

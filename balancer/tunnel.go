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
		_, _ = io.Copy(c.nc, uc.nc)
		closeWrite(c.nc)
	}()
	_, _ = io.Copy(uc.nc, c.nc)
	closeWrite(uc.nc)
	<-done
}

func closeWrite(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

package balancer

import (
	"io"
	"net"
	"time"
)

// aLongTimeAgo is a deadline that has passed: setting it wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// watcher notices a client that hangs up while its request waits for a
// slow worker, so that the attempt is abandoned (and not counted as the
// worker's) instead of waited for. It is started only once a worker has
// taken watchAfter to answer: fast answers cost nothing. A byte the client
// sends meanwhile (a pipelined request) is kept for the next read.
type watcher struct {
	on   bool
	gone bool // the client hung up; read after stop
	done chan struct{}
	buf  [1]byte
	n    int
}

func (w *watcher) start(c *clientConn, uc *upstream) {
	w.on = true
	w.done = make(chan struct{})
	c.setReadDeadline(time.Time{})
	go func() {
		defer close(w.done)
		n, err := c.nc.Read(w.buf[:])
		w.n = n
		if n == 0 && err != nil && !isTimeout(err) {
			w.gone = true
			_ = uc.nc.SetReadDeadline(aLongTimeAgo)
		}
	}()
}

// stop ends the watch and waits for it.
func (w *watcher) stop(c *clientConn) {
	if !w.on {
		return
	}
	w.on = false
	c.setReadDeadline(aLongTimeAgo)
	<-w.done
	if w.n > 0 {
		c.rd.Unread(w.buf[:w.n])
		w.n = 0
	}
}

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

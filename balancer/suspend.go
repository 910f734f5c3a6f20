package balancer

import (
	"errors"
	"time"
)

// This file is how a request that waits for its worker's answer, while
// many connections are open, lets go of its goroutine's stack.
//
// A connection's goroutine runs the whole proxy path, whose frames take
// it past the 2 KiB a goroutine starts with: Go gives it 4 KiB, and never
// shrinks a stack a waiting goroutine uses more than a quarter of. At
// 5,000 connections held on 10 s workers that was 20 MiB of stacks, a
// quarter of golb's memory. So once the balancer is busy (busyConns,
// forward.go), a request sent is suspended: its state is in the
// clientConn already (c.req, c.x, c.watch, c.susp), the goroutine unwinds
// and exits, and a new one, whose stack stays at 2 KiB, waits for the
// answer and then goes on with the request and the connection. It costs
// a goroutine's start per request, which only a busy balancer pays.
// Measured with `go test -run - -bench HeldConns -benchtime 1x ./balancer`.

// errSuspend is readResponse giving the rest of its wait to resume.
var errSuspend = errors.New("attempt suspended")

// suspension is what a suspended attempt goes on from (besides c.req,
// c.x and c.watch).
type suspension struct {
	uc    *upstream
	start time.Time // the attempt's, for its latency
	fresh bool      // uc is the attempt's second connection
}

// suspend records the attempt waiting on uc, for resume.
func (c *clientConn) suspend(uc *upstream, start time.Time, fresh bool) {
	c.susp = suspension{uc: uc, start: start, fresh: fresh}
	c.suspended = true
}

// resume runs on a new goroutine: it waits for the suspended attempt's
// answer, then goes on with the request and the connection.
func (c *clientConn) resume() {
	c.suspended = false
	s := c.susp
	c.susp = suspension{}
	err := c.awaitAnswer(s.uc)
	x, r := &c.x, &c.req
	retry, keep := c.forward(x, r, x.be, s.uc, s.start, s.fresh, &err)
	if retry {
		c.logRetry(x, x.be)
		keep = c.attempts(x, r, time.Now())
	}
	switch {
	case c.suspended:
		go c.resume()
	case keep && c.nextRequest():
		c.run()
	default:
		c.close()
	}
}

// awaitAnswer waits until uc is readable, checking the client on the
// watch's schedule, and returns what readResponse's own wait would have:
// nil once there is something to read.
func (c *clientConn) awaitAnswer(uc *upstream) error {
	for {
		err := waitReadable(uc.io)
		if err == nil || !isTimeout(err) {
			return err
		}
		if err = c.tick(uc, err); err != nil {
			return err
		}
	}
}

// awaitRequest runs on a new goroutine: it waits for a kept-alive
// connection's next request, then serves the connection on.
func (c *clientConn) awaitRequest() {
	c.suspended = false
	if err := waitReadable(c.io); err != nil {
		c.close() // the idle timeout, or the client or Shutdown closed it
		return
	}
	c.woken = true
	c.run()
}

package balancer

import (
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/golb/golb/balancer/h1"
)

// This file streams a request body from the client to the worker, framed
// anew, and tells a client's broken or stalled body (400, 408: the
// client's fault, no worker charged) from a worker that stopped taking it.

// sendBody streams the client's body to the worker, re-framed: with its
// Content-Length, or chunked anew. clientErr is the client's fault (a
// broken or stalled body), err the worker's (a failed write).
func (c *clientConn) sendBody(uc *upstream, r *reqInfo) (clientErr, err error) {
	if r.expect100 {
		if _, err := c.io.Write(continue100); err != nil {
			return err, nil
		}
	}
	bt := c.bodyTimer()
	defer func() { r.bodyWait = bt.waited }()
	if r.body == h1.BodyLength {
		left := r.length
		for left > 0 {
			if c.rd.Len() == 0 {
				if err := c.fillBody(&bt); err != nil {
					return err, nil
				}
			}
			p := c.rd.Buffered()
			if int64(len(p)) > left {
				p = p[:left]
			}
			if _, err := uc.io.Write(p); err != nil {
				return nil, err
			}
			c.rd.Discard(len(p))
			bt.read += int64(len(p))
			left -= int64(len(p))
		}
		r.bodyLeft = false
		return nil, nil
	}
	// The chunks of one read go out in one write: a client's 1-byte
	// chunks cost golb one write per 6 bytes, and the worker a segment
	// each, before. What is pending is at most what one read brought.
	var ch h1.Chunked
	ch.MaxTrailer = maxTrailer
	out := c.scratch[:0]
	defer func() { c.scratch = out[:0] }()
	for {
		data, trailer, err := ch.Step(&c.rd)
		switch {
		case err == h1.ErrNeedMore:
			if len(out) > 0 {
				if _, err := uc.io.Write(out); err != nil {
					return nil, err
				}
				out = out[:0]
			}
			if err := c.fillBody(&bt); err != nil {
				return err, nil
			}
			continue
		case err != nil:
			return err, nil
		case ch.Done():
			out = append(out, "0\r\n"...)
			out = appendTrailer(out, trailer)
			out = append(out, "\r\n"...)
			r.bodyLeft = false
			if _, err := uc.io.Write(out); err != nil {
				return nil, err
			}
			return nil, nil
		}
		bt.read += int64(len(data))
		out = strconv.AppendInt(out, int64(len(data)), 16)
		out = append(out, "\r\n"...)
		out = append(out, data...)
		out = append(out, "\r\n"...)
	}
}

var continue100 = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// bodyTimer bounds reading a request body: each read waits at most
// BodyReadTimeout, and once that grace has passed the body must have come
// at BodyMinRate bytes a second on average (so a client that trickles a
// byte every few seconds cannot hold two connections for ever).
type bodyTimer struct {
	start  time.Time
	read   int64
	waited time.Duration // in fillBody: how long the client kept golb waiting
}

func (c *clientConn) bodyTimer() bodyTimer { return bodyTimer{start: time.Now()} }

func (c *clientConn) fillBody(bt *bodyTimer) error {
	cfg := c.b.conf()
	now := time.Now()
	d := now.Add(cfg.BodyReadTimeout)
	if cfg.BodyMinRate > 0 {
		byRate := bt.start.Add(cfg.BodyReadTimeout + time.Duration(float64(bt.read)/float64(cfg.BodyMinRate)*float64(time.Second)))
		if byRate.Before(d) {
			d = byRate
		}
	}
	c.setReadDeadline(d)
	_, err := c.rd.Fill(2 * h1.BufSize)
	bt.waited += time.Since(now)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// maxTrailer bounds a chunked request body's trailer section: it must fit
// the body's read buffer (fillBody), whatever max_header_bytes says.
const maxTrailer = h1.BufSize

// errBodyLine is a chunked body's line (a trailer field) that does not fit
// the body's read buffer.
var errBodyLine = &h1.Error{Status: 400, Msg: "trailer section too large"}

// clientBodyFailed answers a request whose body the client broke off,
// stalled or framed wrongly; nothing is counted against the worker.
func (c *clientConn) clientBodyFailed(err error) bool {
	var he *h1.Error
	switch {
	case errors.As(err, &he):
		c.fail(err)
	case errors.Is(err, h1.ErrBufferFull):
		c.fail(errBodyLine)
	case isTimeout(err):
		c.b.clientErrors.Add(1)
		c.answer(408, "request body not received in time", true)
	default:
		c.b.clientErrors.Add(1) // the client went away mid-body: no one to answer
		c.b.log.Debug("client body broke off", "client", c.ip, "err", err)
	}
	return false
}

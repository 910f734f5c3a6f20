package balancer

import (
	"bufio"
	"io"
	"strconv"
	"time"

	"github.com/golb/golb/balancer/h1"
)

// This file relays a worker's response body to the client as it arrives
// (by Content-Length, chunked, or until the worker closes), re-framed for
// the client's HTTP version, and drains a body golb will not relay so that
// its connection can be reused.

// bodyWatch is how often a relay waiting for more of a worker's body
// checks that its client is still there.
const bodyWatch = time.Second

// bodyFillError sorts a failed read of the worker's body: the client gone
// is the client's (cerr), anything else the worker's (werr).
func bodyFillError(err error) (werr, cerr error) {
	if err == errClientGone {
		return nil, err
	}
	return err, nil
}

// copyBody relays the worker's body to the client as framing says. werr is
// the worker's failure (its body broke off or was framed wrongly), cerr
// the client's (it stopped reading).
func (c *clientConn) copyBody(bw *bufio.Writer, uc *upstream, body h1.BodyKind, framing respFraming) (werr, cerr error) {
	// fill waits for more of the body as long as the worker takes (a
	// stream may pause), but looks every bodyWatch whether the client is
	// still there: a worker stalled mid-body must not hold a request, its
	// in-flight count and a drain for ever after its client left.
	fill := func() error {
		for {
			_ = uc.nc.SetReadDeadline(time.Now().Add(bodyWatch))
			_, err := uc.rd.Fill(2 * h1.BufSize)
			if !isTimeout(err) {
				return err
			}
			if peerClosed(c.io) {
				return errClientGone
			}
		}
	}
	switch body {
	case h1.BodyLength:
		left := uc.head.ContentLength
		for left > 0 {
			if uc.rd.Len() == 0 {
				if err := bw.Flush(); err != nil {
					return nil, err
				}
				if err := fill(); err != nil {
					return bodyFillError(err)
				}
			}
			p := uc.rd.Buffered()
			if int64(len(p)) > left {
				p = p[:left]
			}
			if _, err := bw.Write(p); err != nil {
				return nil, err
			}
			uc.rd.Discard(len(p))
			left -= int64(len(p))
		}
	case h1.BodyChunked:
		var ch h1.Chunked
		for {
			data, trailer, err := ch.Step(&uc.rd)
			switch {
			case err == h1.ErrNeedMore:
				if err := bw.Flush(); err != nil {
					return nil, err
				}
				if err := fill(); err != nil {
					return bodyFillError(err)
				}
				continue
			case err != nil:
				return err, nil
			case ch.Done():
				if framing == frameChunked {
					_, _ = bw.WriteString("0\r\n")
					c.scratch = appendTrailer(c.scratch[:0], trailer)
					_, _ = bw.Write(c.scratch)
					_, cerr = bw.WriteString("\r\n")
				}
				return nil, cerr
			}
			if framing == frameChunked {
				var hex [16]byte
				_, _ = bw.Write(strconv.AppendInt(hex[:0], int64(len(data)), 16))
				_, _ = bw.WriteString("\r\n")
				_, _ = bw.Write(data)
				_, cerr = bw.WriteString("\r\n")
			} else {
				_, cerr = bw.Write(data)
			}
			if cerr != nil {
				return nil, cerr
			}
		}
	case h1.BodyToClose:
		for {
			if p := uc.rd.Buffered(); len(p) > 0 {
				if _, err := bw.Write(p); err != nil {
					return nil, err
				}
				uc.rd.Discard(len(p))
			}
			if err := bw.Flush(); err != nil {
				return nil, err
			}
			if err := fill(); err != nil {
				if err == io.EOF {
					return nil, nil
				}
				return bodyFillError(err)
			}
		}
	}
	return nil, nil
}

// discardBody reads and drops up to 64 KiB of a body, reporting whether it
// ended within that.
func (c *clientConn) discardBody(uc *upstream, body h1.BodyKind) bool {
	uc.rd.Discard(uc.headLen)
	_ = uc.nc.SetReadDeadline(time.Now().Add(time.Second))
	budget := 64 << 10
	switch body {
	case h1.BodyNone:
		return true
	case h1.BodyLength:
		left := uc.head.ContentLength
		for left > 0 && budget > 0 {
			if uc.rd.Len() == 0 {
				if _, err := uc.rd.Fill(h1.BufSize); err != nil {
					return false
				}
			}
			n := min(int64(uc.rd.Len()), left)
			uc.rd.Discard(int(n))
			left -= n
			budget -= int(n)
		}
		return left == 0
	case h1.BodyChunked:
		var ch h1.Chunked
		for budget > 0 {
			data, _, err := ch.Step(&uc.rd)
			switch {
			case err == h1.ErrNeedMore:
				if _, err := uc.rd.Fill(2 * h1.BufSize); err != nil {
					return false
				}
			case err != nil:
				return false
			case ch.Done():
				return true
			}
			budget -= len(data)
		}
	}
	return false
}

// Package h1 is the HTTP/1.1 framing golb's proxy engine needs, and nothing
// more: a buffered reader whose buffer goes back to a pool while a
// connection waits, strict parsing of request and response heads into
// slices of that buffer (no per-request allocation), the body-length rules
// of RFC 9112 §6 (the rules that stop request smuggling), and a streaming
// chunked decoder. It never interprets what the proxy forwards as is.
package h1

import (
	"errors"
	"io"
	"sync"
)

// BufSize is the size of a pooled read buffer: one read of a typical
// request or response head and a small body.
const BufSize = 4 << 10

var bufPool = sync.Pool{New: func() any { return new([BufSize]byte) }}

// ErrBufferFull is returned by Fill when the buffer holds MaxBuf bytes
// already (a head or a chunk line longer than the caller allows).
var ErrBufferFull = errors.New("h1: buffer full")

// Reader buffers one connection's input. Its buffer is taken from a pool on
// the first Fill and given back by Release, so an idle or waiting
// connection holds no buffer. It grows past BufSize only for a head that
// needs it, up to the max the caller passes to Fill.
type Reader struct {
	src  io.Reader
	buf  []byte
	r, w int
	own  bool // buf is a grown buffer, not a pooled one
}

// Reset points the reader at src, dropping anything buffered.
func (b *Reader) Reset(src io.Reader) {
	b.release(true)
	b.src = src
}

// Buffered returns the unread bytes. The slice is valid until the next
// Fill, Discard or Release.
func (b *Reader) Buffered() []byte { return b.buf[b.r:b.w] }

// Len is the number of unread bytes.
func (b *Reader) Len() int { return b.w - b.r }

// Discard drops n unread bytes (n <= Len).
func (b *Reader) Discard(n int) {
	b.r += n
	if b.r == b.w {
		b.r, b.w = 0, 0
	}
}

// Release gives the buffer back to the pool if nothing is buffered.
func (b *Reader) Release() { b.release(false) }

func (b *Reader) release(force bool) {
	if b.buf == nil || (!force && b.r != b.w) {
		return
	}
	if !b.own {
		bufPool.Put((*[BufSize]byte)(b.buf[:BufSize]))
	}
	b.buf, b.r, b.w, b.own = nil, 0, 0, false
}

// Fill reads once from the source, appending to the buffered bytes. It
// moves the unread bytes to the front when that makes room, and grows the
// buffer (up to max bytes in all) when the unread bytes fill it. It returns
// ErrBufferFull when Len is already max, and the source's error otherwise
// (with n > 0 only if some bytes arrived).
func (b *Reader) Fill(max int) (int, error) {
	if err := b.room(max); err != nil {
		return 0, err
	}
	n, err := b.src.Read(b.buf[b.w:])
	b.w += n
	if n > 0 {
		err = nil
	} else if err == nil {
		err = io.ErrNoProgress
	}
	return n, err
}

// room makes space for a read: a buffer from the pool, the unread bytes
// moved to its front, or a larger buffer (up to max).
func (b *Reader) room(max int) error {
	if b.buf == nil {
		b.buf = bufPool.Get().(*[BufSize]byte)[:]
	}
	if b.w == len(b.buf) {
		if b.r > 0 {
			copy(b.buf, b.buf[b.r:b.w])
			b.w -= b.r
			b.r = 0
		} else {
			if len(b.buf) >= max {
				return ErrBufferFull
			}
			n := min(2*len(b.buf), max)
			grown := make([]byte, n)
			copy(grown, b.buf[:b.w])
			if !b.own {
				bufPool.Put((*[BufSize]byte)(b.buf[:BufSize]))
			}
			b.buf, b.own = grown, true
		}
	}
	return nil
}

// Grown is the size of the buffer when it has grown past BufSize, else 0.
func (b *Reader) Grown() int {
	if b.own {
		return len(b.buf)
	}
	return 0
}

// WouldGrow reports the size the next Fill(max) grows the buffer to, or 0
// when it reads into the buffer it has.
func (b *Reader) WouldGrow(max int) int {
	if b.buf == nil || b.w < len(b.buf) || b.r > 0 || len(b.buf) >= max {
		return 0
	}
	return min(2*len(b.buf), max)
}

// Shrink replaces a grown buffer by a pooled one once its contents fit, so
// that one large head does not keep a large buffer on the connection.
func (b *Reader) Shrink() {
	if !b.own || b.w-b.r > BufSize {
		return
	}
	small := bufPool.Get().(*[BufSize]byte)[:]
	b.w = copy(small, b.buf[b.r:b.w])
	b.buf, b.r, b.own = small, 0, false
}

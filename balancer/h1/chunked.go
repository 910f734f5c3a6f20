package h1

import (
	"bytes"
	"errors"
)

// ErrNeedMore is returned by Chunked.Step when the buffered bytes end
// inside a framing line: Fill the reader and call Step again.
var ErrNeedMore = errors.New("h1: need more input")

// maxChunkLine bounds a chunk-size line with its extensions.
const maxChunkLine = 4 << 10

// maxChunkOverhead bounds the framing a body may carry beyond what its
// data pays for: RFC 9112 §7.1.1 says a server ought to limit the total
// length of chunk extensions. As in net/http (which a worker or client
// golb talks to may well be), each chunk line with its closing CRLF may
// cost 16 bytes and twice the chunk's data; past 16 KiB of excess the
// body is refused, so a stream of one-byte chunks each with 4 KiB of
// extensions is not read for ever.
const maxChunkOverhead = 16 << 10

// Chunked decodes the chunked transfer coding (RFC 9112 §7.1) from a
// Reader's buffer without copying: each Step hands back the next run of
// chunk data as a slice of the buffer. The zero value is ready to decode
// one body.
type Chunked struct {
	state      uint8
	left       int64 // data bytes left in the current chunk
	excess     int64 // framing bytes not paid for by data (maxChunkOverhead)
	MaxTrailer int   // bound of the trailer section; default 8 KiB
}

const (
	chunkSize uint8 = iota
	chunkData
	chunkDataEnd
	chunkTrailer
	chunkDone
)

// Done reports whether the last chunk and trailer section were read.
func (c *Chunked) Done() bool { return c.state == chunkDone }

// Step consumes framing from rd's buffer and returns the next run of
// data (valid until rd is next filled). At the end of the body it returns
// the raw trailer section (field lines without the final CRLF; empty for
// none) as trailer, and Done turns true. It returns ErrNeedMore when rd
// must be filled first, and an *Error for broken framing.
func (c *Chunked) Step(rd *Reader) (data, trailer []byte, err error) {
	for {
		buf := rd.Buffered()
		switch c.state {
		case chunkSize:
			i := bytes.IndexByte(buf, '\n')
			// The bound holds for a line that came whole in one read too.
			if i < 0 && len(buf) <= maxChunkLine {
				return nil, nil, ErrNeedMore
			}
			if i < 0 || i > maxChunkLine {
				return nil, nil, errChunkLine
			}
			if i == 0 || buf[i-1] != '\r' {
				return nil, nil, errBareLF
			}
			n, err := parseChunkSize(buf[:i-1])
			if err != nil {
				return nil, nil, err
			}
			rd.Discard(i + 1)
			if n == 0 {
				c.state = chunkTrailer
				continue
			}
			// The line (without its CRLF) and the CRLF after the data,
			// less what the data pays for, counted as net/http does.
			c.excess = max(c.excess+int64(i+1)-16-2*min(n, 1<<32), 0)
			if c.excess > maxChunkOverhead {
				return nil, nil, errChunkOverhead
			}
			c.left, c.state = n, chunkData
		case chunkData:
			if len(buf) == 0 {
				return nil, nil, ErrNeedMore
			}
			n := int64(len(buf))
			if n > c.left {
				n = c.left
			}
			c.left -= n
			rd.Discard(int(n))
			if c.left == 0 {
				c.state = chunkDataEnd
			}
			return buf[:n], nil, nil
		case chunkDataEnd:
			if len(buf) < 2 {
				if len(buf) == 1 && buf[0] != '\r' {
					return nil, nil, errChunkEnd
				}
				return nil, nil, ErrNeedMore
			}
			if buf[0] != '\r' || buf[1] != '\n' {
				return nil, nil, errChunkEnd
			}
			rd.Discard(2)
			c.state = chunkSize
		case chunkTrailer:
			max := c.MaxTrailer
			if max <= 0 {
				max = 8 << 10
			}
			if len(buf) >= 2 && buf[0] == '\r' && buf[1] == '\n' {
				rd.Discard(2)
				c.state = chunkDone
				return nil, nil, nil
			}
			end, _, err := ScanHead(buf, 0)
			if err != nil {
				return nil, nil, err
			}
			if end == 0 {
				if len(buf) > max {
					return nil, nil, errTrailerLarge
				}
				return nil, nil, ErrNeedMore
			}
			if end > max {
				return nil, nil, errTrailerLarge
			}
			fields := buf[:end-2]
			if err := checkTrailer(fields); err != nil {
				return nil, nil, err
			}
			rd.Discard(end)
			c.state = chunkDone
			return nil, fields, nil
		case chunkDone:
			return nil, nil, nil
		}
	}
}

// parseChunkSize parses "hex[;ext]" (with optional whitespace before the
// extensions, as RFC 9112 §7.1.1's BWS allows).
func parseChunkSize(line []byte) (int64, error) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if n > 1<<58 {
			return 0, errChunkSize
		}
		n = n<<4 | int64(d)
	}
ext:
	if i == 0 {
		return 0, errChunkSize
	}
	rest := line[i:]
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:]
	}
	if len(rest) > 0 && (rest[0] != ';' || !isFieldValue(rest)) {
		return 0, errChunkSize
	}
	return n, nil
}

// checkTrailer validates trailer field lines like header lines.
func checkTrailer(p []byte) error {
	for len(p) > 0 {
		line, rest := cutLine(p)
		p = rest
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			return errTrailer
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) || !isFieldValue(line[colon+1:]) {
			return errTrailer
		}
	}
	return nil
}

package h1

import (
	"bytes"
	"testing"
)

// FuzzParseRequest feeds arbitrary bytes to the head scanner, the request
// parser and the chunked decoder, as a hostile client would. None may
// panic, and an accepted head must keep RFC 9112's framing invariants.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
		"GET http://a/b HTTP/1.0\r\nConnection: keep-alive, Upgrade\r\nUpgrade: ws\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		end, _, err := ScanHead(raw, 0)
		if err != nil || end == 0 {
			return
		}
		var h Head
		if err := ParseRequest(raw[:end], &h); err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %v is not an *Error", err)
			}
			return
		}
		if h.Body == BodyLength && h.ContentLength <= 0 {
			t.Fatalf("length body of %d bytes", h.ContentLength)
		}
		n := 0
		for _, f := range h.Headers {
			if EqualFold(f.Name, "content-length") || EqualFold(f.Name, "transfer-encoding") {
				n++
			}
		}
		if n > 1 && h.Body != BodyChunked {
			t.Fatalf("%d framing headers accepted with body %v", n, h.Body)
		}
		if h.Body == BodyChunked {
			var rd Reader
			rd.Reset(bytes.NewReader(raw[end:]))
			var c Chunked
			for range 10000 {
				_, _, err := c.Step(&rd)
				if err == ErrNeedMore {
					if _, err := rd.Fill(2 * BufSize); err != nil {
						return
					}
					continue
				}
				if err != nil || c.Done() {
					return
				}
			}
		}
	})
}

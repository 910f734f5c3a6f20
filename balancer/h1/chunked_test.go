package h1

import (
	"strings"
	"testing"
)

// TestChunkedBoundsExtensions: a body of one-byte chunks each carrying
// 4 KiB of extensions was taken whole (net/http refuses it past 16 KiB of
// such overhead), so a client could make a proxy read any amount of
// framing for each byte it forwards; RFC 9112 §7.1.1 says a server ought
// to limit the total length of chunk extensions.
func TestChunkedBoundsExtensions(t *testing.T) {
	chunk := "1;" + strings.Repeat("e", 4000) + "\r\nx\r\n"
	if _, _, err := decodeAll(strings.Repeat(chunk, 5)+"0\r\n\r\n", 1000); err != errChunkOverhead {
		t.Errorf("err %v, want %v", err, errChunkOverhead)
	}
	// Extensions of a chunk that carries data in proportion, and a long
	// last-chunk line, are fine (as they are to net/http).
	long := "1000;" + strings.Repeat("e", 4000) + "\r\n" + strings.Repeat("x", 4096) + "\r\n"
	last := "0;" + strings.Repeat("e", 4000) + "\r\n\r\n"
	if d, _, err := decodeAll(strings.Repeat(long, 10)+strings.Repeat(chunk, 3)+last, 1000); err != nil || len(d) != 10*4096+3 {
		t.Errorf("%d bytes, err %v", len(d), err)
	}
}

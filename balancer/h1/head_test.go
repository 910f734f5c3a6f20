package h1

import (
	"bytes"
	"strings"
	"testing"
)

// parseReq scans and parses one request head as the proxy does.
func parseReq(t testing.TB, raw string) (*Head, error) {
	t.Helper()
	end, _, err := ScanHead([]byte(raw), 0)
	if err != nil {
		return nil, err
	}
	if end == 0 {
		t.Fatalf("head of %q is incomplete", raw)
	}
	var h Head
	return &h, ParseRequest([]byte(raw)[:end], &h)
}

func TestParseRequestFraming(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		status    int // 0: accepted
		body      BodyKind
		length    int64
		close     bool
	}{
		{"get", "GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n", 0, BodyNone, 0, false},
		{"leading blank lines", "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, BodyNone, 0, false},
		{"length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n", 0, BodyLength, 12, false},
		{"zero length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 0, BodyNone, 0, false},
		{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 0, BodyChunked, 0, false},
		{"chunked any case", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:  Chunked \r\n\r\n", 0, BodyChunked, 0, false},
		{"http/1.0 closes", "GET / HTTP/1.0\r\n\r\n", 0, BodyNone, 0, true},
		{"http/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0, BodyNone, 0, false},
		{"close", "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n", 0, BodyNone, 0, true},

		{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, 0, 0, false},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400, 0, 0, false},
		{"two CL same", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", 400, 0, 0, false},
		{"CL list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n", 400, 0, 0, false},
		{"CL sign", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", 400, 0, 0, false},
		{"CL huge", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 400, 0, 0, false},
		{"chunked then identity", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400, 0, 0, false},
		{"chunked twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400, 0, 0, false},
		{"chunked then identity lines", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n", 400, 0, 0, false},
		{"gzip chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, 0, 0, false},
		{"xchunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", 400, 0, 0, false},
		{"TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, 0, 0, false},
		{"space before colon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n", 400, 0, 0, false},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n", 400, 0, 0, false},
		{"no colon", "GET / HTTP/1.1\r\nHost: x\r\nX-A\r\n\r\n", 400, 0, 0, false},
		{"space in name", "GET / HTTP/1.1\r\nHost: x\r\nBad Name: x\r\n\r\n", 400, 0, 0, false},
		{"NUL in name", "GET / HTTP/1.1\r\nHost: x\r\nNa\x00me: x\r\n\r\n", 400, 0, 0, false},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400, 0, 0, false},
		{"no host", "GET / HTTP/1.1\r\n\r\n", 400, 0, 0, false},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, 0, 0, false},
		{"http/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, 0, 0, false},
		{"garbage version", "GET / HTTX/1.1\r\nHost: x\r\n\r\n", 400, 0, 0, false},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400, 0, 0, false},
		{"bad method", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := parseReq(t, tc.raw)
			if tc.status != 0 {
				e, ok := err.(*Error)
				if !ok || e.Status != tc.status {
					t.Fatalf("err = %v, want status %d", err, tc.status)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if h.Body != tc.body || h.ContentLength != tc.length || h.Close != tc.close {
				t.Errorf("body %v length %d close %v, want %v %d %v", h.Body, h.ContentLength, h.Close, tc.body, tc.length, tc.close)
			}
		})
	}
}

func TestScanHeadRefusesBareLF(t *testing.T) {
	for _, raw := range []string{"GET / HTTP/1.1\nHost: x\n\n", "GET / HTTP/1.1\r\nHost: x\n\r\n", "\n"} {
		if _, _, err := ScanHead([]byte(raw), 0); err == nil {
			t.Errorf("%q: no error", raw)
		}
	}
}

// TestScanHeadResumes pins that scanning a head that arrives byte by byte
// finds the same end as scanning it whole.
func TestScanHeadResumes(t *testing.T) {
	raw := []byte("\r\nGET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\nNEXT")
	want, _, _ := ScanHead(raw, 0)
	resume := 0
	for n := 1; n <= len(raw); n++ {
		end, next, err := ScanHead(raw[:n], resume)
		if err != nil {
			t.Fatal(err)
		}
		if end > 0 {
			if end != want || n != want {
				t.Fatalf("end %d after %d bytes, want %d", end, n, want)
			}
			return
		}
		resume = next
	}
	t.Fatal("never complete")
}

func TestParseResponse(t *testing.T) {
	var h Head
	raw := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nX-A: b\r\n\r\n"
	if err := ParseResponse([]byte(raw), &h); err != nil {
		t.Fatal(err)
	}
	if h.Status != 200 || string(h.Reason) != "OK" || h.ResponseBody(false) != BodyLength || !h.Close || h.ContentLength != 2 {
		t.Fatalf("%+v", h)
	}
	if h.ResponseBody(true) != BodyNone {
		t.Error("a HEAD answer has a body")
	}
	for _, raw := range []string{"HTTP/1.1 204 No Content\r\n\r\n", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"} {
		if err := ParseResponse([]byte(raw), &h); err != nil || h.ResponseBody(false) != BodyNone {
			t.Errorf("%q: %v, body %v", raw, err, h.ResponseBody(false))
		}
	}
	if err := ParseResponse([]byte("HTTP/1.1 200 OK\r\n\r\n"), &h); err != nil || h.ResponseBody(false) != BodyToClose {
		t.Errorf("no length: %v %v", err, h.ResponseBody(false))
	}
	for _, raw := range []string{"HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "ICY 200 OK\r\n\r\n"} {
		if err := ParseResponse([]byte(raw), &h); err == nil {
			t.Errorf("%q: no error", raw)
		}
	}
}

// decodeAll runs a chunked body through Step with the input arriving in
// pieces of size step.
func decodeAll(raw string, step int) (data, trailer string, err error) {
	src := &slowReader{s: raw, step: step}
	var rd Reader
	rd.Reset(src)
	var c Chunked
	var out bytes.Buffer
	for {
		d, tr, err := c.Step(&rd)
		switch {
		case err == ErrNeedMore:
			if _, err := rd.Fill(2 * BufSize); err != nil {
				return out.String(), "", err
			}
			continue
		case err != nil:
			return out.String(), "", err
		case c.Done():
			return out.String(), string(tr), nil
		}
		out.Write(d)
	}
}

type slowReader struct {
	s    string
	step int
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.s) == 0 {
		return 0, errEOF
	}
	n := copy(p[:min(len(p), r.step)], r.s)
	r.s = r.s[n:]
	return n, nil
}

var errEOF = &Error{Status: 0, Msg: "EOF"}

func TestChunked(t *testing.T) {
	body := "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-T: 1\r\n\r\n"
	for _, step := range []int{1, 2, 3, 7, 1000} {
		d, tr, err := decodeAll(body, step)
		if err != nil || d != "hello, world" || tr != "X-T: 1\r\n" {
			t.Errorf("step %d: %q %q %v", step, d, tr, err)
		}
	}
	if d, tr, err := decodeAll("0\r\n\r\n", 1); err != nil || d != "" || tr != "" {
		t.Errorf("empty body: %q %q %v", d, tr, err)
	}
	for _, bad := range []string{
		"3\r\nabcXX0\r\n\r\n",               // data not followed by CRLF
		"3\nabc\r\n0\r\n\r\n",               // bare LF
		"FFFFFFFFFFFFFFFFF1\r\n",            // overflows
		"zz\r\n",                            // not hex
		"-1\r\n",                            // negative
		"3x\r\nabc\r\n0\r\n\r\n",            // junk after the size
		"\r\n",                              // no size
		"0\r\nBad Trailer\r\n\r\n",          // trailer without a colon
		"0\r\n" + strings.Repeat("a", 9000), // trailer runs on
	} {
		if _, _, err := decodeAll(bad, 3); err == nil || err == errEOF {
			t.Errorf("%.40q: err %v, want a framing error", bad, err)
		}
	}
}

func TestReaderGrowsAndShrinks(t *testing.T) {
	big := "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 3*BufSize) + "\r\n\r\n"
	var rd Reader
	rd.Reset(strings.NewReader(big))
	for rd.Len() < len(big) {
		if _, err := rd.Fill(64 << 10); err != nil {
			t.Fatal(err)
		}
	}
	if string(rd.Buffered()) != big {
		t.Fatal("buffered bytes differ")
	}
	rd.Discard(len(big))
	rd.Shrink()
	rd.Reset(strings.NewReader(big))
	for {
		if _, err := rd.Fill(BufSize); err != nil {
			if err != ErrBufferFull {
				t.Fatalf("err %v, want ErrBufferFull", err)
			}
			break
		}
	}
}

// TestValidHostChecksTheAuthority: an absolute target's host was checked
// for its bytes alone, so "http://:80/x" (no name) and "h.example:abc" (a
// port that is no number) reached the worker as its Host.
func TestValidHostChecksTheAuthority(t *testing.T) {
	for host, want := range map[string]bool{
		"":                true, // RFC 9110 §7.2: the empty Host of a target without authority
		"h.example":       true,
		"h.example:8080":  true,
		"h.example:":      true, // an empty port (RFC 3986 §3.2.3)
		"127.0.0.1:80":    true,
		"[::1]":           true,
		"[::1]:443":       true,
		":80":             false,
		":":               false,
		"h.example:abc":   false,
		"h.example:80:81": false,
		"[::1":            false,
		"[::1]x":          false,
		"[::1]:8x":        false,
		"h[1].example":    false,
		"[[::1]]":         false,
		"a b":             false,
		"u@h.example":     false,
		"h.example/x":     false,
		"h.example#f":     false,
		"h.example\x00":   false,
		"[":               false,
		"]":               false,
	} {
		if got := ValidHost([]byte(host)); got != want {
			t.Errorf("ValidHost(%q) = %v, want %v", host, got, want)
		}
	}
}

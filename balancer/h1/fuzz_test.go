package h1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"testing"
)

// The targets below are differential: net/http parses the same bytes, and
// golb may refuse more than it (each such class is noted, see
// noteDisagreement) but must never frame a message differently, nor
// accept a chunked body net/http refuses, unless RFC 9112 says golb is
// right (each such exception below cites its section).

// FuzzParseRequest feeds arbitrary bytes to the head scanner, the request
// parser and the chunked decoder, as a hostile client would. None may
// panic, an accepted head must keep RFC 9112's framing invariants, and
// net/http.ReadRequest must read the same framing from it.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
		"GET http://a/b HTTP/1.0\r\nConnection: keep-alive, Upgrade\r\nUpgrade: ws\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: \r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 007\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
		"POST / HTTP/1.2\r\nHost: x\r\nTransfer-Encoding: ,chunked\r\n\r\n",
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
		if h.Body == BodyToClose {
			t.Fatal("a request body delimited by the close")
		}
		if cl, te := framingHeaders(&h); cl > 1 || cl > 0 && te > 0 {
			t.Fatalf("%d Content-Length and %d Transfer-Encoding lines accepted", cl, te)
		}
		compareRequest(t, raw[:end], &h)
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

// compareRequest checks net/http's framing of an accepted request head.
func compareRequest(t *testing.T, head []byte, h *Head) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		noteDisagreement("request: golb accepts, net/http refuses: "+errClass(err), head)
		return
	}
	chunked := len(req.TransferEncoding) > 0 && req.TransferEncoding[0] == "chunked"
	switch h.Body {
	case BodyChunked:
		if !chunked {
			t.Fatalf("golb reads a chunked body, net/http %d bytes (TE %q)", req.ContentLength, req.TransferEncoding)
		}
	case BodyLength:
		if chunked || req.ContentLength != h.ContentLength {
			t.Fatalf("golb reads %d bytes, net/http %d (TE %q)", h.ContentLength, req.ContentLength, req.TransferEncoding)
		}
	case BodyNone:
		if chunked || req.ContentLength != 0 {
			t.Fatalf("golb reads no body, net/http %d bytes (TE %q)", req.ContentLength, req.TransferEncoding)
		}
	}
}

// FuzzParseResponse feeds arbitrary bytes to the head scanner and the
// response parser, as a hostile worker would, answering a GET or (with
// head set) a HEAD. An accepted head must keep RFC 9112 §6.3's framing
// invariants, and net/http.ReadResponse must find the same body framing.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n",
		"HTTP/1.1 200\r\n\r\n",
		"\r\nHTTP/1.1 599 x y\r\nX: \x80\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, \r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: Chunked\r\n\r\n",
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 000000000000000012\r\nConnection: close\r\n\r\n",
		"HTTP/1.2 206 OK\r\nContent-Length:\t5 \r\n\r\n",
		"HTTP/1.0 100 \r\nTransfer-Encoding:\r\nTransfer-Encoding:0\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"), true)
	f.Fuzz(func(t *testing.T, raw []byte, head bool) {
		end, _, err := ScanHead(raw, 0)
		if err != nil || end == 0 {
			return
		}
		var h Head
		if err := ParseResponse(raw[:end], &h); err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %v is not an *Error", err)
			}
			return
		}
		if h.Status < 100 || h.Status > 999 {
			t.Fatalf("status %d", h.Status)
		}
		if h.ContentLength < 0 || h.ContentLength > 0 && h.Body != BodyLength {
			t.Fatalf("content length %d with body %v", h.ContentLength, h.Body)
		}
		if cl, te := framingHeaders(&h); cl > 1 || cl > 0 && te > 0 {
			t.Fatalf("%d Content-Length and %d Transfer-Encoding lines accepted", cl, te)
		}
		kind := h.ResponseBody(head)
		if kind != BodyNone && (h.Status < 200 || h.Status == 204 || h.Status == 304 || head) {
			t.Fatalf("status %d (HEAD %v) has body %v", h.Status, head, kind)
		}
		compareResponse(t, raw[:end], &h, head)
	})
}

// compareResponse checks net/http's framing of an accepted response head.
func compareResponse(t *testing.T, raw []byte, h *Head, head bool) {
	method := "GET"
	if head {
		method = "HEAD"
	}
	req := &http.Request{Method: method}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), req)
	if err != nil {
		noteDisagreement("response: golb accepts, net/http refuses: "+errClass(err), raw)
		return
	}
	kind, n := h.ResponseBody(head), h.ContentLength
	if kind == BodyLength && n == 0 {
		kind = BodyNone
	}
	var want BodyKind
	switch chunked := len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"; {
	case resp.Body == http.NoBody:
		want = BodyNone
	case chunked:
		want = BodyChunked
	case resp.ContentLength >= 0:
		want = BodyLength
	default:
		want = BodyToClose
	}
	if kind == want && (kind != BodyLength || n == resp.ContentLength) {
		return
	}
	// RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty
	// framing; §6.3 rules 4 and 5 still delimit its body by the coding
	// (not by a Content-Length, which golb refuses next to one), and golb
	// closes after it. net/http ignores Transfer-Encoding below HTTP/1.1.
	if h.Minor == 0 && resp.ProtoMajor == 1 && hasHeader(h, "transfer-encoding") {
		noteDisagreement("response: HTTP/1.0 with Transfer-Encoding", raw)
		return
	}
	t.Fatalf("golb frames the body %v (%d bytes), net/http %v (%d bytes, TE %q)", kind, n, want, resp.ContentLength, resp.TransferEncoding)
}

// FuzzChunked feeds arbitrary bytes as a chunked body to Chunked.Step,
// through a Reader that gets them in pieces whose sizes cuts chooses, and
// to httputil.NewChunkedReader (with net/http's own trailer reading). A
// body golb accepts must decode to net/http's bytes and end where
// net/http's ends; Step must never hand back an empty run of data (a
// proxy would re-frame it as the last chunk) nor buffer more than a chunk
// line or a trailer section.
func FuzzChunked(f *testing.F) {
	for _, s := range []string{
		"0\r\n\r\n",
		"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-T: 1\r\n\r\n",
		"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
		"3 ;a=\"b c\"\r\nabc\r\n0\r\n\r\n",
		"0000000000000000003\r\nabc\r\n0\r\n\r\n",
		"a\r\n0123456789\r\n0\r\nA: 1\r\nB: 2\r\n\r\n",
		"3\r\nabc\r\n0\r\nX: 1\r\n",
		"3\r\nabc\n0\r\n\r\n",
		"1;" + strings.Repeat("x", 5000) + "\r\na\r\n0\r\n\r\n",
		strings.Repeat("1;"+strings.Repeat("x", 4000)+"\r\na\r\n", 5) + "0\r\n\r\n",
		strings.Repeat("1;"+strings.Repeat("x", 300)+"\r\na\r\n", 60) + "0\r\n\r\n",
	} {
		f.Add([]byte(s), []byte{1, 2, 3})
		f.Add([]byte(s), []byte(nil))
	}
	f.Fuzz(func(t *testing.T, body, cuts []byte) {
		got, trailer, used, gerr := golbChunked(t, body, cuts)

		src := bytes.NewReader(body)
		br := bufio.NewReader(src)
		want, werr := io.ReadAll(httputil.NewChunkedReader(br))
		if werr == nil {
			werr = readTrailer(br)
		}
		wused := len(body) - br.Buffered() - src.Len()
		if gerr != nil {
			if werr == nil {
				noteDisagreement("chunked: net/http accepts, golb refuses: "+errClass(gerr), body)
			}
			return
		}
		if werr != nil {
			// RFC 9112 §7.1: chunk-size is 1*HEXDIG (any number of
			// leading zeros; net/http takes 16 digits at most), and
			// chunk-ext starts with BWS before the ";" (net/http takes
			// none). Spelled as net/http reads them, the chunk lines
			// must decode the same.
			canon, from, to, ok := canonicalChunkLines(body)
			if !ok {
				t.Fatalf("golb accepts %.100q (trailer %.100q), net/http refuses: %v", got, trailer, werr)
			}
			noteDisagreement("chunked: golb accepts, net/http refuses: "+errClass(werr)+" (RFC 9112 §7.1 spelling)", body)
			src = bytes.NewReader(canon)
			br = bufio.NewReader(src)
			want, werr = io.ReadAll(httputil.NewChunkedReader(br))
			if werr == nil {
				werr = readTrailer(br)
			}
			if werr != nil {
				t.Fatalf("golb accepts %.100q (trailer %.100q), net/http refuses %.200q: %v", got, trailer, canon, werr)
			}
			wused = len(canon) - br.Buffered() - src.Len() - to + from
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("golb decodes %.200q, net/http %.200q", got, want)
		}
		if used != wused {
			t.Fatalf("golb's body is %d bytes, net/http's %d", used, wused)
		}
	})
}

// canonicalChunkLines rewrites the chunk-size lines of a chunked body
// (RFC 9112 §7.1) as net/http reads them: the size in hex without leading
// zeros, the extensions without the whitespace before them. It returns
// the rewritten body and the lengths of the chunks part (up to the
// trailer section) before and after, or !ok when body is not chunked
// right up to its last chunk.
func canonicalChunkLines(body []byte) (canon []byte, from, to int, ok bool) {
	p := body
	for {
		line, rest, found := bytes.Cut(p, []byte("\r\n"))
		if !found {
			return nil, 0, 0, false
		}
		digits := 0
		for digits < len(line) && strings.IndexByte("0123456789abcdefABCDEF", line[digits]) >= 0 {
			digits++
		}
		ext := bytes.TrimLeft(line[digits:], " \t")
		if digits == 0 || len(ext) > 0 && ext[0] != ';' {
			return nil, 0, 0, false
		}
		var n uint64
		for _, c := range line[:digits] {
			if n >= 1<<60 {
				return nil, 0, 0, false
			}
			n = n<<4 | uint64(hexVal(c))
		}
		canon = fmt.Appendf(canon, "%x%s\r\n", n, ext)
		p = rest
		if n == 0 {
			break
		}
		if uint64(len(p)) < n+2 || string(p[n:n+2]) != "\r\n" {
			return nil, 0, 0, false
		}
		canon = append(canon, p[:n+2]...)
		p = p[n+2:]
	}
	from, to = len(body)-len(p), len(canon)
	return append(canon, p...), from, to, true
}

func hexVal(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// golbChunked decodes body with Chunked.Step as the proxy does, with the
// input arriving in pieces sized by cuts. used is how many bytes of body
// the decoder consumed; err is non-nil for a body golb refuses or finds
// incomplete.
func golbChunked(t *testing.T, body, cuts []byte) (data, trailer []byte, used int, err error) {
	src := &piecesReader{p: body, cuts: cuts}
	var rd Reader
	rd.Reset(src)
	var c Chunked
	limit := max(maxChunkLine, 8<<10)
	// Each Step consumes bytes or asks for a Fill that brings some.
	for range 3*len(body) + 3 {
		d, tr, err := c.Step(&rd)
		switch {
		case err == ErrNeedMore:
			if rd.Len() > limit {
				t.Fatalf("Step wants more with %d bytes buffered", rd.Len())
			}
			if _, err := rd.Fill(2 * BufSize); err != nil {
				return data, nil, 0, err
			}
			continue
		case err != nil:
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %v is not an *Error", err)
			}
			return data, nil, 0, err
		case c.Done():
			if len(d) != 0 {
				t.Fatalf("data %q with the end of the body", d)
			}
			return data, tr, len(body) - rd.Len() - len(src.p), nil
		case len(d) == 0:
			t.Fatal("an empty run of data before the end of the body")
		}
		data = append(data, d...)
	}
	t.Fatal("Step made no progress")
	return nil, nil, 0, nil
}

// piecesReader hands out p in pieces of 1 to 16 bytes chosen by cuts in
// turn (all of it at once when cuts is empty).
type piecesReader struct {
	p    []byte
	cuts []byte
	i    int
}

func (r *piecesReader) Read(b []byte) (int, error) {
	if len(r.p) == 0 {
		return 0, io.EOF
	}
	n := len(r.p)
	if len(r.cuts) > 0 {
		n = int(r.cuts[r.i%len(r.cuts)]%16) + 1
		r.i++
	}
	n = copy(b[:min(n, len(b))], r.p)
	r.p = r.p[n:]
	return n, nil
}

// readTrailer reads the trailer section after the last chunk as net/http
// does (http.body.readTrailer): none when a CRLF comes next, else MIME
// header lines.
func readTrailer(br *bufio.Reader) error {
	if p, _ := br.Peek(2); string(p) == "\r\n" {
		_, _ = br.Discard(2)
		return nil
	}
	_, err := textproto.NewReader(br).ReadMIMEHeader()
	return err
}

// framingHeaders counts h's Content-Length and Transfer-Encoding lines.
// RFC 9112 §6.3: several Transfer-Encoding lines are one list, but a
// second Content-Length, or one beside Transfer-Encoding, is how two
// parsers come to disagree; golb refuses both.
func framingHeaders(h *Head) (cl, te int) {
	for _, f := range h.Headers {
		switch {
		case EqualFold(f.Name, "content-length"):
			cl++
		case EqualFold(f.Name, "transfer-encoding"):
			te++
		}
	}
	return cl, te
}

func hasHeader(h *Head, name string) bool {
	for _, f := range h.Headers {
		if EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// errClass is an error's message without the quoted input some carry.
func errClass(err error) string {
	s := err.Error()
	if i := strings.IndexAny(s, "\"["); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

var disagreements struct {
	sync.Mutex
	seen map[string]bool
}

// noteDisagreement records the first input of each class of disagreement
// with net/http that golb is allowed (golb refusing more, or an RFC
// exception) in the file H1FUZZ_DISAGREE names, for a person to judge.
func noteDisagreement(class string, input []byte) {
	path := os.Getenv("H1FUZZ_DISAGREE")
	if path == "" {
		return
	}
	disagreements.Lock()
	defer disagreements.Unlock()
	if disagreements.seen == nil {
		disagreements.seen = map[string]bool{}
	}
	if disagreements.seen[class] {
		return
	}
	disagreements.seen[class] = true
	fl, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer fl.Close()
	fmt.Fprintf(fl, "%s\n\t%.300q\n", class, input)
}

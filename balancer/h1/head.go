package h1

import (
	"bytes"
)

// Header is one header field as it arrived, both slices pointing into the
// reader's buffer. Value has its surrounding whitespace trimmed.
type Header struct {
	Name, Value []byte
}

// BodyKind is how a message's body is delimited (RFC 9112 §6.3).
type BodyKind uint8

const (
	BodyNone    BodyKind = iota // no body
	BodyLength                  // Content-Length bytes
	BodyChunked                 // chunked transfer coding
	BodyToClose                 // until the connection closes (responses only)
)

// Head is what the proxy needs of a message head. Parse functions fill
// it in place; its Headers slice is reused across messages, so a
// connection that keeps one Head parses without allocating.
type Head struct {
	// Request line, or the response's status line.
	Method, Target []byte // requests
	Status         int    // responses
	Reason         []byte // responses
	Minor          int    // HTTP/1.Minor: 0 or 1

	Headers []Header

	// Framing and connection management, derived from the headers.
	Body          BodyKind
	ContentLength int64 // with BodyLength
	ZeroLength    bool  // a request's Content-Length: 0 (its Body is BodyNone)
	Close         bool  // Connection: close, or HTTP/1.0 without keep-alive (or with Transfer-Encoding)
	Upgrade       bool  // Connection: upgrade with an Upgrade header
	Expect100     bool  // Expect: 100-continue (ignored in an HTTP/1.0 request)
	ConnTokens    bool  // Connection names other headers, which are hop-by-hop
	Host          []byte
	// Codings counts the transfer codings other than chunked (a worker's
	// "gzip, chunked": 1). A proxy that re-frames the body keeps them
	// (AppendCodings): they are part of what the body's bytes are.
	Codings    int
	Connection [][]byte // Connection header values, for ConnTokens
	connBuf    [2][]byte
}

// Forget drops the head's references into the buffer it was parsed from,
// keeping the field list's capacity: a connection that waits for its next
// message must not keep its last one's buffer alive (a grown one, for a
// large head) through slices of it.
func (h *Head) Forget() {
	clear(h.Headers[:cap(h.Headers)])
	h.reset()
}

func (h *Head) reset() {
	*h = Head{Headers: h.Headers[:0]}
	h.Connection = h.connBuf[:0]
}

// ScanHead looks for the end of a head in buf, resuming at from (0, or
// the resume offset a previous call returned for the same bytes). It
// returns end > 0, the length of the head including its blank line, once
// the head is complete; else the offset to resume from when more bytes
// have arrived. Leading blank lines (RFC 9112 §2.2) are part of the head
// and skipped by the parsers. A line ending in a bare LF is an error: such
// a line is how two parsers come to disagree about where a message ends.
func ScanHead(buf []byte, from int) (end, resume int, err error) {
	i := from
	// Whether every line before i is blank. A blank line after a non-blank
	// one ends the head, so a resume offset that follows a blank line
	// follows only blank lines: no need to look further back (which made
	// a run of leading blank lines cost quadratic time).
	leading := i == 0 || i >= 2 && buf[i-2] == '\r' && buf[i-1] == '\n' && (i == 2 || buf[i-3] == '\n')
	for {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return 0, i, nil
		}
		j += i
		if j == 0 || buf[j-1] != '\r' {
			return 0, 0, errBareLF
		}
		// A line of just CRLF ends the head, unless nothing came before it.
		if j == i+1 {
			if leading {
				i = j + 1
				continue
			}
			return j + 1, 0, nil
		}
		leading = false
		i = j + 1
	}
}

// ParseRequest parses a complete request head (as ScanHead delimited it)
// into h and applies RFC 9112's framing rules. Every error is an *Error
// carrying the status to answer; the connection must then be closed.
func ParseRequest(head []byte, h *Head) error {
	h.reset()
	head = skipBlankLines(head)
	line, rest := cutLine(head)
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return errRequestLine
	}
	h.Method = line[:sp1]
	if !isToken(h.Method) {
		return errRequestLine
	}
	line = line[sp1+1:]
	sp2 := bytes.IndexByte(line, ' ')
	if sp2 <= 0 {
		return errRequestLine
	}
	h.Target, line = line[:sp2], line[sp2+1:]
	for _, c := range h.Target {
		if c <= ' ' || c == 0x7f {
			return errRequestLine
		}
		if c == '#' { // RFC 9112 §3.2: no target form has one
			return errFragment
		}
	}
	minor, err := parseVersion(line)
	if err != nil {
		return err
	}
	h.Minor = minor
	if err := parseHeaders(rest, h, true); err != nil {
		return err
	}
	if h.Body == BodyLength && h.ContentLength == 0 {
		h.Body, h.ZeroLength = BodyNone, true
	}
	return nil
}

// ParseResponse parses a complete response head into h. The body's
// framing also depends on the request (HEAD has none): see ResponseBody.
func ParseResponse(head []byte, h *Head) error {
	h.reset()
	head = skipBlankLines(head)
	line, rest := cutLine(head)
	if len(line) < 12 || line[8] != ' ' {
		return errStatusLine
	}
	minor, err := parseVersion(line[:8])
	if err != nil {
		return errStatusLine
	}
	h.Minor = minor
	s := line[9:12]
	if !isDigit(s[0]) || !isDigit(s[1]) || !isDigit(s[2]) || (len(line) > 12 && line[12] != ' ') {
		return errStatusLine
	}
	h.Status = int(s[0]-'0')*100 + int(s[1]-'0')*10 + int(s[2]-'0')
	if h.Status < 100 {
		return errStatusLine
	}
	if len(line) > 13 {
		h.Reason = line[13:]
		if !isFieldValue(h.Reason) {
			return errStatusLine
		}
	}
	return parseHeaders(rest, h, false)
}

func skipBlankLines(p []byte) []byte {
	for len(p) >= 2 && p[0] == '\r' && p[1] == '\n' {
		p = p[2:]
	}
	return p
}

// cutLine splits off the first CRLF-terminated line (ScanHead checked the
// endings).
func cutLine(p []byte) (line, rest []byte) {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		return p, nil
	}
	return p[:i-1], p[i+1:]
}

func parseVersion(v []byte) (minor int, err error) {
	if len(v) != 8 || string(v[:7]) != "HTTP/1." {
		if len(v) == 8 && string(v[:5]) == "HTTP/" && isDigit(v[5]) && v[6] == '.' && isDigit(v[7]) {
			return 0, errVersion
		}
		return 0, errRequestLine
	}
	switch {
	case v[7] == '0':
		return 0, nil
	case isDigit(v[7]):
		// HTTP/1.2 and later minors are taken as 1.1, the highest
		// golb implements (RFC 9110 §2.5).
		return 1, nil
	}
	return 0, errRequestLine
}

// MaxFields is the most header fields a head may have (a request's are
// answered 431 past it; a worker's answer is refused): the parsed list is
// kept for the connection's life, so a head of 60 KiB of "a:" lines would
// otherwise hold 15,000 entries (720 KiB) per idle connection. HAProxy
// (tune.http.maxhdr) and Apache (LimitRequestFields) allow about as many.
const MaxFields = 100

// parseHeaders parses header lines up to the blank line. Lines were
// checked for CRLF endings by ScanHead.
func parseHeaders(p []byte, h *Head, isRequest bool) error {
	var sawCL, sawTE, sawHost bool
	var te teState
	for len(p) > 0 {
		line, rest := cutLine(p)
		p = rest
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return errObsFold
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return errHeaderLine
		}
		name := line[:colon]
		if !isToken(name) {
			return errHeaderName
		}
		value := trimOWS(line[colon+1:])
		if !isFieldValue(value) {
			return errHeaderValue
		}
		if len(h.Headers) == MaxFields {
			return errTooManyFields
		}
		h.Headers = append(h.Headers, Header{Name: name, Value: value})

		switch {
		case EqualFold(name, "content-length"):
			if sawCL {
				return errDupLength
			}
			sawCL = true
			n, ok := parseLength(value)
			if !ok {
				return errBadLength
			}
			h.ContentLength = n
		case EqualFold(name, "transfer-encoding"):
			sawTE = true
			if err := te.add(value); err != nil {
				return err
			}
		case EqualFold(name, "connection"):
			h.Connection = append(h.Connection, value)
		case EqualFold(name, "host"):
			if sawHost && isRequest {
				return errDupHost
			}
			sawHost = true
			h.Host = value
		case EqualFold(name, "expect"):
			// RFC 9110 §10.1.1: an HTTP/1.0 request's 100-continue is
			// ignored (its client would take a 100 for the answer).
			if EqualFold(value, "100-continue") && (h.Minor == 1 || !isRequest) {
				h.Expect100 = true
			}
		case EqualFold(name, "upgrade"):
			h.Upgrade = true // confirmed by a Connection: upgrade below
		}
	}
	upgrade := h.Upgrade
	h.Upgrade = false
	var sawClose, sawKeepAlive bool
	for _, v := range h.Connection {
		for len(v) > 0 {
			var tok []byte
			tok, v = nextListItem(v)
			switch {
			case len(tok) == 0:
			case EqualFold(tok, "close"):
				sawClose = true
			case EqualFold(tok, "keep-alive"):
				sawKeepAlive = true
			case EqualFold(tok, "upgrade"):
				// RFC 9110 §7.8: Upgrade in an HTTP/1.0 request is
				// ignored (its client could not take a 101).
				h.Upgrade = upgrade && (h.Minor == 1 || !isRequest)
			default:
				h.ConnTokens = true
			}
		}
	}
	// RFC 9112 §6.1: the framing of an HTTP/1.0 message with
	// Transfer-Encoding is suspect; the connection ends after it.
	h.Close = sawClose || h.Minor == 0 && (!sawKeepAlive || sawTE)
	switch {
	case sawTE && sawCL:
		return errLengthAndChunked
	case sawTE:
		if isRequest && h.Minor == 0 {
			return errChunked10
		}
		if err := te.finish(isRequest); err != nil {
			return err
		}
		h.Codings = te.codings - te.chunkeds
		if te.lastChunked {
			h.Body = BodyChunked
		} else {
			h.Body = BodyToClose
		}
	case sawCL:
		h.Body = BodyLength
	}
	if isRequest && h.Minor == 1 && !sawHost {
		return errNoHost
	}
	return nil
}

// teState follows a Transfer-Encoding list across header lines: chunked
// must come last and only once; for requests it must be the only coding
// (golb does not decode others, RFC 9112 §6.1 lets it answer 501).
type teState struct {
	codings, chunkeds int
	lastChunked       bool
}

func (t *teState) add(v []byte) error {
	for len(v) > 0 {
		var tok []byte
		tok, v = nextListItem(v)
		if len(tok) == 0 {
			continue
		}
		if !isToken(tok) {
			return errBadTE
		}
		t.codings++
		t.lastChunked = EqualFold(tok, "chunked")
		if t.lastChunked {
			t.chunkeds++
		}
	}
	return nil
}

func (t *teState) finish(isRequest bool) error {
	switch {
	case t.codings == 0 || t.chunkeds > 1 || t.chunkeds == 1 && !t.lastChunked:
		return errBadTE
	case isRequest && !t.lastChunked:
		return errBadTE // the request's length cannot be known
	case isRequest && t.codings > 1:
		return errUnsupportedTE
	}
	return nil
}

// ResponseBody is how the body of a response to a request with the given
// method is delimited (RFC 9112 §6.3 rules 1–7).
func (h *Head) ResponseBody(head bool) BodyKind {
	if head || h.Status < 200 || h.Status == 204 || h.Status == 304 {
		return BodyNone
	}
	if h.Body == BodyNone {
		return BodyToClose
	}
	return h.Body
}

// Names reports whether Connection lists name (a hop-by-hop header).
func (h *Head) Names(name []byte) bool {
	for _, v := range h.Connection {
		for len(v) > 0 {
			var tok []byte
			tok, v = nextListItem(v)
			if len(tok) == len(name) && equalFoldBytes(tok, name) {
				return true
			}
		}
	}
	return false
}

func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// nextListItem returns the first comma-separated element of v, trimmed,
// and the rest.
func nextListItem(v []byte) (item, rest []byte) {
	if i := bytes.IndexByte(v, ','); i >= 0 {
		return trimOWS(v[:i]), v[i+1:]
	}
	return trimOWS(v), nil
}

// AppendCodings appends h's transfer codings other than chunked, in their
// order, separated by ", " (nothing when h.Codings is 0).
func AppendCodings(out []byte, h *Head) []byte {
	if h.Codings == 0 {
		return out
	}
	n := 0
	for i := range h.Headers {
		f := &h.Headers[i]
		if !EqualFold(f.Name, "transfer-encoding") {
			continue
		}
		for v := f.Value; len(v) > 0; {
			var tok []byte
			tok, v = nextListItem(v)
			if len(tok) == 0 || EqualFold(tok, "chunked") {
				continue
			}
			if n > 0 {
				out = append(out, ", "...)
			}
			out = append(out, tok...)
			n++
		}
	}
	return out
}

// ContainsToken reports whether the comma-separated list v (a field
// value such as Upgrade's or Connection's) has tok as an item, in any case.
func ContainsToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var t []byte
		t, v = nextListItem(v)
		if EqualFold(t, tok) {
			return true
		}
	}
	return false
}

func trimOWS(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// EqualFold reports whether b equals the lower-case ASCII string s,
// ignoring ASCII case.
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func equalFoldBytes(a, b []byte) bool {
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// tchar per RFC 9110 §5.6.2.
var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// hostTable is what a Host value (RFC 9112 §3.2: uri-host [":" port])
// may hold: RFC 3986's unreserved, sub-delims and pct-encoded characters,
// ':' and the brackets of an IP literal.
var hostTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-._~!$&'()*+,;=%:[]" {
		t[c] = true
	}
	return t
}()

// ValidHost reports whether host may be a request's Host, an authority
// (RFC 3986 §3.2) without userinfo: no space, '/', '@', '#', '?' or
// control byte; a name (or an IP literal in brackets) that is not empty
// when a port follows; a port of digits only. A server answers anything
// else 400 (RFC 9112 §3.2) rather than pass it on to a worker that may
// route by it. The empty Host is valid (RFC 9110 §7.2).
func ValidHost(host []byte) bool {
	for _, c := range host {
		if !hostTable[c] {
			return false
		}
	}
	name, port := host, []byte(nil)
	if len(host) > 0 && host[0] == '[' {
		end := bytes.IndexByte(host, ']')
		if end < 0 {
			return false
		}
		name, port = host[:end+1], host[end+1:]
		if len(port) > 0 && port[0] != ':' {
			return false
		}
	} else if i := bytes.IndexByte(host, ':'); i >= 0 {
		name, port = host[:i], host[i:]
	}
	if len(port) > 0 {
		if len(name) == 0 {
			return false
		}
		for _, c := range port[1:] { // a second ':' or a bracket too
			if !isDigit(c) {
				return false
			}
		}
	}
	switch {
	case len(name) == 0:
	case name[0] == '[': // "[...]", at least 2 bytes
		return !bytes.ContainsAny(name[1:len(name)-1], "[]")
	default:
		return !bytes.ContainsAny(name, "[]")
	}
	return true
}

func isToken(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	for _, c := range p {
		if !tokenTable[c] {
			return false
		}
	}
	return true
}

// isFieldValue: VCHAR, obs-text, SP and HTAB; no other control byte.
func isFieldValue(p []byte) bool {
	for _, c := range p {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

package balancer

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"

	"github.com/golb/golb/balancer/h1"
)

// originForm returns the request's target in origin form and the host it
// names: an absolute-form target ("http://host/path", RFC 9112 §3.2.2)
// gives its own authority, which then replaces Host. Either way the
// request goes to a worker: golb never forwards anywhere else.
func (c *clientConn) originForm(h *h1.Head) (target, host []byte, ok bool) {
	t := h.Target
	host = h.Host
	switch {
	case t[0] == '/':
	case len(t) == 1 && t[0] == '*':
		if string(h.Method) != "OPTIONS" {
			return nil, nil, false
		}
	default:
		i := bytes.Index(t, []byte("://"))
		if i <= 0 || !(h1.EqualFold(t[:i], "http") || h1.EqualFold(t[:i], "https")) {
			return nil, nil, false
		}
		rest := t[i+3:]
		j := bytes.IndexAny(rest, "/?")
		if j < 0 {
			// No path and no query: OPTIONS asks about the server itself,
			// which origin form says with "*" (RFC 9112 §3.2.4).
			host, t = rest, slash
			if string(h.Method) == "OPTIONS" {
				t = asterisk
			}
		} else {
			host, t = rest[:j], rest[j:]
			if t[0] == '?' {
				t = append([]byte("/"), t...)
			}
		}
		if len(host) == 0 {
			return nil, nil, false
		}
	}
	if len(host) == 0 { // HTTP/1.0 without Host: name the listener
		host = []byte(c.nc.LocalAddr().String())
	}
	return t, host, true
}

var slash, asterisk = []byte("/"), []byte("*")

// maxForwards is the Max-Forwards of an OPTIONS or TRACE request (the
// only methods it applies to, RFC 9110 §7.6.2); ok is false for another
// method, or without a valid one.
func maxForwards(h *h1.Head) (n int, ok bool) {
	if m := string(h.Method); m != "OPTIONS" && m != "TRACE" {
		return 0, false
	}
	for i := range h.Headers {
		if f := &h.Headers[i]; len(f.Name) == 12 && h1.EqualFold(f.Name, "max-forwards") {
			return parseMaxForwards(f.Value)
		}
	}
	return 0, false
}

// parseMaxForwards reads 1*DIGIT, up to 9 of them.
func parseMaxForwards(v []byte) (n int, ok bool) {
	if len(v) == 0 || len(v) > 9 {
		return 0, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// answerLastHop answers an OPTIONS or TRACE whose Max-Forwards is 0, as
// its final recipient: 200 with no body to OPTIONS, 405 to TRACE (golb
// does not echo requests back). A request body is not read: the
// connection closes after the answer.
func (c *clientConn) answerLastHop(h *h1.Head) bool {
	closing := h.Close || h.Body != h1.BodyNone || c.b.closing.Load()
	trace := string(h.Method) == "TRACE"
	c.rd.Discard(c.headLen)
	if trace {
		c.answer(405, "TRACE is not supported", closing)
	} else {
		c.writeAnswer(200, nil, closing)
	}
	return !closing
}

// pathOf is target without its query.
func pathOf(target []byte) []byte {
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		return target[:i]
	}
	return target
}

// methodName returns the method as a string without allocating for the
// common ones.
func methodName(m []byte) string {
	switch string(m) {
	case "GET":
		return http.MethodGet
	case "HEAD":
		return http.MethodHead
	case "POST":
		return http.MethodPost
	case "PUT":
		return http.MethodPut
	case "DELETE":
		return http.MethodDelete
	case "OPTIONS":
		return http.MethodOptions
	case "PATCH":
		return http.MethodPatch
	}
	return string(m)
}

// serveLocal answers a request for one of Config.Local's paths with its
// http.Handler (golb's own /worker/stats). It is neither proxied nor
// counted; any body is read and dropped.
func (c *clientConn) serveLocal(lh http.Handler, target, host []byte) bool {
	h := &c.head
	req, err := http.NewRequest(string(h.Method), "http://"+string(host)+string(target), http.NoBody)
	if err != nil {
		c.fail(errBadTarget)
		return false
	}
	req.Host = string(host)
	req.RequestURI = string(target)
	req.RemoteAddr = c.nc.RemoteAddr().String()
	req.Proto, req.ProtoMinor = "HTTP/1."+strconv.Itoa(h.Minor), h.Minor
	for _, f := range h.Headers {
		req.Header.Add(string(f.Name), string(f.Value))
	}
	closing := h.Close || c.b.closing.Load()
	minor, body, length := h.Minor, h.Body, h.ContentLength
	c.rd.Discard(c.headLen)
	if body != h1.BodyNone {
		if h.Expect100 { // the client holds its body back until told (RFC 9110 §10.1.1)
			if _, err := c.io.Write(continue100); err != nil {
				return false
			}
		}
		if err := c.dropBody(body, length); err != nil {
			return c.clientBodyFailed(err)
		}
	}
	w := &localWriter{c: c, h: make(http.Header), status: http.StatusOK, closing: closing, minor: minor}
	lh.ServeHTTP(w, req)
	if w.streamed {
		// The head and the body went out as the handler wrote them. A body
		// shorter than its Content-Length leaves the client waiting for the
		// rest: only closing the connection ends the response.
		return w.err == nil && w.left == 0 && !closing
	}
	out := w.appendHead(c.out[:0], int64(w.body.Len()))
	payload := w.body.Bytes()
	if c.isHEAD {
		payload = nil
	}
	if len(payload) < localStreamMin {
		out = append(out, payload...)
		payload = nil
	}
	c.out = out
	if _, err := c.io.Write(out); err != nil {
		return false
	}
	if len(payload) > 0 { // large: written from where it is, never copied into c.out
		if _, err := c.io.Write(payload); err != nil {
			return false
		}
	}
	return !closing
}

// localStreamMin is the smallest body a local handler's answer sends without
// copying it (or holding it) in the connection's out buffer: a large
// /worker/stats (155 MB for a million stored workers) was once copied three
// times per request and kept in every keep-alive connection's buffer.
const localStreamMin = 64 << 10

// dropBody reads a request body to its end, under the body timeouts.
func (c *clientConn) dropBody(body h1.BodyKind, length int64) error {
	bt := c.bodyTimer()
	if body == h1.BodyLength {
		for length > 0 {
			if c.rd.Len() == 0 {
				if err := c.fillBody(&bt); err != nil {
					return err
				}
			}
			n := min(int64(c.rd.Len()), length)
			c.rd.Discard(int(n))
			length -= n
			bt.read += n
		}
		return nil
	}
	var ch h1.Chunked
	ch.MaxTrailer = maxTrailer
	for !ch.Done() {
		data, _, err := ch.Step(&c.rd)
		if err == h1.ErrNeedMore {
			err = c.fillBody(&bt)
		}
		if err != nil {
			return err
		}
		bt.read += int64(len(data))
	}
	return nil
}

// localWriter collects a local handler's answer. A body of at least
// localStreamMin bytes written at once under the handler's own Content-Length
// (stats.Handler sets it) is not collected: the head goes out and the body
// is written through to the client as it comes.
type localWriter struct {
	c       *clientConn
	h       http.Header
	status  int
	wrote   bool
	body    bytes.Buffer
	closing bool // the connection closes after this answer
	minor   int  // the request's HTTP minor version

	streamed bool  // the head was sent; Write passes the body through
	left     int64 // body bytes the head announced and not yet written
	err      error // the first error writing to the client
}

func (w *localWriter) Header() http.Header { return w.h }

func (w *localWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
}

func (w *localWriter) Write(p []byte) (int, error) {
	w.wrote = true
	if !w.streamed && w.body.Len() == 0 && len(p) >= localStreamMin {
		if n, err := strconv.ParseInt(w.h.Get("Content-Length"), 10, 64); err == nil && n >= int64(len(p)) {
			w.streamed, w.left = true, n
			w.c.out = w.appendHead(w.c.out[:0], n)
			if _, err := w.c.io.Write(w.c.out); err != nil {
				w.err = err
			}
		}
	}
	if !w.streamed {
		return w.body.Write(p)
	}
	if w.err != nil {
		return 0, w.err
	}
	if int64(len(p)) > w.left {
		w.err = errors.New("local handler wrote more than its Content-Length")
		return 0, w.err
	}
	if w.c.isHEAD {
		w.left -= int64(len(p))
		return len(p), nil
	}
	n, err := w.c.io.Write(p)
	w.left -= int64(n)
	if err != nil {
		w.err = err
	}
	return n, err
}

// appendHead appends the answer's status line and header to out, with a
// Content-Length of length and golb's own Connection header.
func (w *localWriter) appendHead(out []byte, length int64) []byte {
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(w.status), 10)
	out = append(out, ' ')
	out = append(out, http.StatusText(w.status)...)
	out = append(out, "\r\n"...)
	w.h.Del("Content-Length")
	w.h.Del("Connection")
	w.h.Del("Transfer-Encoding")
	if _, ok := w.h["Date"]; !ok {
		out = appendDate(out)
	}
	for k, vs := range w.h {
		for _, v := range vs {
			out = append(out, k...)
			out = append(out, ": "...)
			out = append(out, v...)
			out = append(out, "\r\n"...)
		}
	}
	out = append(out, "Content-Length: "...)
	out = strconv.AppendInt(out, length, 10)
	switch {
	case w.closing:
		out = append(out, "\r\nConnection: close"...)
	case w.minor == 0:
		out = append(out, "\r\nConnection: keep-alive"...)
	}
	return append(out, "\r\n\r\n"...)
}

package balancer

import (
	"bytes"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/golb/golb/balancer/h1"
)

// This file writes the heads golb sends: the request to a worker and the
// response to a client. Both copy the fields that arrived, as bytes, minus
// the hop-by-hop ones (RFC 9110 §7.6.1), and add golb's own: the
// forwarding headers and Via on the way in, Via on the way out, and the
// framing of the body as golb sends it.

// hopByHop reports whether a header concerns one connection only and is
// never forwarded. The framing headers are among them: golb frames each
// body it sends itself. Trailer is not: it announces the trailer fields,
// which golb passes on (RFC 9110 §6.6.2).
func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return h1.EqualFold(name, "te")
	case 7:
		return h1.EqualFold(name, "upgrade")
	case 10:
		return h1.EqualFold(name, "connection") || h1.EqualFold(name, "keep-alive")
	case 14:
		return h1.EqualFold(name, "content-length")
	case 16:
		return h1.EqualFold(name, "proxy-connection")
	case 17:
		return h1.EqualFold(name, "transfer-encoding")
	case 18:
		return h1.EqualFold(name, "proxy-authenticate")
	case 19:
		return h1.EqualFold(name, "proxy-authorization")
	}
	return false
}

// fwdKind sorts the forwarding headers a client may send.
type fwdKind uint8

const (
	fwdNone  fwdKind = iota // not a forwarding header
	fwdFor                  // X-Forwarded-For
	fwdHost                 // X-Forwarded-Host
	fwdProto                // X-Forwarded-Proto
	fwdOther                // X-Forwarded-* else, X-Real-Ip, Forwarded
)

// forwardedHeader reports whether name is one of the headers proxies use
// to tell a worker whom and what they forward: X-Forwarded-* (For, Host,
// Proto, Port, Server, Prefix, Uri, ...), X-Real-Ip and Forwarded.
// Workers' middleware trusts them (go-chi's RealIP takes X-Real-Ip first),
// so golb replaces a client's, as Traefik does, unless told to trust them.
// A name spelt with underscores (X_Forwarded_For) is never trusted:
// CGI-style servers (PHP, WSGI, Rack) read it as the same variable as
// golb's own, so a client could forge what golb vouches for (nginx drops
// such names for this reason).
func forwardedHeader(name []byte) (kind fwdKind, spelt bool) {
	if len(name) == 9 {
		if h1.EqualFold(name, "forwarded") {
			return fwdOther, false
		}
		if is, spelt := headerIs(name, "x-real-ip"); is {
			return fwdOther, spelt
		}
		return fwdNone, false
	}
	const prefix = "x-forwarded-"
	if len(name) <= len(prefix) {
		return fwdNone, false
	}
	is, spelt := headerIs(name[:len(prefix)], prefix)
	if !is {
		return fwdNone, false
	}
	rest := name[len(prefix):]
	for _, c := range rest {
		spelt = spelt || c == '_'
	}
	switch {
	case h1.EqualFold(rest, "for"):
		return fwdFor, spelt
	case h1.EqualFold(rest, "host"):
		return fwdHost, spelt
	case h1.EqualFold(rest, "proto"):
		return fwdProto, spelt
	}
	return fwdOther, spelt
}

// headerIs reports whether name is lower (lower case, of the same length)
// in any case, with '_' taken for '-'; spelt says an underscore was.
// Header names are tokens, so c|0x20 is a letter or '-' only for a letter
// or '-'.
func headerIs(name []byte, lower string) (is, spelt bool) {
	for i := range len(name) {
		c := name[i]
		if c == '_' && lower[i] == '-' {
			spelt = true
			continue
		}
		if c|0x20 != lower[i] {
			return false, false
		}
	}
	return true, spelt
}

// requestHead appends the head golb sends a worker for the client request
// h: the request line (target in origin form), the client's end-to-end
// fields, X-Forwarded-For/Host/Proto, Via, and the body's framing.
func (b *Balancer) requestHead(out []byte, h *h1.Head, target, host []byte, clientIP string) []byte {
	out = append(out, h.Method...)
	out = append(out, ' ')
	out = append(out, target...)
	out = append(out, " HTTP/1.1\r\nHost: "...)
	out = append(out, host...)
	out = append(out, "\r\n"...)
	xffAt := -1
	keptHost, keptProto := false, false
	trust := b.conf().TrustForwardedHeaders // once: an Update may change it meanwhile
	hops := string(h.Method) == "OPTIONS" || string(h.Method) == "TRACE"
	for i := range h.Headers {
		f := &h.Headers[i]
		if hopByHop(f.Name) || h1.EqualFold(f.Name, "host") || h1.EqualFold(f.Name, "expect") {
			continue
		}
		if hops && len(f.Name) == 12 && h1.EqualFold(f.Name, "max-forwards") {
			// This hop counts down (RFC 9110 §7.6.2); 0 was answered.
			if n, ok := parseMaxForwards(f.Value); ok && n > 0 {
				out = append(out, f.Name...)
				out = append(out, ": "...)
				out = strconv.AppendInt(out, int64(n-1), 10)
				out = append(out, "\r\n"...)
				continue
			}
		}
		if h.ConnTokens && h.Names(f.Name) {
			continue
		}
		if kind, spelt := forwardedHeader(f.Name); kind != fwdNone {
			if !trust || spelt {
				continue
			}
			switch kind {
			case fwdFor: // extended below, as one list
				if xffAt < 0 {
					xffAt = i
				}
				continue
			case fwdHost:
				keptHost = true
			case fwdProto:
				keptProto = true
			}
		}
		out = appendField(out, f.Name, f.Value) // Via too: this hop's comes last
	}
	out = append(out, "X-Forwarded-For: "...)
	if xffAt >= 0 {
		for i := xffAt; i < len(h.Headers); i++ {
			if f := &h.Headers[i]; h1.EqualFold(f.Name, "x-forwarded-for") {
				out = append(out, f.Value...)
				out = append(out, ", "...)
			}
		}
	}
	out = append(out, clientIP...)
	out = append(out, "\r\n"...)
	if !keptHost {
		out = append(out, "X-Forwarded-Host: "...)
		out = append(out, host...)
		out = append(out, "\r\n"...)
	}
	if !keptProto {
		out = append(out, "X-Forwarded-Proto: http\r\n"...)
	}
	out = appendVia(out, h.Minor)
	if h.Upgrade {
		for i := range h.Headers {
			if f := &h.Headers[i]; h1.EqualFold(f.Name, "upgrade") {
				out = appendField(out, f.Name, f.Value)
			}
		}
		out = append(out, "Connection: Upgrade\r\n"...)
	}
	switch h.Body {
	case h1.BodyNone:
		if h.ZeroLength { // kept: some servers want a POST's length (411)
			out = append(out, "Content-Length: 0\r\n"...)
		}
	case h1.BodyLength:
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, h.ContentLength, 10)
		out = append(out, "\r\n"...)
	case h1.BodyChunked:
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	}
	return append(out, "\r\n"...)
}

// appendTrailer appends the field lines of a trailer section (each
// ending in CRLF, as h1.Chunked returns them) that may travel in one.
// Dropped are the fields a recipient that merges trailers into the
// header section (RFC 9110 §6.5.1 forbids it, some do it) would take for
// the message's framing, routing, content handling or credentials, and
// golb's own: hop-by-hop fields, Host, Trailer, Content-Length,
// -Encoding, -Type and -Range, Authorization, Cookie, Set-Cookie and
// the forwarding headers.
func appendTrailer(out, trailer []byte) []byte {
	for len(trailer) > 0 {
		line := trailer
		if i := bytes.Index(trailer, []byte("\r\n")); i >= 0 {
			line, trailer = trailer[:i+2], trailer[i+2:]
		} else {
			trailer = nil
		}
		name := line
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			name = line[:i]
		}
		if !trailerForbidden(name) {
			out = append(out, line...)
		}
	}
	return out
}

func trailerForbidden(name []byte) bool {
	if hopByHop(name) {
		return true
	}
	if kind, spelt := forwardedHeader(name); kind != fwdNone || spelt {
		return true
	}
	for _, f := range [...]string{"host", "trailer", "content-encoding", "content-type", "content-range",
		"authorization", "cookie", "set-cookie", "via"} {
		if h1.EqualFold(name, f) {
			return true
		}
	}
	return false
}

// upgradesToH2C reports whether the request's Upgrade offers h2c.
func upgradesToH2C(h *h1.Head) bool {
	for i := range h.Headers {
		if f := &h.Headers[i]; len(f.Name) == 7 && h1.EqualFold(f.Name, "upgrade") && h1.ContainsToken(f.Value, "h2c") {
			return true
		}
	}
	return false
}

// appendVia adds this hop to Via (RFC 9110 §7.6.3) as a field line of its
// own after the ones that arrived, which is the same list.
func appendVia(out []byte, minor int) []byte {
	if minor == 0 {
		return append(out, "Via: 1.0 golb\r\n"...)
	}
	return append(out, "Via: 1.1 golb\r\n"...)
}

// appendDate adds a Date field with the current time. The HTTP-date is
// formatted once a second and shared.
func appendDate(out []byte) []byte {
	now := time.Now()
	d := dateNow.Load()
	if d == nil || d.sec != now.Unix() {
		d = &dateStamp{sec: now.Unix(), field: now.UTC().AppendFormat([]byte("Date: "), http.TimeFormat)}
		d.field = append(d.field, "\r\n"...)
		dateNow.Store(d)
	}
	return append(out, d.field...)
}

// dateStamp is the Date field of one second.
type dateStamp struct {
	sec   int64
	field []byte // "Date: Wed, 02 Dec 2026 17:00:00 GMT\r\n"
}

var dateNow atomic.Pointer[dateStamp]

func appendField(out, name, value []byte) []byte {
	out = append(out, name...)
	out = append(out, ": "...)
	out = append(out, value...)
	return append(out, "\r\n"...)
}

// respFraming is how golb delimits a response body it sends a client.
type respFraming uint8

const (
	frameNone    respFraming = iota // no body (HEAD, 1xx, 204, 304)
	frameLength                     // Content-Length
	frameChunked                    // chunked (re-encoded from the worker's chunks)
	frameClose                      // until golb closes the connection
)

// responseHead appends the head golb sends the client for the worker's
// response r: its status line and end-to-end fields, Via, the framing, and
// Connection: close when golb closes the client connection after it (or
// keep-alive for an HTTP/1.0 client that keeps it).
func responseHead(out []byte, r *h1.Head, framing respFraming, clientMinor int, closing, upgrade bool) []byte {
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(r.Status), 10)
	out = append(out, ' ')
	out = append(out, r.Reason...)
	out = append(out, "\r\n"...)
	dated := false
	for i := range r.Headers {
		f := &r.Headers[i]
		if hopByHop(f.Name) {
			if upgrade && len(f.Name) == 7 && h1.EqualFold(f.Name, "upgrade") {
				out = appendField(out, f.Name, f.Value)
			}
			continue
		}
		if r.ConnTokens && r.Names(f.Name) {
			continue
		}
		dated = dated || len(f.Name) == 4 && h1.EqualFold(f.Name, "date")
		out = appendField(out, f.Name, f.Value)
	}
	if !dated && r.Status >= 200 {
		// A recipient with a clock adds the Date a response lacks
		// (RFC 9110 §6.6.1).
		out = appendDate(out)
	}
	out = appendVia(out, r.Minor)
	switch framing {
	case frameLength:
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, r.ContentLength, 10)
		out = append(out, "\r\n"...)
	case frameChunked:
		out = append(out, "Transfer-Encoding: "...)
		if r.Codings > 0 {
			out = append(h1.AppendCodings(out, r), ", "...)
		}
		out = append(out, "chunked\r\n"...)
	case frameClose:
		if r.Codings > 0 { // an HTTP/1.1 client's (relay refuses the rest)
			out = append(out, "Transfer-Encoding: "...)
			out = append(h1.AppendCodings(out, r), "\r\n"...)
		}
	case frameNone:
		// A HEAD answer or a 304 keeps the length the worker announced;
		// a 204 has none (RFC 9110 §8.6).
		if r.Body == h1.BodyLength && r.Status >= 200 && r.Status != 204 {
			out = append(out, "Content-Length: "...)
			out = strconv.AppendInt(out, r.ContentLength, 10)
			out = append(out, "\r\n"...)
		}
	}
	switch {
	case upgrade:
		out = append(out, "Connection: Upgrade\r\n"...)
	case closing:
		out = append(out, "Connection: close\r\n"...)
	case clientMinor == 0:
		out = append(out, "Connection: keep-alive\r\n"...)
	}
	return append(out, "\r\n"...)
}

package h1

// Error is a framing error with the status a server answers it with. After
// one, the connection's framing is lost: the server answers and closes.
type Error struct {
	Status int    // 400, 431, 501 or 505
	Msg    string // what was wrong, for logs and the error body
}

func (e *Error) Error() string { return "h1: " + e.Msg }

var (
	errBareLF           = &Error{400, "line ending without CR"}
	errRequestLine      = &Error{400, "malformed request line"}
	errFragment         = &Error{400, "request target has a fragment"}
	errStatusLine       = &Error{502, "malformed status line"}
	errVersion          = &Error{505, "HTTP version not supported"}
	errObsFold          = &Error{400, "obsolete line folding"}
	errHeaderLine       = &Error{400, "header line without a colon"}
	errHeaderName       = &Error{400, "invalid header name"}
	errHeaderValue      = &Error{400, "invalid byte in header value"}
	errDupLength        = &Error{400, "more than one Content-Length"}
	errBadLength        = &Error{400, "invalid Content-Length"}
	errBadTE            = &Error{400, "invalid Transfer-Encoding"}
	errUnsupportedTE    = &Error{501, "transfer coding other than chunked"}
	errLengthAndChunked = &Error{400, "both Content-Length and Transfer-Encoding"}
	errChunked10        = &Error{400, "Transfer-Encoding in an HTTP/1.0 request"}
	errDupHost          = &Error{400, "more than one Host"}
	errNoHost           = &Error{400, "no Host header"}
	errTooManyFields    = &Error{431, "more than 100 header fields"}

	// ErrHeadTooLarge is a head longer than the caller's limit.
	ErrHeadTooLarge = &Error{431, "request head too large"}

	errChunkSize     = &Error{400, "invalid chunk size"}
	errChunkEnd      = &Error{400, "chunk data not followed by CRLF"}
	errChunkLine     = &Error{400, "chunk size line too long"}
	errTrailer       = &Error{400, "invalid trailer field"}
	errTrailerLarge  = &Error{400, "trailer section too large"}
	errChunkOverhead = &Error{400, "chunk extensions outweigh the data"}
)

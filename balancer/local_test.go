package balancer

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"testing"
)

// TestLargeLocalAnswerIsNotCopiedIntoTheConnection pins a memory blow-up: a
// large /worker/stats (155 MB for a million stored workers) was copied into a
// buffer, then into the connection's out buffer, which every keep-alive
// connection then kept. A body written at once under its Content-Length now
// goes straight to the client (a large collected one is written from where
// it is), so the
// client has its first half before the handler writes the second; answers
// stay whole and keep-alive works.
func TestLargeLocalAnswerIsNotCopiedIntoTheConnection(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	half := len(big) / 2
	gates := make(chan *gate, 1) // a gate sent here holds the next /sized at half
	cfg := testConfig()
	cfg.Local = map[string]http.Handler{
		"/sized": http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Content-Length", strconv.Itoa(len(big)))
			rw.Header().Set("Content-Type", "application/json")
			if r.Method == http.MethodHead {
				return
			}
			_, _ = rw.Write(big[:half])
			select {
			case g := <-gates:
				g.wait()
			default:
			}
			_, _ = rw.Write(big[half:])
		}),
		"/unsized": http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			for i := 0; i < len(big); i += 1000 {
				_, _ = rw.Write(big[i:min(i+1000, len(big))])
			}
		}),
	}
	b := startBalancer(t, cfg, newWorker(t, "a", nil))
	c := testClient()
	for range 3 {
		for _, p := range []string{"/sized", "/unsized"} {
			resp, err := c.Get(baseURL(b) + p)
			if err != nil {
				t.Fatalf("GET %s: %v", p, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || !bytes.Equal(body, big) || resp.ContentLength != int64(len(big)) {
				t.Fatalf("GET %s: %d bytes (Content-Length %d), err %v; want the %d bytes", p, len(body), resp.ContentLength, err, len(big))
			}
			if p == "/sized" && resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("GET %s: header %v lost", p, resp.Header)
			}
		}
	}
	g := newGate()
	gates <- g
	resp, err := c.Get(baseURL(b) + "/sized")
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, half)
	if _, err := io.ReadFull(resp.Body, first); err != nil || !bytes.Equal(first, big[:half]) {
		t.Fatalf("reading the first half before the handler wrote the rest: %v", err)
	}
	g.open()
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(rest, big[half:]) {
		t.Fatalf("the second half: %d bytes, %v", len(rest), err)
	}
	req, _ := http.NewRequest(http.MethodHead, baseURL(b)+"/sized", nil)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code, body := get(t, c, baseURL(b)+"/api"); code != 200 || body != "ok a" {
		t.Fatalf("after HEAD, the next request on the connection: %d %q", code, body)
	}
}

package balancer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// rawBackend is the most trivial HTTP worker: it answers every request
// with a canned 200 without net/http, so that benchmark allocations are
// the balancer's (and its client's), not the worker's.
func rawBackend(tb testing.TB) string {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
	return rawServer(tb, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			for { // skip the request head; requests carry no body
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(line) <= 2 {
					break
				}
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	})
}

// rawServer listens on a loopback port until the test ends, and serves
// each connection on a goroutine of its own, closing it after.
func rawServer(tb testing.TB, serve func(net.Conn)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func benchBalancer(b *testing.B, policy string) *Balancer {
	b.Helper()
	cfg := Config{Name: "bench", Policy: policy, Health: HealthCheck{Interval: -1}}
	bal, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := bal.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bal.Shutdown(context.Background()) })
	bal.SetBackends([]Backend{{ID: "w1", Address: rawBackend(b)}})
	return bal
}

// BenchmarkProxy measures the full path over loopback: client → balancer
// listener → worker and back. Allocations include the benchmark's own
// HTTP client.
func BenchmarkProxy(b *testing.B) {
	bal := benchBalancer(b, PolicyRoundRobin)
	url := "http://" + bal.Addrs()[0] + "/api/v1/hello"
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkProxyRaw is BenchmarkProxy with a raw keep-alive HTTP/1.1
// client (a canned request, the answer read without allocating), so that
// the allocations (none) and most of the CPU are the balancer's own. With -cpu 1
// it is the per-request cost of the engine plus the trivial worker.
func BenchmarkProxyRaw(b *testing.B) {
	bal := benchBalancer(b, PolicyRoundRobin)
	addr := bal.Addrs()[0]
	const req = "GET /api/v1/hello HTTP/1.1\r\nHost: golb.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		reqb := []byte(req)
		for pb.Next() {
			if _, err := c.Write(reqb); err != nil {
				b.Error(err)
				return
			}
			if err := skipResponse(br); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkObserve is the per-attempt cost of the counters.
func BenchmarkObserve(b *testing.B) {
	be := newBackend("w1", "127.0.0.1:1")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			be.inflight.Add(1)
			be.observe(class2xx, 3*time.Millisecond)
			be.release()
		}
	})
}

// skipResponse reads one 200 answer with a Content-Length from br without
// allocating, so that BenchmarkProxyRaw's allocations are the balancer's.
func skipResponse(br *bufio.Reader) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status line %q", line)
	}
	length := -1
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if name, value, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(name, []byte("Content-Length")) {
			length = 0
			for _, d := range bytes.TrimSpace(value) {
				length = 10*length + int(d-'0')
			}
		}
	}
	if length < 0 {
		return errors.New("answer without Content-Length")
	}
	_, err = br.Discard(length)
	return err
}

// BenchmarkSilent measures the check a pooled worker connection passes
// before its reuse (silent, rawio_linux.go): one MSG_PEEK that finds
// nothing. It is the one system call per request golb makes beyond
// HAProxy's two reads and two writes, so this is what it costs on the
// machine at hand, beside BenchmarkSyscall's bare system call.
func BenchmarkSilent(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	if peer := <-accepted; peer != nil {
		defer peer.Close()
	}
	rw := newRawIO(nc, time.Second)
	for b.Loop() {
		if !silent(rw) {
			b.Fatal("an idle connection is not silent")
		}
	}
}

// BenchmarkSyscall is the cheapest system call (getppid), for scale: on a
// VM whose system calls trap to the hypervisor it is ten times a bare
// machine's.
func BenchmarkSyscall(b *testing.B) {
	for b.Loop() {
		syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
	}
}

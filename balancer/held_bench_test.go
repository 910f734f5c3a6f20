package balancer

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// This file measures what a held connection costs golb: the many-
// connections workload of the bench harness (5,000 clients waiting on
// 10 s workers) in-process and small, as bytes of goroutine stack and of
// heap per connection, so that a change that grows either shows in
// `go test -run - -bench HeldConns -benchtime 1x ./balancer`. The worker
// runs in a child process (heldWorkerEnv), so that the runtime figures of
// this process are golb's and the client's (which uses no goroutines).

const heldWorkerEnv = "GOLB_TEST_HELD_WORKER"

// heldWorker is the child process: a raw worker on a loopback port (its
// first line on stdout) that answers GET /fast at once and holds every
// other request, writing one byte to stdout for each, until its stdin
// closes.
func heldWorker() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	release := make(chan struct{})
	held := make(chan struct{}, 1024)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(release)
		os.Exit(0)
	}()
	go func() {
		for range held {
			_, _ = os.Stdout.Write([]byte{'h'})
		}
	}()
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			br := bufio.NewReaderSize(c, 1024)
			for {
				hold := false
				for first := true; ; first = false {
					line, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					if first {
						hold = !bytes.HasPrefix(line, []byte("GET /fast "))
					}
					if len(line) <= 2 {
						break
					}
				}
				if hold {
					held <- struct{}{}
					<-release
				}
				if _, err := c.Write(resp); err != nil {
					return
				}
			}
		}()
	}
}

// startHeldWorker runs heldWorker in a child process until the test ends.
func startHeldWorker(tb testing.TB) (addr string, held *bufio.Reader) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), heldWorkerEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	held = bufio.NewReader(stdout)
	line, err := held.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "127.0.0.1:") {
		tb.Fatalf("the held worker did not start: %q %v", line, err)
	}
	return strings.TrimSpace(line), held
}

// holdConns opens n keep-alive connections to addr; each makes one
// request answered at once (the whole proxy path once), then one the
// worker holds. It returns once the worker holds all n, with the
// connections to close.
func holdConns(tb testing.TB, addr string, held *bufio.Reader, n int) []net.Conn {
	tb.Helper()
	const head = " HTTP/1.1\r\nHost: golb.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
	fast, slow := []byte("GET /fast"+head), []byte("GET /api/v1/hello"+head)
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			tb.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write(fast); err != nil {
			tb.Fatal(err)
		}
		if err := skipResponse(bufio.NewReaderSize(c, 512)); err != nil {
			tb.Fatal(err)
		}
		if _, err := c.Write(slow); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := io.ReadFull(held, make([]byte, n)); err != nil {
		tb.Fatalf("waiting for the worker to hold %d requests: %v", n, err)
	}
	time.Sleep(100 * time.Millisecond) // past watchAfter: every wait is suspended
	return conns
}

// memNow is the stack and heap in use after a collection.
func memNow() (stack, heap int64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.StackInuse), int64(ms.HeapAlloc)
}

// BenchmarkHeldConns reports golb's stack and heap bytes per client
// connection waiting on a slow worker (stack-B/conn, heap-B/conn): what
// this process holds with the connections open, less what it holds
// before.
func BenchmarkHeldConns(b *testing.B) {
	const n = 2000 // above busyConns: connections wait without read buffers
	for b.Loop() {
		addr, held := startHeldWorker(b)
		cfg := Config{Name: "held", Health: HealthCheck{Interval: -1}, ResponseHeaderTimeout: time.Minute}
		bal, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := bal.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		bal.SetBackends([]Backend{{ID: "w1", Address: addr}})
		s0, h0 := memNow()
		conns := holdConns(b, bal.Addrs()[0], held, n)
		s1, h1 := memNow()
		b.ReportMetric(float64(s1-s0)/n, "stack-B/conn")
		b.ReportMetric(float64(h1-h0)/n, "heap-B/conn")
		for _, c := range conns {
			c.Close()
		}
		_ = bal.Shutdown(context.Background())
	}
}

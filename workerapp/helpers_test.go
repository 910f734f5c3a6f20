package workerapp

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golb/golb/internal/testutil"
)

// quietLogger keeps lifecycle logs out of the test output unless -v.
func quietLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// seeded makes s draw from a fixed sequence, one whole draw per request.
func seeded(s *Server, seed uint64) *Server {
	s.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s.rngMu = new(sync.Mutex)
	return s
}

// freePort returns a port on 127.0.0.1 that was free a moment ago, from
// this package's own range below the kernel's ephemeral ports, so that no
// other package's outgoing connection takes it before the test binds it.
func freePort(t testing.TB) int { return testutil.PortRange(t, 32000, 32760, 1) }

// waitFor polls cond every 5ms until it holds, failing the test after timeout.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("%s after %s", what, time.Since(start).Round(time.Millisecond))
}

// running is a Server whose Run goroutine the test controls.
type running struct {
	s      *Server
	base   string // http://127.0.0.1:PORT
	addr   string
	cancel context.CancelFunc
	done   chan error // receives Run's result
}

// startRun starts s.Run on its configured port and waits until /healthz answers 200.
func startRun(t *testing.T, s *Server) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{s: s, addr: s.Addr(), base: "http://" + s.Addr(), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return within 30s of cleanup")
		}
	})
	client := &http.Client{Timeout: 2 * time.Second}
	waitFor(t, "worker healthy on "+r.addr, 20*time.Second, func() bool {
		select {
		case err := <-r.done:
			r.done <- err // for the cleanup, which waits for Run's result
			t.Fatalf("Run returned before serving: %v", err)
		default:
		}
		resp, err := client.Get(r.base + PathHealthz)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return r
}

// wait returns Run's result, failing the test if it takes longer than timeout.
func (r *running) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	start := time.Now()
	select {
	case err := <-r.done:
		r.done <- err // keep it for the cleanup
		t.Logf("Run returned after %s: %v", time.Since(start).Round(time.Millisecond), err)
		return err
	case <-time.After(timeout):
		t.Fatalf("Run did not return within %s", timeout)
		return nil
	}
}

type httpResult struct {
	status int
	ctype  string
	body   string
	err    error
}

// getAsync performs GET url in a goroutine on its own connection.
func getAsync(url string) <-chan httpResult {
	ch := make(chan httpResult, 1)
	go func() {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get(url)
		if err != nil {
			ch <- httpResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- httpResult{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), body: string(b), err: err}
	}()
	return ch
}

func portString(p int) string { return strconv.Itoa(p) }

package workerapp

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golb/golb/internal/testutil"
)

const helperEnv = "GOLB_WORKERAPP_HELPER"

// TestMain lets the test binary run as the worker itself: with GOLB_WORKERAPP_HELPER=1
// it is `golb worker`, so the signal tests drive a real process.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(Main(nil, os.Getenv, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestMainBadSettingsExit2WithOneLine(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no port", nil, map[string]string{}, "PORT is not set"},
		{"bad rate", nil, map[string]string{"PORT": "6000", "GOLB_FAILURE_RATE": "1.5"}, `GOLB_FAILURE_RATE "1.5": must be between 0 and 1`},
		{"bad delay", nil, map[string]string{"PORT": "6000", "GOLB_AVG_DELAY": "-5ms"}, `GOLB_AVG_DELAY "-5ms"`},
		{"bad port", nil, map[string]string{"PORT": "x"}, `PORT "x"`},
		{"argument", []string{"--port=6000"}, map[string]string{"PORT": "6000"}, `unexpected argument "--port=6000"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := Main(tt.args, envMap(tt.env), &stderr)
			out := stderr.String()
			if code != 2 {
				t.Errorf("Main exit code %d, want 2", code)
			}
			if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
				t.Errorf("stderr is not a single line: %q", out)
			}
			if !strings.HasPrefix(out, "golb worker: ") || !strings.Contains(out, tt.want) {
				t.Errorf("stderr %q, want golb worker: ...%s...", out, tt.want)
			}
		})
	}
}

func TestMainHelp(t *testing.T) {
	var stderr bytes.Buffer
	if code := Main([]string{"-h"}, envMap(nil), &stderr); code != 0 {
		t.Errorf("Main -h: exit %d, want 0", code)
	}
	for _, v := range []string{EnvPort, EnvBindAddr, EnvWorkerID, EnvAvgDelay, EnvFailureRate, EnvDrainTimeout, EnvAcceptGrace} {
		if !strings.Contains(stderr.String(), v) {
			t.Errorf("usage does not mention %s", v)
		}
	}
}

func TestMainPortInUseExit1(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- Main(nil, envMap(map[string]string{"PORT": portString(port)}), &stderr) }()
	select {
	case code := <-done:
		if code != 1 {
			t.Errorf("Main on a busy port: exit %d, want 1", code)
		}
		if !strings.Contains(stderr.String(), "address already in use") {
			t.Errorf("stderr does not say why: %q", stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Main on a busy port still running after 10s")
	}
}

type workerProc struct {
	cmd    *exec.Cmd
	base   string
	stderr *testutil.SyncBuffer
	exited chan struct{} // closed when the process has exited
	err    error         // cmd.Wait's result, once exited is closed
}

// startWorkerProcess runs this test binary as `golb worker` with env and waits until
// /healthz answers 200.
func startWorkerProcess(t *testing.T, env map[string]string) *workerProc {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(os.Args[0])
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == EnvPort || k == EnvBindAddr || strings.HasPrefix(k, "GOLB_") {
			continue // only the test decides the worker's settings
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, helperEnv+"=1", EnvPort+"="+portString(port))
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &workerProc{cmd: cmd, base: "http://127.0.0.1:" + portString(port), stderr: &testutil.SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting worker process: %v", err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("worker stderr:\n%s", p.stderr)
		}
	})
	client := &http.Client{Timeout: 2 * time.Second}
	waitFor(t, "worker process healthy", 30*time.Second, func() bool {
		select {
		case <-p.exited:
			t.Fatalf("worker process exited early: %v\n%s", p.err, p.stderr)
		default:
		}
		resp, err := client.Get(p.base + PathHealthz)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// waitExit waits for the process to exit and returns its exit code.
func (p *workerProc) waitExit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	start := time.Now()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Fatalf("worker process still running %s after SIGTERM", timeout)
	}
	t.Logf("worker process exited after %s: %v", time.Since(start).Round(time.Millisecond), p.err)
	var ee *exec.ExitError
	if p.err != nil && !errors.As(p.err, &ee) {
		t.Fatalf("waiting for worker process: %v", p.err)
	}
	return p.cmd.ProcessState.ExitCode()
}

// SIGTERM while a request is in flight: the request completes with 200, /healthz
// turns 503, and the process exits 0.
func TestMainSIGTERMDrainsInFlightRequest(t *testing.T) {
	t.Parallel()
	// The accept grace guarantees the request, already written to the socket when the
	// signal is sent, is read and served even if the server had not yet read it.
	p := startWorkerProcess(t, map[string]string{
		EnvWorkerID: "sigterm-1", EnvAvgDelay: "2s", EnvFailureRate: "0", EnvAcceptGrace: "2s",
	})

	written := make(chan struct{})
	res := make(chan httpResult, 1)
	go func() {
		trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(written) }}
		req, _ := http.NewRequest("GET", p.base+PathHello, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Do(req)
		if err != nil {
			res <- httpResult{err: err}
			return
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, err = b.ReadFrom(resp.Body)
		res <- httpResult{status: resp.StatusCode, body: b.String(), err: err}
	}()
	select {
	case <-written:
	case r := <-res:
		t.Fatalf("request ended before it was sent: %+v", r)
	case <-time.After(20 * time.Second):
		t.Fatal("request not written within 20s")
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("sending SIGTERM: %v", err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	waitFor(t, "healthz 503 after SIGTERM", 10*time.Second, func() bool {
		resp, err := client.Get(p.base + PathHealthz)
		if err != nil {
			t.Fatalf("healthz during the accept grace: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})

	select {
	case r := <-res:
		if r.err != nil || r.status != 200 || !strings.Contains(r.body, "hello from container: sigterm-1") {
			t.Errorf("in-flight request across SIGTERM: status %d body %q err %v, want 200", r.status, r.body, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("in-flight request not answered within 30s of SIGTERM")
	}
	if code := p.waitExit(t, 30*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if out := p.stderr.String(); !strings.Contains(out, "worker draining") || !strings.Contains(out, "worker stopped") {
		t.Errorf("stderr lacks the drain log lines:\n%s", out)
	}
}

// SIGTERM on an idle worker, without a grace: exit 0 and the port is free again.
func TestMainSIGTERMIdleExits0(t *testing.T) {
	t.Parallel()
	p := startWorkerProcess(t, map[string]string{EnvAvgDelay: "0s"})
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("sending SIGTERM: %v", err)
	}
	if code := p.waitExit(t, 30*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	addr := strings.TrimPrefix(p.base, "http://")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port not released after exit: %v", err)
	}
	ln.Close()
}

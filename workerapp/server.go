package workerapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Paths served by the worker.
const (
	PathHello   = "/api/v1/hello"
	PathHealthz = "/healthz"
)

// Server is one worker: its HTTP handler and its lifecycle (Run). Create it with New.
type Server struct {
	cfg    Config
	logger *slog.Logger

	// rng draws delays and failures. In production it reads the runtime's
	// goroutine-safe generator; tests install a seeded one together with rngMu,
	// which then makes each two-value draw atomic, so concurrent requests consume
	// the seeded sequence in whole draws.
	rng   *rand.Rand
	rngMu *sync.Mutex

	helloBody []byte
	draining  atomic.Bool
	started   atomic.Bool
	inflight  atomic.Int64 // /api/v1/hello requests inside the handler
}

// New returns a Server for cfg, with the zero fields that have a default filled in.
// Logs go to slog.Default(); see NewWithLogger. Run validates cfg.
func New(cfg Config) *Server {
	return NewWithLogger(cfg, nil)
}

// NewWithLogger is New with a logger for lifecycle events (nil: slog.Default()).
func NewWithLogger(cfg Config, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	cfg = cfg.withDefaults()
	body, _ := json.Marshal(map[string]string{"message": "hello from container: " + cfg.WorkerID})
	return &Server{
		cfg:       cfg,
		logger:    logger,
		rng:       rand.New(runtimeSource{}),
		helloBody: body,
	}
}

// Config returns the server's settings, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// runtimeSource is the runtime's per-thread generator, the one behind the top-level
// math/rand/v2 functions: safe for concurrent use, and so is a Rand over it (a v2
// Rand keeps no state besides its source).
type runtimeSource struct{}

func (runtimeSource) Uint64() uint64 { return rand.Uint64() }

var _ rand.Source = runtimeSource{}

// draw decides one hello request: its delay, uniform in [avg/2, 3·avg/2], and
// whether it fails, a Bernoulli trial with probability exactly FailureRate.
func (s *Server) draw(r *rand.Rand) (delay time.Duration, fail bool) {
	return drawDelay(r, s.cfg.AvgDelay), drawFail(r, s.cfg.FailureRate)
}

// drawFail reports a failure with probability rate: Float64 is in [0, 1), so rate 0
// never fails and rate 1 always does.
func drawFail(r *rand.Rand, rate float64) bool {
	return r.Float64() < rate
}

// drawDelay returns a delay uniform over the integers in [ceil(avg/2), floor(3·avg/2)],
// whose mean is exactly avg. avg must be in 0..MaxAvgDelay.
func drawDelay(r *rand.Rand, avg time.Duration) time.Duration {
	if avg <= 0 {
		return 0
	}
	lo := (avg + 1) / 2
	hi := avg + avg/2
	return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
}

// Handler returns the worker's HTTP handler: /api/v1/hello, /healthz, and JSON 404
// and 405 answers for everything else.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	var h http.HandlerFunc
	switch r.URL.Path {
	case PathHello:
		h = s.hello
	case PathHealthz:
		h = s.healthz
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found: " + r.URL.Path})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed,
			map[string]string{"error": "method " + r.Method + " not allowed on " + r.URL.Path + "; use GET"})
		return
	}
	h(w, r)
}

func (s *Server) hello(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)

	if s.rngMu != nil {
		s.rngMu.Lock()
	}
	delay, fail := s.draw(s.rng)
	if s.rngMu != nil {
		s.rngMu.Unlock()
	}

	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			// The client went away (or the connection was closed at the drain
			// timeout): nobody is left to answer.
			t.Stop()
			return
		}
	}

	if fail {
		writeJSON(w, http.StatusInternalServerError, map[string]string{
			"error": "simulated failure (failure rate " + strconv.FormatFloat(s.cfg.FailureRate, 'g', -1, 64) + ")",
		})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(s.helloBody)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(s.helloBody)
}

var (
	bodyHealthy  = []byte(`{"status":"ok"}`)
	bodyDraining = []byte(`{"status":"draining"}`)
)

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	status, body := http.StatusOK, bodyHealthy
	if s.draining.Load() {
		status, body = http.StatusServiceUnavailable, bodyDraining
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only maps of strings are passed here; Marshal cannot fail on them.
		body = []byte(`{"error":"internal error"}`)
		status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Addr is the address Run listens on: BindAddr:Port.
func (s *Server) Addr() string {
	return net.JoinHostPort(s.cfg.BindAddr, strconv.Itoa(s.cfg.Port))
}

// Run validates the settings, listens on BindAddr:Port (an error if that fails, e.g.
// the port is in use) and serves until ctx is cancelled. Then it drains: /healthz
// answers 503, the worker keeps accepting for AcceptGrace (default 0), stops
// accepting, and waits up to DrainTimeout for in-flight requests to finish. It
// returns nil after a clean drain, an error wrapping ErrDrainTimeout when requests
// were cut off, or the error that stopped serving. Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	if err := s.cfg.Validate(); err != nil {
		return fmt.Errorf("starting worker: %w", err)
	}
	if !s.started.CompareAndSwap(false, true) {
		return ErrAlreadyStarted
	}
	if ctx.Err() != nil {
		return nil // stopped before it started
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.Addr())
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("listening on %s: %w", s.Addr(), err)
	}
	return s.serve(ctx, ln)
}

// serve runs the HTTP server on ln until ctx is cancelled, then drains (see Run).
// It always closes ln.
func (s *Server) serve(ctx context.Context, ln net.Listener) error {
	addr := ln.Addr().String()
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	s.logger.Info("worker listening", "addr", addr, "worker_id", s.cfg.WorkerID,
		"avg_delay", s.cfg.AvgDelay, "failure_rate", s.cfg.FailureRate)

	select {
	case err := <-serveErr:
		// Serve only returns early on a listener failure.
		_ = srv.Close()
		return fmt.Errorf("serving on %s: %w", addr, err)
	case <-ctx.Done():
	}

	s.draining.Store(true)
	s.logger.Info("worker draining", "addr", addr, "in_flight", s.inflight.Load(),
		"accept_grace", s.cfg.AcceptGrace, "drain_timeout", s.cfg.DrainTimeout)
	if s.cfg.AcceptGrace > 0 {
		t := time.NewTimer(s.cfg.AcceptGrace)
		select {
		case <-t.C:
		case err := <-serveErr:
			t.Stop()
			_ = srv.Close()
			return fmt.Errorf("serving on %s during accept grace: %w", addr, err)
		}
	}

	// The parent ctx is already cancelled; the drain has its own deadline.
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout)
	defer cancel()
	err := srv.Shutdown(drainCtx)
	if err != nil {
		left := s.inflight.Load()
		_ = srv.Close() // cut the remaining connections; their handlers see ctx.Done
		<-serveErr
		s.logger.Warn("worker drain timed out; closed remaining connections",
			"addr", addr, "in_flight", left, "drain_timeout", s.cfg.DrainTimeout)
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("draining %s: %d requests still in flight after %s: %w",
				addr, left, s.cfg.DrainTimeout, ErrDrainTimeout)
		}
		return fmt.Errorf("draining %s: %w", addr, err)
	}
	<-serveErr // http.ErrServerClosed, once Shutdown has closed the listener
	s.logger.Info("worker stopped", "addr", addr)
	return nil
}

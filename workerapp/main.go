package workerapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// Usage is printed by Main for -h and for unexpected arguments.
const Usage = `usage: golb worker
Runs the demo worker (GET /api/v1/hello, GET /healthz) until SIGTERM or SIGINT.
Settings come from the environment:
  PORT                port to listen on, 1..65535 (required)
  BIND_ADDR           address to listen on (default 127.0.0.1)
  GOLB_WORKER_ID      name in the hello message (default: host name)
  GOLB_AVG_DELAY      mean response delay, a Go duration (default 500ms)
  GOLB_FAILURE_RATE   probability of an HTTP 500, 0..1 (default 0)
  GOLB_DRAIN_TIMEOUT  longest wait for in-flight requests on shutdown (default 10s)
  GOLB_ACCEPT_GRACE   keep accepting this long after shutdown begins (default 0s)
`

// Main is the entry point of `golb worker`. args are the arguments after "worker"
// (none are accepted), getenv reads the settings (nil: os.Getenv), and logs and errors
// go to stderr. It runs until SIGTERM or SIGINT, then drains; a second signal exits
// at once. It returns 0 after a clean stop, 2 for bad settings or arguments (one
// line on stderr), and 1 when the worker fails (e.g. the port is in use, or the
// drain timed out).
func Main(args []string, getenv func(string) string, stderr io.Writer) int {
	if stderr == nil {
		stderr = io.Discard
	}
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			fmt.Fprint(stderr, Usage)
			return 0
		}
		fmt.Fprintf(stderr, "golb worker: unexpected argument %q; settings come from the environment (golb worker -h)\n", args[0])
		return 2
	}
	cfg, err := ConfigFromEnv(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "golb worker: %v\n", err)
		return 2
	}

	logger := slog.New(slog.NewTextHandler(stderr, nil)).With("component", "worker")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		// After the first signal, restore the default handling so that a second
		// one ends the process without waiting for the drain.
		<-ctx.Done()
		stop()
	}()

	if err := NewWithLogger(cfg, logger).Run(ctx); err != nil {
		logger.Error("worker failed", "err", err)
		if errors.Is(err, ErrInvalidConfig) {
			return 2
		}
		return 1
	}
	return 0
}

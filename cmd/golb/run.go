package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/golb/golb/core"
	"github.com/golb/golb/core/config"
)

// stopSignals make `golb run` drain, stop its workers, flush stats and exit
// 0; a second one exits at once. SIGHUP reloads the config instead
// (reload.go).
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

// cmdRun is `golb run`: the agent in the foreground, until a stop signal.
func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", stderr, "Usage: golb run [-v] [FILE]\n\nRuns the agent in the foreground. Without FILE, the embedded default:\n3 process workers from port 6000 behind 2 listeners from 5050.\nCtrl-C or SIGTERM drains, stops the workers, flushes stats and exits 0.\nA second signal exits at once and leaves the workers for the next run to adopt.\nSIGHUP re-reads FILE and applies the difference live, as `golb reload` does.")
	verbose := fs.Bool("v", false, "verbose logs (driver plugins' debug output)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return exitUsage
	}
	tuneGC()
	// Listen for signals first: a signal that arrives while the config loads
	// must not be lost, nor (SIGHUP from a closed terminal) kill golb
	// without a clean shutdown.
	ctx, stop := signal.NotifyContext(context.Background(), stopSignals...)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	logger := newLogger(stderr, *verbose)
	slog.SetDefault(logger)
	opts := coreOptions(logger, *verbose)
	// Driver names are resolved while parsing, as validate does: a missing
	// driver is reported with the file's other errors.
	cfg, files, diags := config.LoadWith(fs.Arg(0), config.Options{Builtins: opts.Builtins})
	printDiags(stderr, files, diags)
	if diags.HasErrors() {
		fmt.Fprintln(stderr, "golb: not starting: fix the config first")
		return exitError
	}
	if fs.Arg(0) == "" {
		logger.Info("no config file given: using the embedded default (see `golb help`)")
	}
	agent, err := core.New(cfg, opts)
	if err != nil {
		fmt.Fprintln(stderr, "golb:", err)
		return exitError
	}
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	diags = agent.Prepare(pctx)
	cancel()
	if ctx.Err() != nil { // Ctrl-C while the drivers started
		agent.Close()
		return exitOK
	}
	printDiags(stderr, files, diags)
	if diags.HasErrors() {
		agent.Close()
		if failed := agent.FailedDrivers(); len(failed) > 0 {
			// The plugin's own failure, not the config's.
			fmt.Fprintf(stderr, "golb: not starting: the driver plugin %s failed to start\n", strings.Join(failed, ", "))
		} else {
			fmt.Fprintln(stderr, "golb: not starting: fix the config first")
		}
		return exitError
	}
	go func() {
		// A second signal during shutdown exits at once, leaving the workers
		// running for the next golb run to adopt.
		<-ctx.Done()
		stop()
		again := make(chan os.Signal, 1)
		signal.Notify(again, stopSignals...)
		<-again
		logger.Warn("second signal: exiting now; the workers keep running and the next golb run adopts them")
		os.Exit(130)
	}()
	go reloadOnHUP(ctx, agent, hup, logger)
	if err := agent.Run(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			return exitOK
		}
		fmt.Fprintln(stderr, "golb:", err)
		return exitError
	}
	return exitOK
}

// tuneGC collects garbage sooner than Go's default (GOGC=10, not 100)
// unless $GOGC says otherwise. The proxy allocates nothing per request, so
// this costs no CPU on the request path; it keeps the garbage of a burst of
// new connections from doubling the agent's memory (5,000 connections:
// 85 MiB peak RSS at 100, 72 MiB at 25 with an older, smaller binary;
// 81.9 MiB at 25 and 78.3 MiB at 10 with this one,
// go run ./bench -workloads conns -paths golb -reps 1).
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(10)
	}
}

// newLogger is golb's structured log on stderr (debug lines with verbose).
func newLogger(stderr io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

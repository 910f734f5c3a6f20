package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"

	"github.com/golb/golb/core"
	"github.com/golb/golb/core/config"
)

func newFlags(name string, stderr io.Writer, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\n", help)
		fs.PrintDefaults()
	}
	return fs
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// parseFlags parses args; when it returns ok false, the command exits with
// code: 0 for -h (help was printed), 2 for bad flags.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	err := fs.Parse(flagsFirst(fs, args))
	switch {
	case err == nil:
		return exitOK, true
	case errors.Is(err, flag.ErrHelp):
		return exitOK, false
	default:
		return exitUsage, false
	}
}

// flagsFirst moves flags (and their values) before the positional
// arguments, so `golb scale web 3 --admin ADDR` works like
// `golb scale --admin ADDR web 3`. "--" ends the flags as usual.
func flagsFirst(fs *flag.FlagSet, args []string) []string {
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' || isNumber(a) { // "-1" is a (bad) count, not a flag
			rest = append(rest, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // Parse reports it
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if len(rest) > 0 && len(rest[0]) > 1 && rest[0][0] == '-' && isNumber(rest[0]) {
		flags = append(flags, "--") // so that Parse leaves "-1" to the command
	}
	return append(flags, rest...)
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

func newLogger(stderr io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// loadConfig parses the file (or the default) and prints diagnostics.
func loadConfig(path string, stderr io.Writer) (*config.Config, map[string]*hcl.File, bool) {
	cfg, files, diags := config.Load(path)
	printDiags(stderr, files, diags)
	return cfg, files, !diags.HasErrors()
}

// printDiags prints each diagnostic once, compiler style: a
// `file:line:column: severity: summary` line (for editors and scripts), the
// offending source line with the span underlined, then the fix hint.
//
//	x.hcl:3:13: error: Invalid admin address "127.0.0.1:5040x"
//	    3 |   address = "127.0.0.1:5040x"
//	      |             ^^^^^^^^^^^^^^^^^
//	  Write host:port with a port of 0 to 65535, …
func printDiags(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics) {
	for _, d := range diags {
		sev := "error"
		if d.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		if d.Subject == nil {
			fmt.Fprintf(w, "golb: %s: %s\n", sev, d.Summary)
		} else {
			s := d.Subject
			fmt.Fprintf(w, "%s:%d:%d: %s: %s\n", s.Filename, s.Start.Line, s.Start.Column, sev, d.Summary)
			if f := files[s.Filename]; f != nil {
				writeSourceLine(w, f.Bytes, *s)
			}
		}
		if d.Detail != "" {
			fmt.Fprintf(w, "  %s\n", d.Detail)
		}
	}
}

// writeSourceLine prints the line where r starts, numbered, and underlines
// r (up to the end of that line).
func writeSourceLine(w io.Writer, src []byte, r hcl.Range) {
	if r.Start.Byte < 0 || r.Start.Byte > len(src) {
		return
	}
	lineStart := bytes.LastIndexByte(src[:r.Start.Byte], '\n') + 1
	lineEnd := len(src)
	if i := bytes.IndexByte(src[lineStart:], '\n'); i >= 0 {
		lineEnd = lineStart + i
	}
	line := strings.TrimRight(string(src[lineStart:lineEnd]), "\r")
	end := min(max(r.End.Byte, r.Start.Byte), lineStart+len(line))
	// Keep tabs in the indent so the carets line up under the span.
	pad := []rune(string(src[lineStart:r.Start.Byte]))
	for i, c := range pad {
		if c != '\t' {
			pad[i] = ' '
		}
	}
	marks := max(utf8.RuneCount(src[r.Start.Byte:end]), 1)
	num := strconv.Itoa(r.Start.Line)
	gutter := strings.Repeat(" ", len(num))
	fmt.Fprintf(w, "  %s | %s\n  %s | %s%s\n", num, line, gutter, string(pad), strings.Repeat("^", marks))
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", stderr, "Usage: golb validate FILE\n\nChecks FILE, including each driver's config block, and starts nothing.\nExit 0 when valid, 1 on any error.")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	cfg, files, ok := loadConfig(fs.Arg(0), stderr)
	if !ok {
		return exitError
	}
	agent, err := core.New(cfg, core.Options{Logger: newLogger(io.Discard, false)})
	if err != nil {
		fmt.Fprintln(stderr, "golb:", err)
		return exitError
	}
	defer agent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	diags := agent.Prepare(ctx)
	printDiags(stderr, files, diags)
	if diags.HasErrors() {
		return exitError
	}
	fmt.Fprintf(stdout, "%s: valid (%s, %s)\n", fs.Arg(0), plural(len(cfg.Groups), "group"), plural(len(cfg.Balancers), "balancer"))
	return exitOK
}

// stopSignals make `golb run` drain, stop its workers, flush stats and exit
// 0; a second one exits at once.
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", stderr, "Usage: golb run [-v] [FILE]\n\nRuns the agent in the foreground. Without FILE, the embedded default:\n3 process workers from port 6000 behind 2 listeners from 5050.\nCtrl-C, SIGTERM or SIGHUP drains, stops the workers, flushes stats and exits 0.\nA second signal exits at once and leaves the workers for the next run to adopt.")
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
	logger := newLogger(stderr, *verbose)
	slog.SetDefault(logger)
	cfg, files, ok := loadConfig(fs.Arg(0), stderr)
	if !ok {
		fmt.Fprintln(stderr, "golb: not starting: fix the config first")
		return exitError
	}
	if fs.Arg(0) == "" {
		logger.Info("no config file given: using the embedded default (see `golb help`)")
	}
	agent, err := core.New(cfg, core.Options{Logger: logger, Verbose: *verbose})
	if err != nil {
		fmt.Fprintln(stderr, "golb:", err)
		return exitError
	}
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	diags := agent.Prepare(pctx)
	cancel()
	if ctx.Err() != nil { // Ctrl-C while the drivers started
		agent.Close()
		return exitOK
	}
	printDiags(stderr, files, diags)
	if diags.HasErrors() {
		agent.Close()
		fmt.Fprintln(stderr, "golb: not starting: fix the config first")
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
	if err := agent.Run(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			return exitOK
		}
		fmt.Fprintln(stderr, "golb:", err)
		return exitError
	}
	return exitOK
}

// tuneGC collects garbage sooner than Go's default (GOGC=25, not 100)
// unless $GOGC says otherwise. The proxy allocates nothing per request, so
// this costs no CPU on the request path; it keeps the garbage of a burst of
// new connections from doubling the agent's memory (5,000 connections:
// 85 MiB peak RSS at 100, 72 MiB at 25, go run ./bench -workloads conns).
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(25)
	}
}

package main

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/golb/golb/core"
	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/containerd"
	"github.com/golb/golb/drivers/docker"
	"github.com/golb/golb/drivers/process"
)

// builtins are the drivers this binary serves as `golb driver NAME`: golb's
// one registry of built-in drivers (core learns their names from
// coreOptions). A new built-in driver is one line here.
var builtins = map[string]func() drivers.Driver{
	"process": func() drivers.Driver { return process.New(pluginLogger()) },
	"docker":  func() drivers.Driver { return docker.New(pluginLogger()) },

	"containerd": func() drivers.Driver { return containerd.New(pluginLogger()) },
}

// coreOptions are the core.Options of every verb that runs driver plugins:
// the built-in ones are this binary's.
func coreOptions(logger *slog.Logger, verbose bool) core.Options {
	return core.Options{Builtins: slices.Sorted(maps.Keys(builtins)), Logger: logger, Verbose: verbose}
}

// pluginLogger logs in hclog's JSON shape (@level, @message, @timestamp) on
// stderr, which go-plugin parses in golb and re-logs at the same level.
func pluginLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				// The exact layout go-plugin parses.
				a.Key, a.Value = "@timestamp", slog.StringValue(a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
			case slog.MessageKey:
				a.Key = "@message"
			case slog.LevelKey:
				a.Key, a.Value = "@level", slog.StringValue(strings.ToLower(a.Value.String()))
			}
			return a
		},
	}))
}

// cmdDriver is the hidden `golb driver NAME`: golb runs itself so to serve
// a built-in driver as a plugin.
func cmdDriver(args []string, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: golb driver NAME (run by golb itself as a plugin)")
		return exitUsage
	}
	mk, ok := builtins[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "golb: no built-in driver %q\n", args[0])
		return exitUsage
	}
	if os.Getenv(drivers.Handshake.MagicCookieKey) != drivers.Handshake.MagicCookieValue {
		fmt.Fprintln(stderr, "golb driver is a plugin that golb starts itself; run `golb run` instead")
		return exitUsage
	}
	drivers.Serve(mk())
	return exitOK
}

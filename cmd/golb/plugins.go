package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/golb/golb/core"
	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/docker"
	"github.com/golb/golb/drivers/process"
	"github.com/golb/golb/workerapp"
)

// builtins are the drivers this binary serves as `golb driver NAME`.
var builtins = map[string]func() drivers.Driver{
	"process": func() drivers.Driver { return process.New(pluginLogger()) },
	"docker":  func() drivers.Driver { return docker.New(pluginLogger()) },
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

func cmdWorker(args []string, stderr io.Writer) int {
	return workerapp.Main(args, os.Getenv, stderr)
}

func cmdDrivers(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("drivers", stderr, "Usage: golb drivers [--json] [FILE]\n\nLists the built-in drivers and every golb-driver-NAME in plugin_dir (from FILE,\nor ./plugins), with their version and whether their runtime is reachable,\nusing FILE's driver settings and plugin pins.")
	asJSON := fs.Bool("json", false, "print JSON")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return exitUsage
	}
	cfg, _, ok := loadConfig(fs.Arg(0), stderr)
	if !ok {
		return exitError
	}
	rows := core.ProbeDrivers(context.Background(), cfg, core.Options{Logger: newLogger(io.Discard, false)})
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rows)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DRIVER\tVERSION\tREACHABLE\tSOURCE\tDETAIL")
	for _, r := range rows {
		reach := "no"
		if r.Healthy {
			reach = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Version, reach, r.Source, r.Detail)
	}
	tw.Flush()
	return exitOK
}

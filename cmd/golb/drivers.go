package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/golb/golb/core"
)

// cmdDrivers is `golb drivers`: every driver found, its version, and whether
// its runtime is reachable.
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
	rows := core.ProbeDrivers(context.Background(), cfg, coreOptions(newLogger(io.Discard, false), false))
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

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/golb/golb/core"
)

const driversHelp = `Usage: golb drivers [--json] [FILE]
       golb drivers --admin [ADDR] [--json]

Lists the built-in drivers and every golb-driver-NAME in plugin_dir (from FILE,
or ./plugins), with their version and whether their runtime is reachable,
using FILE's driver settings and plugin pins.

With --admin, lists the driver plugins of the running agent at ADDR (default
$GOLB_ADMIN, else 127.0.0.1:5040) instead: each plugin's pid, how often it
was restarted, and why it last died, so that a crash-looping plugin shows.`

// cmdDrivers is `golb drivers`: every driver found, its version, and whether
// its runtime is reachable; with --admin, the running agent's plugins.
func cmdDrivers(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("drivers", stderr, driversHelp)
	asJSON := fs.Bool("json", false, "print JSON")
	admin := optionalFlag(fs, "admin", defaultAdmin(), "ask the running agent at this admin API address (the flag alone: the default)", isAddress)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 1 || (admin.set && fs.NArg() > 0) {
		fs.Usage()
		return exitUsage
	}
	if admin.set {
		return runningDrivers(admin.value, *asJSON, stdout, stderr)
	}
	cfg, _, ok := loadConfig(fs.Arg(0), stderr)
	if !ok {
		return exitError
	}
	rows := core.ProbeDrivers(context.Background(), cfg, coreOptions(newLogger(io.Discard, false), false))
	if *asJSON {
		writeIndented(stdout, rows)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DRIVER\tVERSION\tREACHABLE\tSOURCE\tDETAIL")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Version, yesNo(r.Healthy), r.Source, r.Detail)
	}
	tw.Flush()
	return exitOK
}

// runningDrivers is `golb drivers --admin`: GET /v1/drivers as a table.
func runningDrivers(admin string, asJSON bool, stdout, stderr io.Writer) int {
	var ds []core.DriverView
	if err := call(admin, "GET", "/v1/drivers", nil, &ds); err != nil {
		fmt.Fprintln(stderr, "golb:", err)
		return exitError
	}
	if asJSON {
		writeIndented(stdout, ds)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DRIVER\tVERSION\tPLUGIN\tPID\tRESTARTS\tREACHABLE\tDETAIL")
	for _, d := range ds {
		state, pid := "down", "-"
		if d.Running {
			state, pid = "running", strconv.Itoa(d.PID)
		}
		detail := d.Detail
		if d.Error != "" {
			detail = d.Error // why it last died: what a user looks for here
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Name, d.Version, state, pid, d.Restarts, yesNo(d.Healthy), detail)
	}
	tw.Flush()
	return exitOK
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// writeIndented prints v as indented JSON.
func writeIndented(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

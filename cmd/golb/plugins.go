package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/golb/golb/core"
	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/docker"
	"github.com/golb/golb/drivers/process"
	"github.com/golb/golb/workerapp"
)

// builtins are the drivers this binary serves as `golb driver NAME`.
var builtins = map[string]func() drivers.Driver{
	"process": func() drivers.Driver { return process.New(newLogger(os.Stderr, false)) },
	"docker":  func() drivers.Driver { return docker.New(newLogger(os.Stderr, false)) },
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

type driverRow struct {
	Name    string `json:"name"`
	Source  string `json:"source"`
	Version string `json:"version"`
	Healthy bool   `json:"healthy"`
	Detail  string `json:"detail"`
}

func cmdDrivers(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("drivers", stderr, "Usage: golb drivers [--json] [FILE]\n\nLists the built-in drivers and every golb-driver-NAME in plugin_dir (from FILE,\nor ./plugins), with their version and whether their runtime is reachable.")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil || fs.NArg() > 1 {
		return exitUsage
	}
	cfg, _, ok := loadConfig(fs.Arg(0), stderr)
	if !ok {
		return exitError
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "golb:", err)
		return exitError
	}
	type cand struct{ name, source string }
	var cands []cand
	for _, b := range core.BuiltinDrivers {
		cands = append(cands, cand{b, "built-in"})
	}
	if entries, err := os.ReadDir(cfg.PluginDir); err == nil {
		for _, e := range entries {
			if n, ok := strings.CutPrefix(e.Name(), core.ExternalPrefix); ok && !e.IsDir() {
				cands = append(cands, cand{n, filepath.Join(cfg.PluginDir, e.Name())})
			}
		}
	}
	var rows []driverRow
	for _, c := range cands {
		row := driverRow{Name: c.name, Source: c.source}
		cmd := exec.Command(self, "driver", c.name)
		if c.source != "built-in" {
			cmd = exec.Command(c.source)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		cl, err := drivers.Launch(ctx, drivers.ClientConfig{Cmd: cmd})
		if err != nil {
			row.Detail = "plugin failed to start: " + err.Error()
		} else {
			if err := cl.SetConfig(ctx, drivers.PluginConfig{DataDir: filepath.Join(cfg.DataDir, "drivers", c.name)}); err != nil {
				row.Detail = err.Error()
			} else if info, err := cl.Info(ctx); err != nil {
				row.Detail = err.Error()
			} else {
				row.Version = info.Version
				fp, err := cl.Fingerprint(ctx)
				if err != nil {
					row.Detail = err.Error()
				} else {
					row.Healthy, row.Detail = fp.Healthy, fp.Detail
				}
			}
			cl.Kill()
		}
		cancel()
		rows = append(rows, row)
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Source == "built-in" && rows[j].Source != "built-in" })
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

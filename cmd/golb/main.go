// Command golb runs a fleet of HTTP workers as plain processes, Docker
// containers or through external driver plugins, behind a load balancer,
// from one HCL file. See `golb help`.
//
// Each verb is in the file named after it: run.go, validate.go, drivers.go,
// driver.go (the hidden `golb driver NAME`, and the registry of built-in
// drivers), worker.go, reload.go (also SIGHUP's handler); client.go holds the admin API clients status, scale
// and stats (`drivers --admin` is one too, in drivers.go); flags.go the flag
// handling they share.
package main

import (
	"fmt"
	"io"
	"os"
)

// Exit codes scripts can rely on.
const (
	exitOK    = 0
	exitError = 1 // the command failed: invalid config, unreachable agent, runtime error
	exitUsage = 2 // bad command line
)

const usage = `golb runs HTTP workers (processes, Docker containers, or any driver plugin) behind a load balancer.

Usage:
  golb run [-v] [FILE]           run the agent in the foreground (no FILE: the embedded default)
  golb validate FILE             check a config; exit 1 on any error
  golb status [--json]           groups and workers of the running agent
  golb scale GROUP N             set a group's desired worker count
  golb reload                    re-read the agent's config file and apply the difference live (= SIGHUP)
  golb stats [--json]            per-worker request stats (--json: the seed's JSON)
  golb drivers [--json] [FILE]   each driver found, its version, and whether its runtime is reachable
  golb drivers --admin [ADDR]    the running agent's driver plugins: pid, restarts, why one last died
  golb version                   print the version

Client verbs (status, scale, reload, stats, drivers --admin) talk to the admin API at --admin ADDR
(default $GOLB_ADMIN, else 127.0.0.1:5040).

Exit codes: 0 ok, 1 failure, 2 bad usage.
`

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	verb, rest := args[0], args[1:]
	switch verb {
	case "run":
		return cmdRun(rest, stdout, stderr)
	case "validate":
		return cmdValidate(rest, stdout, stderr)
	case "status":
		return cmdStatus(rest, stdout, stderr)
	case "reload":
		return cmdReload(rest, stdout, stderr)
	case "scale":
		return cmdScale(rest, stdout, stderr)
	case "stats":
		return cmdStats(rest, stdout, stderr)
	case "drivers":
		return cmdDrivers(rest, stdout, stderr)
	case "driver":
		return cmdDriver(rest, stderr)
	case "worker":
		return cmdWorker(rest, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "golb", Version)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "golb: unknown command %q\n\n%s", verb, usage)
		return exitUsage
	}
}

// Command worker is the test worker of the bwrap driver's tests: golb's demo
// worker (the same code as `golb worker`), built as its own static binary so
// that it runs in a sandbox that sees only the system directories. With
// GOLB_TEST_IGNORE_TERM=1 it ignores SIGTERM, for the conformance case that
// needs a worker only SIGKILL ends.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/golb/golb/workerapp"
)

func main() {
	if os.Getenv("GOLB_TEST_IGNORE_TERM") != "1" {
		os.Exit(workerapp.Main(os.Args[1:], os.Getenv, os.Stderr))
	}
	signal.Ignore(syscall.SIGTERM)
	cfg, err := workerapp.ConfigFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "worker: %v\n", err)
		os.Exit(2)
	}
	if err := workerapp.New(cfg).Run(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "worker: %v\n", err)
		os.Exit(1)
	}
}

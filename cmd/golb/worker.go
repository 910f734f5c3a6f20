package main

import (
	"io"
	"os"

	"github.com/golb/golb/workerapp"
)

// cmdWorker is `golb worker`: the built-in worker, which the drivers run
// unless a group's config names another program.
func cmdWorker(args []string, stderr io.Writer) int {
	return workerapp.Main(args, os.Getenv, stderr)
}

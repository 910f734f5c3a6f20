// Command worker is the worker binary the docker driver's tests put in their
// image, built static (CGO_ENABLED=0): golb's worker app run as `worker`, and,
// with GOLB_TEST_IGNORE_TERM=1, a server of /healthz that ignores SIGTERM so
// that the conformance suite can check the SIGKILL after Stop's timeout.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/golb/golb/workerapp"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "worker" {
		args = args[1:]
	}
	if os.Getenv("GOLB_TEST_IGNORE_TERM") == "1" {
		os.Exit(ignoreTERM())
	}
	os.Exit(workerapp.Main(args, os.Getenv, os.Stderr))
}

// ignoreTERM serves GET /healthz with 200 until killed, ignoring SIGTERM.
func ignoreTERM() int {
	signal.Ignore(syscall.SIGTERM)
	addr := net.JoinHostPort(os.Getenv("BIND_ADDR"), os.Getenv("PORT"))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	err := http.ListenAndServe(addr, mux)
	fmt.Fprintf(os.Stderr, "worker (ignoring SIGTERM): %v\n", err)
	return 1
}

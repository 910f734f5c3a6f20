// Command golb-driver-bwrap is the bwrap driver as a golb plugin. Put it in
// golb's plugin_dir and use `driver = "bwrap"` in a group; golb starts it
// itself, it is not meant to be run by hand.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/golb/golb/drivers"

	bwrap "github.com/golb/golb/examples/custom-driver"
)

func main() {
	if os.Getenv(drivers.Handshake.MagicCookieKey) != drivers.Handshake.MagicCookieValue {
		fmt.Fprintln(os.Stderr, "golb-driver-bwrap is a golb driver plugin: put it in golb's plugin_dir and use driver = \"bwrap\" in a group")
		os.Exit(2)
	}
	// Plugin logs go to stderr, which golb forwards to its own log.
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("driver", bwrap.Name)
	drivers.Serve(bwrap.New(logger))
}

// Command golb-driver-nice is the nice driver as a golb plugin: build it
// into golb's plugin_dir and write driver = "nice" in a group.
package main

import (
	"github.com/golb/golb/drivers"

	"github.com/golb/golb/examples/custom-driver/nice"
)

func main() { drivers.Serve(nice.New()) }

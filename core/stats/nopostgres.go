//go:build nopostgres

package stats

import "context"

// Built with -tags nopostgres, golb has no postgres sink and links no PostgreSQL
// driver: a smaller binary for use as a docker or containerd worker_binary, whose
// workers never open a sink. The config then lists sqlite as the only sink.

// Check has nothing to check: no sink that needs it is built in.
func Check(context.Context, Settings) error { return nil }

// ParseDSN accepts anything: no sink that reads a DSN is built in.
func ParseDSN(string) error { return nil }

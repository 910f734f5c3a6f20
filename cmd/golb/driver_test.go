package main

import (
	"slices"
	"testing"
)

// TestOneRegistryOfBuiltinDrivers: golb kept two lists of its built-in
// drivers, this binary's constructors and core's names, and a new driver
// had to be added to both (a name only in core's list failed at launch).
// core now learns the names from this registry, the only one.
func TestOneRegistryOfBuiltinDrivers(t *testing.T) {
	names := coreOptions(nil, false).Builtins
	if len(names) != len(builtins) {
		t.Fatalf("core is told of %v, the registry has %d drivers", names, len(builtins))
	}
	for _, n := range names {
		if builtins[n] == nil {
			t.Errorf("core is told of %q, which `golb driver` does not serve", n)
		}
	}
	if !slices.Contains(names, "process") {
		t.Errorf("built-in drivers %v lack process, the config's default driver", names)
	}
}

package config

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// PluginPrefix is the file name prefix of external driver plugins in
// plugin_dir: golb-driver-NAME runs driver NAME.
const PluginPrefix = "golb-driver-"

// defaultPluginDir is plugin_dir when the file does not set it.
const defaultPluginDir = "./plugins"

// Options are what ParseWith and LoadWith check beyond the file itself.
type Options struct {
	// Builtins are the drivers built into golb. When set, each group's
	// driver must be one of them or an executable golb-driver-NAME in
	// plugin_dir, and this is checked even when the file has other errors,
	// for every group whose driver attribute decoded. Default none: the
	// drivers are resolved only when they are launched (core's Prepare).
	Builtins []string
}

// ExternalDrivers lists, sorted, the NAME of each executable file
// golb-driver-NAME in dir (following symlinks), as golb would launch it.
// A dir that cannot be read has none.
func ExternalDrivers(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), PluginPrefix)
		if !ok || name == "" {
			continue
		}
		if IsPlugin(filepath.Join(dir, e.Name())) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// IsPlugin reports whether path is a file golb can run as a driver plugin:
// it exists, is not a directory, and has an execute bit.
func IsPlugin(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// DriverNotFound is the error for driver name, used at rng, that is neither
// one of builtins nor an executable golb-driver-NAME in pluginDir. Its hint
// is one line naming the drivers that exist.
func DriverNotFound(name string, rng hcl.Range, builtins []string, pluginDir string) *hcl.Diagnostic {
	var external []string
	for _, n := range ExternalDrivers(pluginDir) {
		if !slices.Contains(builtins, n) {
			external = append(external, n)
		}
	}
	hint := fmt.Sprintf("Use a built-in driver (%s)", hintNames(slices.Sorted(slices.Values(builtins))))
	if len(external) > 0 {
		hint += fmt.Sprintf(", one in plugin_dir %s (%s),", pluginDir, hintNames(external))
		hint += fmt.Sprintf(" or put an executable %s%s there.", PluginPrefix, name)
	} else {
		hint += fmt.Sprintf(" or put an executable %s%s in plugin_dir (%s).", PluginPrefix, name, pluginDir)
	}
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("Driver %q not found", name),
		Detail:   hint,
		Subject:  rng.Ptr(),
	}
}

// hintNames joins the first maxHintNames names, counting the rest.
func hintNames(names []string) string {
	out := slices.Clone(names[:min(len(names), maxHintNames)])
	if n := len(names); n > maxHintNames {
		out = append(out, fmt.Sprintf("… (%d drivers)", n))
	}
	return strings.Join(out, ", ")
}

// checkDriverNames reports each group whose driver is neither built in nor
// in pluginDir. A group whose driver did not decode, or whose name is
// invalid (reported already), is skipped; an empty driver is the default,
// process. plugin_dir is read only when some group needs it.
func checkDriverNames(groups []*Group, pluginDir string, builtins []string) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, g := range groups {
		if g.Driver == "" || !validName(g.Driver) || slices.Contains(builtins, g.Driver) {
			continue
		}
		if IsPlugin(filepath.Join(pluginDir, PluginPrefix+g.Driver)) {
			continue
		}
		diags = append(diags, DriverNotFound(g.Driver, attrRange(g.Body, "driver"), builtins, pluginDir))
	}
	return diags
}

// decodedGroups are the groups of a partly decoded file whose driver
// attribute decoded: the attribute is absent (the default) or has a value
// and no error of diags points into it.
func decodedGroups(groups []*Group, diags hcl.Diagnostics) []*Group {
	var out []*Group
	for _, g := range groups {
		if g == nil || g.Body == nil {
			continue
		}
		if hasAttr(g.Body, "driver") && (g.Driver == "" || errorWithin(diags, attrRange(g.Body, "driver"))) {
			continue
		}
		out = append(out, g)
	}
	return out
}

// errorWithin reports whether an error of diags points into rng.
func errorWithin(diags hcl.Diagnostics, rng hcl.Range) bool {
	for _, d := range diags {
		if d.Severity == hcl.DiagError && d.Subject != nil && d.Subject.Filename == rng.Filename &&
			d.Subject.Start.Byte <= rng.End.Byte && d.Subject.End.Byte >= rng.Start.Byte {
			return true
		}
	}
	return false
}

// SortDiags returns diags in file, line, column order, stably (those at one
// position keep their order). A diagnostic without a position comes first.
// diags itself is not reordered.
func SortDiags(diags hcl.Diagnostics) hcl.Diagnostics {
	out := slices.Clone(diags)
	slices.SortStableFunc(out, func(a, b *hcl.Diagnostic) int {
		var pa, pb hcl.Range
		if a.Subject != nil {
			pa = *a.Subject
		}
		if b.Subject != nil {
			pb = *b.Subject
		}
		return cmp.Or(
			cmp.Compare(pa.Filename, pb.Filename),
			cmp.Compare(pa.Start.Line, pb.Start.Line),
			cmp.Compare(pa.Start.Column, pb.Start.Column),
		)
	})
	return out
}

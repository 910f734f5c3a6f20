package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golb/golb/core/config"
)

// DriverProbe is what `golb drivers` reports of one driver.
type DriverProbe struct {
	Name    string `json:"name"`
	Source  string `json:"source"` // "built-in" or the plugin's path
	Version string `json:"version"`
	Healthy bool   `json:"reachable"`
	// Detail is one line of at most maxDetail bytes: the runtime's version,
	// or why the driver cannot be used (`golb validate` shows the whole
	// error of a plugin that fails to start).
	Detail string `json:"detail"`
}

// maxDetail bounds DriverProbe.Detail, to keep `golb drivers` a table.
const maxDetail = 160

// ProbeDrivers launches every driver golb can find — the built-in ones
// (opts.Builtins) and each golb-driver-NAME in plugin_dir — with the
// config's pins and driver settings, and asks each for its version and
// whether its runtime is reachable.
func ProbeDrivers(ctx context.Context, cfg *config.Config, opts Options) []DriverProbe {
	agent, err := New(cfg, opts)
	if err != nil {
		return []DriverProbe{{Name: "?", Detail: err.Error()}}
	}
	m := agent.plugins
	names := append([]string{}, m.builtins...)
	if entries, err := os.ReadDir(cfg.PluginDir); err == nil {
		for _, e := range entries {
			if n, ok := strings.CutPrefix(e.Name(), ExternalPrefix); ok && !e.IsDir() && !m.builtin(n) {
				names = append(names, n)
			}
		}
	}
	var out []DriverProbe
	for _, name := range names {
		row := DriverProbe{Name: name, Source: "built-in"}
		if !m.builtin(name) {
			row.Source = filepath.Join(cfg.PluginDir, ExternalPrefix+name)
		}
		row.Version, row.Healthy, row.Detail = probe(ctx, m, name)
		row.Detail = oneLine(row.Detail, maxDetail)
		out = append(out, row)
	}
	return out
}

func probe(ctx context.Context, m *pluginManager, name string) (version string, healthy bool, detail string) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	in, err := m.launch(ctx, name)
	var pin *PinError
	if errors.As(err, &pin) {
		return "", false, fmt.Sprintf("checksum mismatch: the pin expects sha256 %s, the file has %s", pin.Want, pin.Got)
	}
	if err != nil {
		// Without "launching driver plugin PATH": SOURCE has the path.
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
		return "", false, "plugin failed to start: " + err.Error()
	}
	c, info := in.client, in.info
	defer c.Kill()
	var settings []byte
	if blk := m.cfg.DriverBlock(name); blk != nil {
		raw, ds := config.DecodeBlock(blk.Body, info.SettingsSchema, "driver \""+name+"\"")
		if ds.HasErrors() {
			return info.Version, false, "invalid driver block: " + ds.Error()
		}
		settings = raw
	}
	if err := m.configure(ctx, c, name, settings); err != nil {
		return info.Version, false, err.Error()
	}
	fp, err := c.Fingerprint(ctx)
	if err != nil {
		return info.Version, false, err.Error()
	}
	return info.Version, fp.Healthy, fp.Detail
}

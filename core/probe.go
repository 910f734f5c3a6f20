package core

import (
	"context"
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
	Detail  string `json:"detail"`
}

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
		out = append(out, row)
	}
	return out
}

func probe(ctx context.Context, m *pluginManager, name string) (version string, healthy bool, detail string) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	in, err := m.launch(ctx, name)
	if err != nil {
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

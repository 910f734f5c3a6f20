package core

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/golb/golb/core/config"
	"github.com/golb/golb/core/state"
	"github.com/golb/golb/core/stats"
	"github.com/golb/golb/drivers"
	"github.com/golb/golb/workerapp"
)

// Prepare launches the drivers the config uses and checks every driver block
// against them. Error diagnostics mean nothing may start; Close releases the
// plugins either way.
func (a *Agent) Prepare(ctx context.Context) hcl.Diagnostics {
	var diags hcl.Diagnostics
	used := a.cfg.DriversUsed()
	for _, d := range a.cfg.Drivers {
		if !slices.Contains(used, d.Name) {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagWarning,
				Summary:  fmt.Sprintf("No group uses driver %q", d.Name),
				Detail:   "Its settings are not checked or used. Remove the block, or fix the name.",
				Subject:  blockRangeOf(d.Body).Ptr(),
			})
		}
	}
	for _, p := range a.cfg.Plugins {
		if a.plugins.builtin(p.Name) {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("Driver %q is built into golb and cannot be pinned", p.Name),
				Detail:   "A plugin pin checks an external golb-driver-NAME binary; remove this block.",
				Subject:  blockRangeOf(p.Body).Ptr(),
			})
		}
	}
	if !slices.Contains(stats.Sinks(), a.cfg.Stats.Sink) {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Unknown stats sink %q", a.cfg.Stats.Sink),
			Detail:   "Use one of: " + strings.Join(stats.Sinks(), ", ") + ".",
			Subject:  attrRangeOf(a.cfg.Stats.Body, "sink").Ptr(),
		})
	} else if err := stats.Check(ctx, a.cfg.StatsSettings()); err != nil {
		// One line with the cause and the fix: a bad DSN, password or
		// database name, or a server that does not answer.
		// At the sink line: golb validate prints the line it points at, and
		// the dsn line may hold a password.
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: err.Error(), Subject: config.SecretSafeRange(a.cfg.Stats).Ptr()})
	}
	for _, name := range used {
		diags = append(diags, a.prepareDriver(ctx, name)...)
	}
	if diags.HasErrors() {
		return diags
	}
	for _, g := range a.cfg.Groups {
		diags = append(diags, a.prepareGroup(ctx, g)...)
	}
	return diags
}

// FailedDrivers are the drivers whose plugin Prepare could not start (not a
// config error: the plugin's own failure), in the order it tried them.
func (a *Agent) FailedDrivers() []string { return slices.Clone(a.failedDrivers) }

// prepareDriver launches driver name's plugin, decodes its driver block
// against the schema the plugin reports, hands it its settings and records
// it. An unreachable runtime is a warning: the groups wait for it (adopt.go).
func (a *Agent) prepareDriver(ctx context.Context, name string) hcl.Diagnostics {
	// The first group using the driver is where a missing driver is reported.
	var rng hcl.Range
	for _, g := range a.cfg.Groups {
		if g.Driver == name {
			rng = attrRangeOf(g.Body, "driver")
			break
		}
	}
	diagErr := func(summary, detail string) hcl.Diagnostics {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: rng.Ptr()}}
	}
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	in, err := a.plugins.launch(lctx, name)
	if errors.Is(err, ErrDriverNotFound) {
		// The same error config.LoadWith gives when it resolves the names.
		return hcl.Diagnostics{config.DriverNotFound(name, rng, a.plugins.builtins, a.cfg.PluginDir)}
	}
	var pin *PinError
	if errors.As(err, &pin) {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Plugin %q does not match its sha256 pin (checksum mismatch)", name),
			Detail: fmt.Sprintf("The pin expects %s; %s has %s. If you rebuilt or replaced the plugin on purpose, pin the new digest: sha256 = %q.",
				pin.Want, pin.Path, pin.Got, pin.Got),
			Subject: pin.Pin,
		}}
	}
	if err != nil {
		a.failedDrivers = append(a.failedDrivers, name)
		return diagErr(fmt.Sprintf("Driver %q failed to start", name), err.Error())
	}
	c, info := in.client, in.info
	var settings json.RawMessage
	var diags hcl.Diagnostics
	if blk := a.cfg.DriverBlock(name); blk != nil {
		settings, diags = config.DecodeBlock(blk.Body, info.SettingsSchema, fmt.Sprintf("driver %q", name))
		if diags.HasErrors() {
			c.Kill()
			return diags
		}
	}
	if err := a.plugins.configure(lctx, c, name, settings); err != nil {
		c.Kill()
		return diagErr(fmt.Sprintf("Driver %q rejected its settings", name), err.Error())
	}
	a.plugins.add(name, in, settings)
	fp, err := c.Fingerprint(lctx)
	if err != nil {
		fp = drivers.Fingerprint{Detail: err.Error()}
	}
	_ = a.store.UpsertDriver(&state.Driver{Name: name, Info: info, Fingerprint: fp, PluginPID: c.Pid(), Running: true})
	if !fp.Healthy {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning,
			Summary:  fmt.Sprintf("Driver %q cannot reach its runtime", name),
			Detail:   fp.Detail,
			Subject:  rng.Ptr(),
		})
	}
	return diags
}

// prepareGroup checks a group's config block against its driver's schema and
// ValidateConfig, and resolves the group's worker template (groupSpec).
func (a *Agent) prepareGroup(ctx context.Context, g *config.Group) hcl.Diagnostics {
	c, _, err := a.plugins.current(g.Driver)
	if err != nil {
		return nil // reported by prepareDriver
	}
	info, err := c.Info(ctx)
	if err != nil {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Driver " + g.Driver + " failed", Detail: err.Error()}}
	}
	// A group without a config block is checked as an empty one, so that a
	// driver's required attributes are reported, not discovered at start.
	body := hcl.Body(hcl.EmptyBody())
	if g.Config != nil {
		body = g.Config.Body
	}
	raw, diags := config.DecodeBlock(body, info.ConfigSchema, fmt.Sprintf("the %s driver's config block", g.Driver))
	if diags.HasErrors() {
		return rangeOnGroup(diags, g)
	}
	ds, err := c.ValidateConfig(ctx, raw)
	if err != nil {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Driver " + g.Driver + " could not validate the config block", Detail: err.Error(), Subject: attrRangeOf(g.Body, "driver").Ptr()}}
	}
	if diags = append(diags, rangeOnGroup(config.DriverDiagnostics(body, ds, g.Driver), g)...); diags.HasErrors() {
		return diags
	}
	// The app settings reach the built-in worker only: a group running its
	// own program sets its environment in its config block.
	if ds := appEnvConflict(g, raw); ds.HasErrors() {
		return append(diags, ds...)
	}
	env := map[string]string{}
	if g.RunsBuiltinWorker() {
		env["GOLB_AVG_DELAY"] = g.App.AvgDelayDur.String()
		env["GOLB_FAILURE_RATE"] = strconv.FormatFloat(*g.App.FailureRate, 'g', -1, 64)
	}
	h := sha256.New()
	settings, ok := a.newSettings[g.Driver] // a reload's plan: driver_reload.go
	if p, _, err := a.plugins.managed(g.Driver); err == nil && !ok {
		settings = p.currentSettings()
	}
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%s\x00%s\x00%s", g.Driver, settings, g.Port, raw, env["GOLB_AVG_DELAY"], env["GOLB_FAILURE_RATE"])
	a.groups[g.Name] = &groupSpec{cfg: g, config: raw, env: env, hash: hex.EncodeToString(h.Sum(nil))[:12]}
	return diags
}

// appEnvConflict reports a group's config env that sets what golb sets
// (golb would override it without a word, or the worker would fail on it):
// PORT, BIND_ADDR and GOLB_WORKER_ID, which every driver gives every
// worker, and for the built-in worker every GOLB_* name, its settings
// (GOLB_AVG_DELAY and GOLB_FAILURE_RATE come from the app block,
// GOLB_DRAIN_TIMEOUT = "bogus" crashed it). A group running its own
// program may use other GOLB_* names: they are its own. One diagnostic per
// name, at the name where the file writes it.
func appEnvConflict(g *config.Group, raw json.RawMessage) hcl.Diagnostics {
	var c struct {
		Env map[string]string `json:"env"`
	}
	if json.Unmarshal(raw, &c) != nil || len(c.Env) == 0 || g.Config == nil {
		return nil
	}
	at := map[string]hcl.Range{}
	for _, e := range config.ConfigEnv(g.Config.Body) {
		if _, dup := at[e.Key]; !dup {
			at[e.Key] = e.KeyRange
		}
	}
	keys := make([]string, 0, len(c.Env))
	for k := range c.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var diags hcl.Diagnostics
	for _, k := range keys {
		var summary, detail string
		switch {
		case k == workerapp.EnvAvgDelay || k == workerapp.EnvFailureRate:
			if !g.RunsBuiltinWorker() {
				continue
			}
			summary, detail = "env sets "+k+", which the app block sets for the built-in worker", "Set it in app { avg_delay / failure_rate } instead."
		case k == "PORT" || k == "BIND_ADDR" || k == workerapp.EnvWorkerID:
			summary, detail = "env sets "+k+", which golb sets for each worker", "Remove it: golb gives every worker PORT (its own port), BIND_ADDR and GOLB_WORKER_ID, and a program should listen on $BIND_ADDR:$PORT."
		case strings.HasPrefix(k, "GOLB_") && g.RunsBuiltinWorker():
			summary, detail = "env sets "+k+", a setting golb keeps for the built-in worker", "Remove it: GOLB_* names are golb's own for the built-in worker (app { avg_delay, failure_rate } sets what it may)."
		default:
			continue
		}
		rng, ok := at[k]
		if !ok {
			rng = attrRangeOf(g.Config.Body, "env")
		}
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: rng.Ptr()})
	}
	return diags
}

// rangeOnGroup points diagnostics that have no source position (those of a
// config block the group does not have) at the group's driver attribute.
func rangeOnGroup(diags hcl.Diagnostics, g *config.Group) hcl.Diagnostics {
	for _, d := range diags {
		if d.Subject == nil || d.Subject.Filename == "" {
			d.Subject = attrRangeOf(g.Body, "driver").Ptr()
		}
	}
	return diags
}

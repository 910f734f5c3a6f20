package core

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/golb/golb/balancer"
	"github.com/golb/golb/core/config"
)

// reloadPlan is what a reload changes, worked out before anything is.
type reloadPlan struct {
	cfg *config.Config
	// groups is the new fleet's worker templates: those of the new config,
	// plus those of removed groups until their workers are gone.
	groups map[string]*groupSpec

	addGroups    []*config.Group
	removeGroups []string
	counts       map[string]int // group → new desired count
	rollovers    []string       // groups whose worker shape changed
	scales       []scaleChange  // groups whose autoscaling changes (reload_scale.go)

	addBalancers    []*config.Balancer
	removeBalancers []*balancer.Balancer
	updateBalancers []balancerUpdate
	oldBalancerCfg  map[*balancer.Balancer]balancer.Config // to undo an update
	holds           []holdUpdate                           // kept balancers whose holding changes
	kept            map[string]*balancer.Balancer          // by name: running ones the new config keeps

	// driverRestarts are the drivers whose settings changed, with the new
	// settings: their plugins restart (driver_reload.go).
	driverRestarts map[string][]byte

	changes []string // one line each, for the event: "group hello: count 3 → 5"
	refused []string // why the reload cannot apply live
}

type balancerUpdate struct {
	b   *balancer.Balancer
	cfg balancer.Config
}

// plan diffs the running config old against cfg. Diagnostics are the errors
// `golb validate` would report that need the driver plugins (a group's
// config block against its driver's schema).
func (a *Agent) plan(ctx context.Context, old, cfg *config.Config) (*reloadPlan, hcl.Diagnostics) {
	p := &reloadPlan{cfg: cfg, groups: map[string]*groupSpec{}, counts: map[string]int{}, driverRestarts: map[string][]byte{},
		oldBalancerCfg: map[*balancer.Balancer]balancer.Config{}, kept: map[string]*balancer.Balancer{}}
	refuse := func(format string, args ...any) { p.refused = append(p.refused, fmt.Sprintf(format, args...)) }
	change := func(format string, args ...any) { p.changes = append(p.changes, fmt.Sprintf(format, args...)) }

	// What only a restart can change.
	if cfg.DataDir != old.DataDir {
		refuse("data_dir %s → %s cannot change live (it holds the lock, state and logs): restart golb", old.DataDir, cfg.DataDir)
	}
	if cfg.PluginDir != old.PluginDir {
		refuse("plugin_dir %s → %s cannot change live: restart golb", old.PluginDir, cfg.PluginDir)
	}
	if cfg.AdminAddress() != old.AdminAddress() {
		refuse("admin address %q → %q cannot change live (this API is how reload is asked): restart golb", old.AdminAddress(), cfg.AdminAddress())
	}
	if so, sn := old.Stats, cfg.Stats; so.Sink != sn.Sink || so.Path != sn.Path || so.DSN != sn.DSN || so.Instance != sn.Instance || so.FlushIntervalDur != sn.FlushIntervalDur {
		refuse("the stats block changed (a new stats sink cannot open live): restart golb")
	}
	if !reflect.DeepEqual(pins(old), pins(cfg)) {
		refuse("plugin pins changed: restart golb")
	}
	notRunning := map[string]bool{}
	for _, name := range cfg.DriversUsed() {
		mp, _, err := a.plugins.managed(name)
		if err != nil {
			notRunning[name] = true
			refuse("driver %q is not running (no group used it at start): restart golb to launch it", name)
			continue
		}
		var settings []byte
		if blk := cfg.DriverBlock(name); blk != nil {
			var diags hcl.Diagnostics
			settings, diags = config.DecodeBlock(blk.Body, mp.info.SettingsSchema, fmt.Sprintf("driver %q", name))
			if diags.HasErrors() {
				return nil, diags
			}
		}
		if !bytes.Equal(settings, mp.currentSettings()) {
			if err := a.checkDriverSettings(ctx, name, settings); err != nil {
				return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: fmt.Sprintf("Driver %q rejected its settings", name), Detail: err.Error(),
					Subject: blockRangeOf(cfg.DriverBlock(name).Body).Ptr()}}
			}
			p.driverRestarts[name] = settings
			change("driver %s: settings changed; its plugin restarts and recovers its workers", name)
		}
	}

	// Groups: resolve every template with the running plugins, as Prepare
	// does (on a scratch agent: nothing of the running one changes).
	scratch := &Agent{cfg: cfg, plugins: a.plugins, groups: map[string]*groupSpec{}, logger: a.logger, newSettings: p.driverRestarts}
	var diags hcl.Diagnostics
	for _, g := range cfg.Groups {
		if !notRunning[g.Driver] {
			diags = append(diags, scratch.prepareGroup(ctx, g)...)
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	for name, gs := range scratch.groups {
		p.groups[name] = gs
	}
	for _, g := range cfg.Groups {
		og := old.Group(g.Name)
		ns, os := p.groups[g.Name], a.spec(g.Name)
		switch {
		case og == nil:
			p.addGroups = append(p.addGroups, g)
			if g.Scale != nil {
				change("group %s: added (%d on %s, autoscaled within [%d, %d])", g.Name, g.InitialCount(), g.Driver, g.Scale.Min, g.Scale.Max)
			} else {
				change("group %s: added (%d on %s)", g.Name, g.InitialCount(), g.Driver)
			}
			p.planScale(nil, g, change)
			continue
		case ns == nil || os == nil:
			continue // its driver is refused above
		}
		p.planScale(og, g, change)
		if g.Scale == nil && og.Scale == nil && og.InitialCount() != g.InitialCount() {
			p.counts[g.Name] = g.InitialCount()
			change("group %s: count %d → %d", g.Name, og.InitialCount(), g.InitialCount())
		}
		if ns.hash != os.hash {
			p.rollovers = append(p.rollovers, g.Name)
			change("group %s: rolls over (%s)", g.Name, strings.Join(shapeChanges(og, g, os, ns), ", "))
		}
		if u, v := og.Update, g.Update; *u.MaxParallel != *v.MaxParallel || u.HealthyDeadlineDur != v.HealthyDeadlineDur {
			change("group %s: update max_parallel %d → %d, healthy_deadline %v → %v", g.Name, *u.MaxParallel, *v.MaxParallel, u.HealthyDeadlineDur, v.HealthyDeadlineDur)
		}
		if og.StopSignal != g.StopSignal || og.StopTimeoutDur != g.StopTimeoutDur {
			change("group %s: stop %s/%v → %s/%v", g.Name, og.StopSignal, og.StopTimeoutDur, g.StopSignal, g.StopTimeoutDur)
		}
	}
	for _, og := range old.Groups {
		if cfg.Group(og.Name) == nil {
			p.removeGroups = append(p.removeGroups, og.Name)
			p.groups[og.Name] = a.spec(og.Name) // until its workers are stopped
			change("group %s: removed (drains and stops)", og.Name)
		}
	}
	// Templates of groups removed earlier whose workers still stop.
	a.fleetMu.RLock()
	for name, gs := range a.groups {
		if _, ok := p.groups[name]; !ok && old.Group(name) == nil {
			p.groups[name] = gs
		}
	}
	a.fleetMu.RUnlock()

	a.planBalancers(p, old, cfg, refuse, change)
	return p, nil
}

// planBalancers diffs the balancers: new ones start, removed ones drain and
// close, kept ones are updated in place. Every listener address the new
// config adds must be free now, or the reload is refused.
func (a *Agent) planBalancers(p *reloadPlan, old, cfg *config.Config, refuse, change func(string, ...any)) {
	running := map[string]*balancer.Balancer{}
	bound := map[string]bool{}
	for _, b := range a.allBalancers() {
		running[b.Name()] = b
		for _, addr := range b.Addrs() {
			bound[addr] = true
		}
	}
	checkFree := func(name string, bc *config.Balancer) {
		for i := range *bc.Listeners {
			addr := net.JoinHostPort(bc.Bind, strconv.Itoa(bc.Port+i))
			if bound[addr] {
				continue
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				refuse("balancer %q: cannot bind %s: %v", name, addr, err)
				continue
			}
			_ = ln.Close()
		}
	}
	for _, bc := range cfg.Balancers {
		ob := oldBalancer(old, bc.Name)
		b := running[bc.Name]
		if ob == nil || b == nil {
			checkFree(bc.Name, bc)
			p.addBalancers = append(p.addBalancers, bc)
			change("balancer %s: added (%s:%d, %d listeners, group %s)", bc.Name, bc.Bind, bc.Port, *bc.Listeners, bc.Group)
			continue
		}
		p.kept[bc.Name] = b
		a.planHold(p, b, cfg.Group(bc.Group), ob.Group != bc.Group)
		next := balancerConfig(bc, cfg.Group(bc.Group))
		prev := b.Config()
		diff := balancerChanges(ob, bc, old.Group(ob.Group), cfg.Group(bc.Group))
		if len(diff) == 0 {
			continue
		}
		if ob.Port != bc.Port || *ob.Listeners != *bc.Listeners || ob.Bind != bc.Bind {
			checkFree(bc.Name, bc)
		}
		p.updateBalancers = append(p.updateBalancers, balancerUpdate{b: b, cfg: next})
		p.oldBalancerCfg[b] = prev
		change("balancer %s: %s", bc.Name, strings.Join(diff, ", "))
	}
	for _, ob := range old.Balancers {
		if oldBalancer(cfg, ob.Name) == nil && running[ob.Name] != nil {
			p.removeBalancers = append(p.removeBalancers, running[ob.Name])
			change("balancer %s: removed (drains and closes)", ob.Name)
		}
	}
}

func oldBalancer(c *config.Config, name string) *config.Balancer {
	for _, b := range c.Balancers {
		if b.Name == name {
			return b
		}
	}
	return nil
}

// balancerChanges names what differs between two balancer blocks (and the
// health checks of their groups), "policy round_robin → p2c".
func balancerChanges(o, n *config.Balancer, og, ng *config.Group) []string {
	var out []string
	add := func(what string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			out = append(out, fmt.Sprintf("%s %v → %v", what, a, b))
		}
	}
	add("group", o.Group, n.Group)
	add("bind", o.Bind, n.Bind)
	add("port", o.Port, n.Port)
	add("listeners", *o.Listeners, *n.Listeners)
	add("policy", o.Policy, n.Policy)
	add("retries", *o.Retries, *n.Retries)
	add("retry_on", fmt.Sprint(o.RetryOn), fmt.Sprint(n.RetryOn))
	add("drain_timeout", o.DrainTimeoutDur, n.DrainTimeoutDur)
	add("response_timeout", o.ResponseTimeoutDur, n.ResponseTimeoutDur)
	add("max_header_bytes", *o.MaxHeaderBytes, *n.MaxHeaderBytes)
	add("header_read_timeout", o.HeaderReadTimeoutDur, n.HeaderReadTimeoutDur)
	add("idle_timeout", o.IdleTimeoutDur, n.IdleTimeoutDur)
	add("body_read_timeout", o.BodyReadTimeoutDur, n.BodyReadTimeoutDur)
	add("body_min_rate", *o.BodyMinRate, *n.BodyMinRate)
	add("tunnel_idle_timeout", o.TunnelIdleTimeoutDur, n.TunnelIdleTimeoutDur)
	if og != nil && ng != nil {
		oh, nh := og.HealthCheck, ng.HealthCheck
		add("health path", oh.Path, nh.Path)
		add("health interval", oh.IntervalDur, nh.IntervalDur)
		add("health timeout", oh.TimeoutDur, nh.TimeoutDur)
		add("health rise", *oh.Rise, *nh.Rise)
		add("health fall", *oh.Fall, *nh.Fall)
	}
	return out
}

// shapeChanges names what changed in a group's worker shape.
func shapeChanges(og, g *config.Group, os, ns *groupSpec) []string {
	var out []string
	if og.Driver != g.Driver {
		out = append(out, fmt.Sprintf("driver %s → %s", og.Driver, g.Driver))
	}
	if og.Port != g.Port {
		out = append(out, fmt.Sprintf("port %d → %d", og.Port, g.Port))
	}
	switch {
	case og.RunsBuiltinWorker() && !g.RunsBuiltinWorker():
		out = append(out, "the built-in worker → its own program")
	case !og.RunsBuiltinWorker() && g.RunsBuiltinWorker():
		out = append(out, "its own program → the built-in worker")
	default:
		if os.env["GOLB_AVG_DELAY"] != ns.env["GOLB_AVG_DELAY"] {
			out = append(out, fmt.Sprintf("avg_delay %s → %s", og.App.AvgDelayDur, g.App.AvgDelayDur))
		}
		if os.env["GOLB_FAILURE_RATE"] != ns.env["GOLB_FAILURE_RATE"] {
			out = append(out, fmt.Sprintf("failure_rate %v → %v", *og.App.FailureRate, *g.App.FailureRate))
		}
	}
	if !bytes.Equal(os.config, ns.config) {
		out = append(out, "config block")
	}
	if len(out) == 0 {
		out = append(out, "driver settings")
	}
	return out
}

// sameScale reports whether two scale blocks (or their absence) agree.
func sameScale(a, b *config.Scale) bool {
	if a == nil || b == nil {
		return a == b
	}
	return reflect.DeepEqual(a.Spec(), b.Spec()) && *a.HoldMax == *b.HoldMax && a.HoldTimeoutDur == b.HoldTimeoutDur
}

// pins are the config's plugin pins, name → sha256.
func pins(c *config.Config) map[string]string {
	out := map[string]string{}
	for _, p := range c.Plugins {
		out[p.Name] = strings.ToLower(p.SHA256)
	}
	return out
}

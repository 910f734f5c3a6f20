package config

import (
	"cmp"
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/golb/golb/balancer"
	"github.com/golb/golb/drivers"
	"github.com/golb/golb/workerapp"
)

// Load reads and parses a config file; with path "" it parses the embedded
// default. The returned files map is for printing diagnostics with source.
// It resolves no driver names: LoadWith does.
func Load(path string) (*Config, map[string]*hcl.File, hcl.Diagnostics) {
	return LoadWith(path, Options{})
}

// LoadWith is Load with the checks of opts.
func LoadWith(path string, opts Options) (*Config, map[string]*hcl.File, hcl.Diagnostics) {
	if path == "" {
		return ParseWith(DefaultFileName, DefaultFile, opts)
	}
	src, d := readFile(path)
	if d != nil {
		return nil, nil, hcl.Diagnostics{d}
	}
	return ParseWith(path, src, opts)
}

// Parse decodes src, applies defaults and checks everything that needs no
// driver plugin. A Config is returned only without error diagnostics. A
// file over the limits of limits.go gets one diagnostic and is not parsed.
// The diagnostics are in file, line, column order (SortDiags).
func Parse(filename string, src []byte) (*Config, map[string]*hcl.File, hcl.Diagnostics) {
	return ParseWith(filename, src, Options{})
}

// ParseWith is Parse with the checks of opts.
func ParseWith(filename string, src []byte, opts Options) (*Config, map[string]*hcl.File, hcl.Diagnostics) {
	if d := checkShape(filename, src); d != nil {
		return nil, map[string]*hcl.File{filename: {Body: hcl.EmptyBody(), Bytes: src}}, hcl.Diagnostics{d}
	}
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	files := map[string]*hcl.File{filename: file}
	if diags.HasErrors() {
		return nil, files, SortDiags(diags)
	}
	cfg := &Config{Filename: filename}
	diags = append(diags, followUps(gohcl.DecodeBody(file.Body, nil, cfg))...)
	if diags.HasErrors() {
		// The file is only partly decoded; its groups' drivers are still
		// checked, so that a missing one is not reported only once every
		// other error is fixed. Not when plugin_dir itself is in error:
		// where the external drivers are is then unknown.
		if opts.Builtins != nil && (!hasAttr(file.Body, "plugin_dir") || !errorWithin(diags, attrRange(file.Body, "plugin_dir"))) {
			dir := cmp.Or(cfg.PluginDir, defaultPluginDir)
			diags = append(diags, checkDriverNames(decodedGroups(cfg.Groups, diags), dir, opts.Builtins)...)
		}
		return nil, files, SortDiags(diags)
	}
	v := &validator{cfg: cfg, explicitApp: map[*Group]bool{}}
	v.defaults()
	v.check()
	diags = append(diags, v.diags...)
	if opts.Builtins != nil {
		diags = append(diags, checkDriverNames(cfg.Groups, cfg.PluginDir, opts.Builtins)...)
	}
	if diags.HasErrors() {
		return nil, files, SortDiags(diags)
	}
	return cfg, files, SortDiags(diags)
}

// followUps drops gohcl's follow-up errors: a variable or function call
// (not allowed, since there is no evaluation context) is reported, and then
// again as "Unsuitable value type … value must be known" at the attribute.
// An unknown value cannot arise in any other way here, so that second error
// is dropped whenever another error is present.
func followUps(diags hcl.Diagnostics) hcl.Diagnostics {
	isFollowUp := func(d *hcl.Diagnostic) bool {
		return d.Severity == hcl.DiagError && strings.HasSuffix(d.Detail, "value must be known")
	}
	others := false
	for _, d := range diags {
		if d.Severity == hcl.DiagError && !isFollowUp(d) {
			others = true
		}
	}
	if !others {
		return diags
	}
	var out hcl.Diagnostics
	for _, d := range diags {
		if !isFollowUp(d) {
			out = append(out, d)
		}
	}
	return out
}

type validator struct {
	cfg   *Config
	diags hcl.Diagnostics
	// explicitApp records the groups whose file has an app block (before
	// defaults fill one in), for the app/config conflict check.
	explicitApp map[*Group]bool
	// blockNames maps each top-level block's body range to its name's
	// range, for blockRange.
	blockNames map[hcl.Range]hcl.Range
	// groups holds the group names, for the balancers' references.
	groups map[string]bool
}

func (v *validator) errorf(rng hcl.Range, summary, hint string, args ...any) {
	v.diags = append(v.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf(summary, args...),
		Detail:   hint,
		Subject:  rng.Ptr(),
	})
}

// attrRange is the source range of attribute name's value in body or, when
// the attribute is absent, the opening brace of the block.
func attrRange(body hcl.Body, name string) hcl.Range {
	if sb, ok := body.(*hclsyntax.Body); ok {
		if a, ok := sb.Attributes[name]; ok {
			return a.Expr.Range()
		}
	}
	return body.MissingItemRange()
}

// hasAttr reports whether attribute name is written in body.
func hasAttr(body hcl.Body, name string) bool {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return false
	}
	_, ok = sb.Attributes[name]
	return ok
}

// blockRange is where a diagnostic about the top-level block whose body is
// body points: its first label (the name), else its type keyword. For the
// file's own body it is the start of the file.
func (v *validator) blockRange(body hcl.Body) hcl.Range {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return body.MissingItemRange()
	}
	if v.blockNames == nil {
		// Indexed once: a lookup per block would be quadratic in blocks.
		v.blockNames = map[hcl.Range]hcl.Range{}
		if file, ok := v.cfg.Body.(*hclsyntax.Body); ok {
			for _, blk := range file.Blocks {
				if _, dup := v.blockNames[blk.Body.SrcRange]; dup || blk.Body == file {
					continue
				}
				v.blockNames[blk.Body.SrcRange] = blk.TypeRange
				if len(blk.LabelRanges) > 0 {
					v.blockNames[blk.Body.SrcRange] = blk.LabelRanges[0]
				}
			}
		}
	}
	// A ",remain" body is a copy of the block's body, so match by range.
	if r, ok := v.blockNames[sb.SrcRange]; ok {
		return r
	}
	return hcl.Range{Filename: sb.SrcRange.Filename, Start: sb.SrcRange.Start, End: sb.SrcRange.Start}
}

// elemRange is the range of element i of the list attribute name, or of the
// whole attribute when it is not written as a [ ... ] literal.
func elemRange(body hcl.Body, name string, i int) hcl.Range {
	if sb, ok := body.(*hclsyntax.Body); ok {
		if a, ok := sb.Attributes[name]; ok {
			if t, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok && i < len(t.Exprs) {
				return t.Exprs[i].Range()
			}
		}
	}
	return attrRange(body, name)
}

func (v *validator) defaults() {
	c := v.cfg
	if c.DataDir == "" {
		c.DataDir = ".golb"
	}
	if c.PluginDir == "" {
		c.PluginDir = defaultPluginDir
	}
	if c.Admin == nil {
		c.Admin = &Admin{Body: hcl.EmptyBody()}
	}
	if c.Admin.Address == nil {
		addr := "127.0.0.1:5040"
		c.Admin.Address = &addr
	}
	if c.Stats == nil {
		c.Stats = &Stats{Body: hcl.EmptyBody()}
	}
	if c.Stats.Sink == "" {
		c.Stats.Sink = "sqlite"
	}
	if c.Stats.Path == "" {
		c.Stats.Path = "worker-stats.db"
	}
	if c.Stats.FlushInterval == "" {
		c.Stats.FlushInterval = "1s"
	}
	for _, g := range c.Groups {
		v.explicitApp[g] = g.App != nil
		if g.Driver == "" {
			g.Driver = "process"
		}
		if g.StopSignal == "" {
			g.StopSignal = "SIGTERM"
		}
		if g.StopTimeout == "" {
			g.StopTimeout = "10s"
		}
		if g.App == nil {
			g.App = &App{Body: hcl.EmptyBody()}
		}
		if g.App.AvgDelay == "" {
			g.App.AvgDelay = "500ms"
		}
		if g.App.FailureRate == nil {
			g.App.FailureRate = new(float64)
		}
		if g.Scale != nil {
			scaleDefaults(g.Scale)
		}
		updateDefaults(g)
		if g.HealthCheck == nil {
			g.HealthCheck = &HealthCheck{Body: hcl.EmptyBody()}
		}
		hc := g.HealthCheck
		if hc.Path == "" {
			hc.Path = "/healthz"
		}
		if hc.Interval == "" {
			hc.Interval = "5s"
		}
		if hc.Timeout == "" {
			hc.Timeout = "1s"
		}
		if hc.Rise == nil {
			hc.Rise = intPtr(1)
		}
		if hc.Fall == nil {
			hc.Fall = intPtr(2)
		}
	}
	for _, b := range c.Balancers {
		if b.Listeners == nil {
			b.Listeners = intPtr(1)
		}
		if b.Bind == "" {
			b.Bind = "127.0.0.1"
		}
		if b.Policy == "" {
			b.Policy = "round_robin"
		}
		if b.Retries == nil {
			b.Retries = intPtr(1)
		}
		if b.DrainTimeout == "" {
			b.DrainTimeout = "10s"
		}
		if b.ResponseTimeout == "" {
			b.ResponseTimeout = "60s"
		}
		if b.MaxHeaderBytes == nil {
			b.MaxHeaderBytes = intPtr(64 << 10)
		}
		if b.HeaderReadTimeout == "" {
			b.HeaderReadTimeout = "10s"
		}
		if b.IdleTimeout == "" {
			b.IdleTimeout = "120s"
		}
		if b.BodyReadTimeout == "" {
			b.BodyReadTimeout = "10s"
		}
		if b.BodyMinRate == nil {
			b.BodyMinRate = intPtr(1024)
		}
		if b.TunnelIdleTimeout == "" {
			b.TunnelIdleTimeout = "1h"
		}
	}
}

func intPtr(i int) *int { return &i }

// duration parses a Go duration attribute, reporting errors at its range.
func (v *validator) duration(body hcl.Body, name, val string, min time.Duration) time.Duration {
	d, err := time.ParseDuration(val)
	if err != nil {
		v.errorf(attrRange(body, name), "Invalid duration %q for %s", `Write a Go duration such as "500ms", "5s" or "1m".`, val, name)
		return 0
	}
	if d < min {
		v.errorf(attrRange(body, name), "%s must be at least %v", "Raise it; a smaller value makes no sense here.", name, min)
	}
	return d
}

func (v *validator) port(body hcl.Body, name string, p int) {
	if p < 1 || p > 65535 {
		v.errorf(attrRange(body, name), "Invalid port %d", "Ports are 1 to 65535; pick a free one above 1024.", p)
	}
}

func (v *validator) check() {
	c := v.cfg
	if len(c.Groups) == 0 {
		v.errorf(v.blockRange(c.Body), "No group defined", `Add a group "NAME" { port = 6000 } block: golb has nothing to run.`)
	}
	v.checkAdmin()
	seen := map[string]hcl.Range{}
	v.groups = map[string]bool{}
	for _, g := range c.Groups {
		v.groups[g.Name] = true
	}
	for _, g := range c.Groups {
		if prev, dup := seen[g.Name]; dup {
			v.errorf(v.blockRange(g.Body), "Duplicate group %q", fmt.Sprintf("Another group has this name at %s:%d:%d; rename one.", prev.Filename, prev.Start.Line, prev.Start.Column), g.Name)
		}
		seen[g.Name] = v.blockRange(g.Body)
		v.checkGroup(g)
	}
	bseen := map[string]bool{}
	for _, b := range c.Balancers {
		if bseen[b.Name] {
			v.errorf(v.blockRange(b.Body), "Duplicate balancer %q", "Rename one of them.", b.Name)
		}
		bseen[b.Name] = true
		v.checkBalancer(b)
	}
	pseen := map[string]bool{}
	for _, p := range c.Plugins {
		if pseen[p.Name] {
			v.errorf(v.blockRange(p.Body), "Duplicate plugin pin %q", "Keep one sha256 per plugin.", p.Name)
		}
		pseen[p.Name] = true
		if !validName(p.Name) {
			v.errorf(v.blockRange(p.Body), "Invalid plugin name %q", "Use the NAME of golb-driver-NAME: letters, digits, - and _ only.", p.Name)
		}
		if len(p.SHA256) != 64 || strings.Trim(strings.ToLower(p.SHA256), "0123456789abcdef") != "" {
			v.errorf(attrRange(p.Body, "sha256"), "Invalid sha256 for plugin %q", "Give 64 hex digits, as printed by `sha256sum golb-driver-"+p.Name+"`.", p.Name)
		}
	}
	dseen := map[string]bool{}
	for _, d := range c.Drivers {
		if dseen[d.Name] {
			v.errorf(v.blockRange(d.Body), "Duplicate driver block %q", "Merge the settings into one block.", d.Name)
		}
		dseen[d.Name] = true
		if !validName(d.Name) {
			v.errorf(v.blockRange(d.Body), "Invalid driver name %q", "Use process, docker, or the NAME of a golb-driver-NAME plugin.", d.Name)
		}
	}
	c.Stats.FlushIntervalDur = v.duration(c.Stats.Body, "flush_interval", c.Stats.FlushInterval, 10*time.Millisecond)
	v.checkStats()
	v.checkPorts()
}

func (v *validator) checkAdmin() {
	addr := v.cfg.AdminAddress()
	if addr == "" {
		return
	}
	if _, ok := adminPort(addr); !ok {
		v.errorf(attrRange(v.cfg.Admin.Body, "address"), "Invalid admin address %q", `Write host:port with a port of 0 to 65535, e.g. "127.0.0.1:5040" (or "" to turn the admin API off).`, addr)
	}
}

// adminPort is the port of a host:port admin address; ok is false when addr
// is not host:port with a numeric port in 0..65535.
func adminPort(addr string) (port int, ok bool) {
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, false
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p < 0 || p > 65535 || strconv.Itoa(p) != ps {
		return 0, false
	}
	return p, true
}

func (v *validator) checkGroup(g *Group) {
	if !validName(g.Name) {
		v.errorf(v.blockRange(g.Body), "Invalid group name %q", "Use letters, digits, - and _ only (it becomes part of worker ids and labels).", g.Name)
	}
	if !validName(g.Driver) {
		v.errorf(attrRange(g.Body, "driver"), "Invalid driver name %q", "Use process, docker, or the NAME of a golb-driver-NAME plugin.", g.Driver)
	}
	v.port(g.Body, "port", g.Port)
	if n := g.MaxCount(); g.Port >= 1 && g.Port <= 65535 && n >= 1 && n <= 1000 && g.Port+n-1 > 65535 {
		v.errorf(attrRange(g.Body, "port"), "Worker ports run past 65535", fmt.Sprintf("The group may run %d workers from this port; lower port.", n))
	}
	if g.Count != nil && (*g.Count < 0 || *g.Count > 1000) {
		v.errorf(attrRange(g.Body, "count"), "count must be between 0 and 1000", "Set the number of workers to run.")
	}
	// The drivers' own list (drivers.StopSignals); they get the canonical
	// name, "SIGINT" for "int".
	if sig, err := drivers.ParseSignal(g.StopSignal); err != nil {
		v.errorf(attrRange(g.Body, "stop_signal"), "Unknown stop_signal %q", "Use one of "+strings.Join(drivers.StopSignals(), ", ")+".", g.StopSignal)
	} else {
		g.StopSignal = drivers.SignalName(sig)
	}
	g.StopTimeoutDur = v.duration(g.Body, "stop_timeout", g.StopTimeout, 0)

	a := g.App
	a.AvgDelayDur = v.duration(a.Body, "avg_delay", a.AvgDelay, 0)
	// The worker refuses a longer one (and the group would crash-loop).
	v.atMost(a.Body, "avg_delay", a.AvgDelayDur, workerapp.MaxAvgDelay, `Shorten it, e.g. "500ms" (the default): the built-in worker refuses a longer average delay.`)
	if r := *a.FailureRate; r < 0 || r > 1 || math.IsNaN(r) {
		v.errorf(attrRange(a.Body, "failure_rate"), "failure_rate must be between 0 and 1", "It is a fraction: 0.12 means 12% of requests fail.")
	}

	if g.Scale != nil {
		v.checkScale(g)
	}
	v.checkUpdate(g)

	hc := g.HealthCheck
	if summary, hint := healthPathError(hc.Path); summary != "" {
		v.errorf(attrRange(hc.Body, "path"), "%s", hint, summary)
	}
	hc.IntervalDur = v.duration(hc.Body, "interval", hc.Interval, 10*time.Millisecond)
	hc.TimeoutDur = v.duration(hc.Body, "timeout", hc.Timeout, time.Millisecond)
	if hc.TimeoutDur > 0 && hc.IntervalDur > 0 && hc.TimeoutDur >= hc.IntervalDur {
		at := "timeout"
		if !hasAttr(hc.Body, at) {
			at = "interval" // the default timeout is too long for the interval written
		}
		v.errorf(attrRange(hc.Body, at), "Health check timeout %v is not shorter than its interval %v", "Make the timeout shorter than the interval, so one check ends before the next starts.", hc.TimeoutDur, hc.IntervalDur)
	}
	if *hc.Rise < 1 {
		v.errorf(attrRange(hc.Body, "rise"), "rise must be at least 1", "It counts consecutive passed checks before a worker is healthy.")
	}
	if *hc.Fall < 1 {
		v.errorf(attrRange(hc.Body, "fall"), "fall must be at least 1", "It counts consecutive failed checks before a worker is unhealthy.")
	}

	v.checkEnv(g)

	if v.explicitApp[g] && !g.RunsBuiltinWorker() {
		for _, name := range []string{"command", "image"} {
			if hasAttr(g.Config.Body, name) {
				v.errorf(attrRange(g.Config.Body, name), "config.%s conflicts with the app block", fmt.Sprintf("The app block configures the built-in worker, which config.%s replaces: remove one of them.", name), name)
			}
		}
	}
}

func (v *validator) checkBalancer(b *Balancer) {
	if !validName(b.Name) {
		v.errorf(v.blockRange(b.Body), "Invalid balancer name %q", "Use letters, digits, - and _ only.", b.Name)
	}
	if !v.groups[b.Group] {
		hint := "Name a group defined in this file: " + v.groupNames() + "."
		if len(v.cfg.Groups) == 0 {
			hint = "Define the group it sends traffic to."
		}
		v.errorf(attrRange(b.Body, "group"), "Unknown group %q", hint, b.Group)
	}
	if net.ParseIP(b.Bind) == nil {
		v.errorf(attrRange(b.Body, "bind"), "Invalid bind address %q", `Give an IP address: "127.0.0.1" (loopback only, the default) or "0.0.0.0" (every interface).`, b.Bind)
	}
	v.port(b.Body, "port", b.Port)
	if *b.Listeners < 1 || *b.Listeners > 64 {
		v.errorf(attrRange(b.Body, "listeners"), "listeners must be between 1 and 64", "It is how many ports from port serve.")
	} else if b.Port+*b.Listeners-1 > 65535 {
		v.errorf(attrRange(b.Body, "listeners"), "Listener ports run past 65535", "Lower port or listeners.")
	}
	if policies := balancer.Policies(); !slices.Contains(policies, b.Policy) {
		v.errorf(attrRange(b.Body, "policy"), "Unknown policy %q", "Use one of "+strings.Join(policies, ", ")+".", b.Policy)
	}
	if *b.Retries < 0 || *b.Retries > 10 {
		v.errorf(attrRange(b.Body, "retries"), "retries must be between 0 and 10", "1 covers a worker that just died.")
	}
	for i, r := range b.RetryOn {
		if r != "5xx" && r != "connect-failure" {
			v.errorf(elemRange(b.Body, "retry_on", i), "Unknown retry_on value %q", `Use "5xx" (idempotent requests only) or "connect-failure" (always on).`, r)
		}
	}
	b.DrainTimeoutDur = v.duration(b.Body, "drain_timeout", b.DrainTimeout, 0)
	b.ResponseTimeoutDur = v.positive(b.Body, "response_timeout", b.ResponseTimeout, `It bounds the wait for a worker's response headers, e.g. "60s" (the default) or "5s".`)

	if n := *b.MaxHeaderBytes; n < minHeaderBytes {
		v.errorf(attrRange(b.Body, "max_header_bytes"), "max_header_bytes must be between %d and %d", "Raise it to 1024 or more; 65536 (the default) fits any browser's request line and headers.", minHeaderBytes, maxHeaderBytes)
	} else if n > maxHeaderBytes {
		v.errorf(attrRange(b.Body, "max_header_bytes"), "max_header_bytes must be between %d and %d", "Lower it to 1048576 (1 MiB) or less: the balancer holds each request's line and headers in memory.", minHeaderBytes, maxHeaderBytes)
	}
	b.HeaderReadTimeoutDur = v.positive(b.Body, "header_read_timeout", b.HeaderReadTimeout, `It bounds how long a client may take to send a request's line and headers, e.g. "10s" (the default).`)
	b.IdleTimeoutDur = v.positive(b.Body, "idle_timeout", b.IdleTimeout, `It closes a client's keep-alive connection that sends no new request, e.g. "120s" (the default).`)
	b.BodyReadTimeoutDur = v.positive(b.Body, "body_read_timeout", b.BodyReadTimeout, `It bounds the pause between two reads of a request body, e.g. "10s" (the default).`)
	if *b.BodyMinRate < 0 {
		v.errorf(attrRange(b.Body, "body_min_rate"), "body_min_rate must be 0 or more", "It is the bytes per second a body must average after body_read_timeout: 1024 by default, 0 for off.")
	}
	b.TunnelIdleTimeoutDur = v.positive(b.Body, "tunnel_idle_timeout", b.TunnelIdleTimeout, `It closes an upgraded connection (WebSocket) on which neither side sent a byte for this long, e.g. "1h" (the default).`)
}

// The bounds of a balancer's max_header_bytes.
const (
	minHeaderBytes = 1 << 10
	maxHeaderBytes = 1 << 20
)

// positive parses a duration attribute that must be above 0; hint says what
// it bounds. A value of 0 or below is reported and gives 0.
func (v *validator) positive(body hcl.Body, name, val, hint string) time.Duration {
	if d, err := time.ParseDuration(val); err == nil && d <= 0 {
		v.errorf(attrRange(body, name), "%s must be above 0", hint, name)
		return 0
	}
	return v.duration(body, name, val, 0)
}

// checkPorts reports balancer listeners, worker port ranges and the admin
// address that overlap: each claim that overlaps an earlier one, once, named
// with the earlier claim of its first shared port. It walks the ports, not
// the pairs of claims: a file of thousands of groups on one port would
// otherwise give a clash per pair, millions of them.
func (v *validator) checkPorts() {
	uses := v.cfg.PortClaims()
	owner := make([]int32, 65536) // 1 + the index in uses of the port's first claim
	for i, a := range uses {
		clash := -1
		for p := a.First; p <= a.Last; p++ {
			switch {
			case owner[p] == 0:
				owner[p] = int32(i + 1)
			case clash < 0:
				clash = int(owner[p]) - 1
			}
		}
		if clash >= 0 {
			v.errorf(a.Range, "Port clash between %s and %s", "Move one of them: each worker, listener and the admin API needs its own port.", a.What, uses[clash].What)
		}
	}
}

// maxHintNames is how many group names a hint lists: one hint per balancer
// listing thousands of groups would make a small file print gigabytes.
const maxHintNames = 10

// groupNames lists the groups for a hint: the first maxHintNames of them.
func (v *validator) groupNames() string {
	var out []string
	for _, g := range v.cfg.Groups[:min(len(v.cfg.Groups), maxHintNames)] {
		out = append(out, g.Name)
	}
	if n := len(v.cfg.Groups); n > maxHintNames {
		out = append(out, fmt.Sprintf("… (%d groups)", n))
	}
	return strings.Join(out, ", ")
}

// healthPathError says what is wrong with a health check path, and how to
// fix it; "" when nothing is. The probe sends GET PATH to each worker, so a
// path must be a request target: "/" first, no space, control byte or
// fragment, and parsing as a URL (a stray "%" as in "/%zz" does not). Such
// a path passed validate, and then no worker ever became healthy.
// balancer.Config.Validate checks the same.
func healthPathError(p string) (summary, hint string) {
	if !strings.HasPrefix(p, "/") {
		return fmt.Sprintf("Health check path %q must start with /", p), `For the built-in worker use "/healthz".`
	}
	for i := 0; i < len(p); i++ {
		if b := p[i]; b <= ' ' || b == 0x7f || b == '#' {
			return fmt.Sprintf("Health check path %q has %q at byte %d", p, b, i),
				"The probe sends the path as its request target: escape a space as %20 and '#' as %23; a control byte has no place in it."
		}
	}
	if _, err := url.ParseRequestURI("http://127.0.0.1:1" + p); err != nil {
		return fmt.Sprintf("Health check path %q is not a URL path", p),
			"Write a % only as an escape of two hex digits (%25 for a % itself), e.g. \"/healthz\"."
	}
	return "", ""
}

func validName(s string) bool {
	if s == "" || len(s) > 48 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

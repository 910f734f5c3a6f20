package config

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// FuzzParse feeds arbitrary bytes to Parse. Seeds: testdata/fuzz/FuzzParse
// (go test's own corpus), every testdata/valid and testdata/invalid file, and
// the embedded default. Run it with
//
//	go test -run '^$' -fuzz FuzzParse -fuzztime 2m ./core/config/
func FuzzParse(f *testing.F) {
	f.Add(DefaultFile)
	for _, dir := range []string{"valid", "invalid"} {
		paths, err := filepath.Glob(filepath.Join("testdata", dir, "*.hcl"))
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range paths {
			src, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(src)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		const name = "fuzz.hcl"
		cfg, files, diags := Parse(name, src)
		// Printing must work for whatever Parse returns, as golb validate does.
		var buf bytes.Buffer
		if err := hcl.NewDiagnosticTextWriter(&buf, files, 100, false).WriteDiagnostics(diags); err != nil {
			t.Fatalf("writing diagnostics: %v", err)
		}
		if files[name] == nil {
			t.Fatalf("files has no entry for %s: diagnostics cannot show source", name)
		}
		if diags.HasErrors() {
			if cfg != nil {
				t.Fatalf("Config returned along with errors:\n%s", buf.String())
			}
			for _, d := range diags {
				if d.Severity != hcl.DiagError {
					continue
				}
				// Parse has no whole-file errors: even "No group defined"
				// points at the start of the file.
				if d.Subject == nil || d.Subject.Filename != name {
					t.Fatalf("error %q has no position in %s (subject %v)", d.Summary, name, d.Subject)
				}
				if d.Subject.Start.Line < 1 || d.Subject.Start.Column < 1 || d.Subject.Start.Byte > len(src) {
					t.Fatalf("error %q at an impossible position %v", d.Summary, d.Subject)
				}
			}
			return
		}
		if cfg == nil {
			t.Fatalf("nil Config without errors; diagnostics:\n%s", buf.String())
		}
		if err := recheck(cfg); err != nil {
			t.Fatalf("Parse accepted a config that %v\ninput:\n%s", err, src)
		}
	})
}

// recheck verifies a Config that Parse accepted, independently of parse.go:
// defaults are filled in, values are in range, references resolve and no two
// blocks claim the same port.
func recheck(c *Config) error {
	if len(c.Groups) == 0 {
		return fmt.Errorf("has no group")
	}
	if c.Admin == nil || c.Admin.Address == nil || c.Stats == nil || c.DataDir == "" || c.PluginDir == "" {
		return fmt.Errorf("lacks defaults (admin, stats, data_dir or plugin_dir)")
	}
	if c.Stats.FlushIntervalDur <= 0 {
		return fmt.Errorf("has stats flush interval %v", c.Stats.FlushIntervalDur)
	}
	type claim struct {
		first, last int
		who         string
	}
	var claims []claim
	names := map[string]bool{}
	for _, g := range c.Groups {
		if names[g.Name] {
			return fmt.Errorf("has two groups named %q", g.Name)
		}
		names[g.Name] = true
		if g.Driver == "" {
			return fmt.Errorf("has group %q without a driver", g.Name)
		}
		if g.App == nil || g.HealthCheck == nil || g.HealthCheck.Rise == nil || g.HealthCheck.Fall == nil || g.App.FailureRate == nil {
			return fmt.Errorf("has group %q without defaults", g.Name)
		}
		last := g.Port + max(g.MaxCount(), 1) - 1
		if g.Port < 1 || last > 65535 {
			return fmt.Errorf("has group %q with worker ports %d-%d", g.Name, g.Port, last)
		}
		if n := g.InitialCount(); n < 0 || n > g.MaxCount() || (g.Scale != nil && (n < g.Scale.Min || n > g.Scale.Max)) {
			return fmt.Errorf("has group %q starting %d workers (max %d)", g.Name, n, g.MaxCount())
		}
		if r := *g.App.FailureRate; !(r >= 0 && r <= 1) {
			return fmt.Errorf("has group %q with failure_rate %v", g.Name, r)
		}
		if g.App.AvgDelayDur < 0 || g.StopTimeoutDur < 0 {
			return fmt.Errorf("has group %q with a negative duration", g.Name)
		}
		hc := g.HealthCheck
		if hc.TimeoutDur <= 0 || hc.TimeoutDur >= hc.IntervalDur || *hc.Rise < 1 || *hc.Fall < 1 || hc.Path == "" || hc.Path[0] != '/' {
			return fmt.Errorf("has group %q with health check %+v", g.Name, *hc)
		}
		if s := g.Scale; s != nil && (s.Min < 0 || s.Min > s.Max || (s.TargetInflight == nil) == (s.TargetRPS == nil) || s.Spec().WithDefaults().Validate() != nil) {
			return fmt.Errorf("has group %q with scale %+v", g.Name, *s)
		}
		claims = append(claims, claim{g.Port, last, "group " + g.Name})
	}
	for _, b := range c.Balancers {
		if c.Group(b.Group) == nil {
			return fmt.Errorf("has balancer %q for unknown group %q", b.Name, b.Group)
		}
		if b.Listeners == nil || b.Retries == nil || b.Policy == "" || b.MaxHeaderBytes == nil || b.BodyMinRate == nil {
			return fmt.Errorf("has balancer %q without defaults", b.Name)
		}
		if n := *b.MaxHeaderBytes; n < 1024 || n > 1<<20 {
			return fmt.Errorf("has balancer %q with max_header_bytes %d", b.Name, n)
		}
		if b.ResponseTimeoutDur <= 0 || b.HeaderReadTimeoutDur <= 0 || b.IdleTimeoutDur <= 0 || b.BodyReadTimeoutDur <= 0 || b.DrainTimeoutDur < 0 || b.TunnelIdleTimeoutDur <= 0 {
			return fmt.Errorf("has balancer %q with timeouts response %v, header read %v, idle %v, body read %v, drain %v, tunnel idle %v",
				b.Name, b.ResponseTimeoutDur, b.HeaderReadTimeoutDur, b.IdleTimeoutDur, b.BodyReadTimeoutDur, b.DrainTimeoutDur, b.TunnelIdleTimeoutDur)
		}
		if *b.BodyMinRate < 0 {
			return fmt.Errorf("has balancer %q with body_min_rate %d", b.Name, *b.BodyMinRate)
		}
		last := b.Port + *b.Listeners - 1
		if b.Port < 1 || *b.Listeners < 1 || last > 65535 {
			return fmt.Errorf("has balancer %q with listener ports %d-%d", b.Name, b.Port, last)
		}
		claims = append(claims, claim{b.Port, last, "balancer " + b.Name})
	}
	if addr := c.AdminAddress(); addr != "" {
		_, ps, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("has admin address %q: %v", addr, err)
		}
		p, err := strconv.ParseUint(ps, 10, 16)
		if err != nil {
			return fmt.Errorf("has admin address %q: %v", addr, err)
		}
		if p != 0 {
			claims = append(claims, claim{int(p), int(p), "admin"})
		}
	}
	used := map[int]string{}
	for _, cl := range claims {
		for p := cl.first; p <= cl.last; p++ {
			if other, ok := used[p]; ok {
				return fmt.Errorf("gives port %d to both %s and %s", p, other, cl.who)
			}
			used[p] = cl.who
		}
	}
	return nil
}

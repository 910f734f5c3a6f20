package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/golb/golb/balancer"
	"github.com/golb/golb/drivers"
	"github.com/golb/golb/workerapp"
)

var update = flag.Bool("update", false, "rewrite the testdata/**/*.golden files from the current output")

// wantRe is the first line of every testdata/invalid file: where the first
// diagnostic must point.
var wantRe = regexp.MustCompile(`^# want: (\d+):(\d+)\s*$`)

// diagText renders diags exactly as `golb validate` prints them.
func diagText(t testing.TB, files map[string]*hcl.File, diags hcl.Diagnostics) string {
	t.Helper()
	var buf bytes.Buffer
	if err := hcl.NewDiagnosticTextWriter(&buf, files, 100, false).WriteDiagnostics(diags); err != nil {
		t.Fatalf("writing diagnostics: %v", err)
	}
	return buf.String()
}

// checkGolden compares got with the golden file, or rewrites it under -update.
func checkGolden(t *testing.T, golden, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run go test -update to accept):\n--- got\n%s\n--- want\n%s", golden, got, want)
	}
}

func testdataFiles(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", dir, "*.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no testdata/%s/*.hcl files", dir)
	}
	for i := range paths {
		paths[i] = filepath.ToSlash(paths[i])
	}
	return paths
}

// TestInvalidGolden parses every testdata/invalid file: it must fail with a nil
// Config, its first diagnostic must point where the file's "# want: L:C" line
// says, every error must carry a position in the file, and the printed
// diagnostics must equal NAME.golden.
func TestInvalidGolden(t *testing.T) {
	invalidGolden(t, "invalid", Options{})
}

// invalidGolden is TestInvalidGolden's check of each testdata/DIR file,
// parsed with opts.
func invalidGolden(t *testing.T, dir string, opts Options) {
	for _, path := range testdataFiles(t, dir) {
		name := strings.TrimSuffix(filepath.Base(path), ".hcl")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(src), "\n")
			m := wantRe.FindStringSubmatch(first)
			if m == nil {
				t.Fatalf(`first line is %q, want "# want: LINE:COLUMN"`, first)
			}
			wantLine, _ := strconv.Atoi(m[1])
			wantCol, _ := strconv.Atoi(m[2])

			cfg, files, diags := ParseWith(path, src, opts)
			if !diags.HasErrors() {
				t.Fatalf("no error diagnostics; got %v", diags)
			}
			if cfg != nil {
				t.Errorf("Parse returned a Config along with errors: golb must never start half-configured")
			}
			d := diags[0]
			if d.Subject == nil {
				t.Fatalf("first diagnostic %q has no Subject", d.Summary)
			}
			if d.Subject.Start.Line != wantLine || d.Subject.Start.Column != wantCol {
				t.Errorf("first diagnostic %q points at %d:%d, want %d:%d", d.Summary, d.Subject.Start.Line, d.Subject.Start.Column, wantLine, wantCol)
			}
			for _, d := range diags {
				if d.Severity == hcl.DiagError && (d.Subject == nil || d.Subject.Filename != path) {
					t.Errorf("error %q has no position in %s: %v", d.Summary, path, d.Subject)
				}
				if d.Severity == hcl.DiagError && strings.TrimSpace(d.Detail) == "" {
					t.Errorf("error %q has no fix hint", d.Summary)
				}
			}
			checkGolden(t, strings.TrimSuffix(path, ".hcl")+".golden", diagText(t, files, diags))
		})
	}
}

// TestValidGolden parses every testdata/valid file and the embedded default:
// no diagnostics at all, and the decoded Config with defaults applied must
// equal NAME.golden.
func TestValidGolden(t *testing.T) {
	type tc struct {
		name, filename, golden string
		src                    []byte
	}
	cases := []tc{{name: "embedded_default", filename: DefaultFileName, golden: "testdata/valid/embedded_default.golden", src: DefaultFile}}
	for _, path := range testdataFiles(t, "valid") {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, tc{strings.TrimSuffix(filepath.Base(path), ".hcl"), path, strings.TrimSuffix(path, ".hcl") + ".golden", src})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, files, diags := Parse(c.filename, c.src)
			if len(diags) > 0 {
				t.Fatalf("unexpected diagnostics:\n%s", diagText(t, files, diags))
			}
			if cfg == nil {
				t.Fatal("nil Config without diagnostics")
			}
			checkGolden(t, c.golden, renderConfig(t, cfg))
		})
	}
}

// TestLoadDefault checks that Load("") is the embedded default and that the
// default is the seed's config.yaml, as DESIGN.md states it.
func TestLoadDefault(t *testing.T) {
	cfg, files, diags := Load("")
	if diags.HasErrors() {
		t.Fatalf("embedded default fails:\n%s", diagText(t, files, diags))
	}
	if cfg.Filename != DefaultFileName {
		t.Errorf("Filename = %q, want %q", cfg.Filename, DefaultFileName)
	}
	if len(cfg.Groups) != 1 || len(cfg.Balancers) != 1 {
		t.Fatalf("default has %d groups and %d balancers, want 1 and 1", len(cfg.Groups), len(cfg.Balancers))
	}
	g, b := cfg.Groups[0], cfg.Balancers[0]
	if g.Driver != "process" || g.InitialCount() != 3 || g.Port != 6000 {
		t.Errorf("default group: driver %s, %d workers from %d; want process, 3 from 6000", g.Driver, g.InitialCount(), g.Port)
	}
	if b.Group != g.Name || b.Port != 5050 || *b.Listeners != 2 {
		t.Errorf("default balancer: group %s, %d listeners from %d; want %s, 2 from 5050", b.Group, *b.Listeners, b.Port, g.Name)
	}
	if g.App.AvgDelayDur.Milliseconds() != 500 || *g.App.FailureRate != 0.12 {
		t.Errorf("default app: avg_delay %v, failure_rate %v; want 500ms, 0.12", g.App.AvgDelayDur, *g.App.FailureRate)
	}
	if cfg.Stats.Sink != "sqlite" || cfg.Stats.Path != "worker-stats.db" {
		t.Errorf("default stats: %s at %s; want sqlite at worker-stats.db", cfg.Stats.Sink, cfg.Stats.Path)
	}
}

func TestLoadMissingFile(t *testing.T) {
	cfg, _, diags := Load(filepath.Join(t.TempDir(), "absent.hcl"))
	if cfg != nil || !diags.HasErrors() {
		t.Fatalf("Load of a missing file: cfg %v, diags %v; want nil and an error", cfg, diags)
	}
	if !strings.Contains(diags[0].Detail, "absent.hcl") {
		t.Errorf("detail %q does not name the file", diags[0].Detail)
	}
}

func TestLoadFileUsesPathInDiagnostics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "golb.hcl")
	if err := os.WriteFile(path, []byte("group \"a\" {\n  port = 0\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, files, diags := Load(path)
	if cfg != nil || !diags.HasErrors() {
		t.Fatalf("want an invalid-port error, got cfg %v diags %v", cfg, diags)
	}
	if diags[0].Subject.Filename != path || files[path] == nil {
		t.Errorf("diagnostic file %q, files %v; want %q", diags[0].Subject.Filename, files, path)
	}
}

// mustParse parses src and fails the test on any error.
func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	cfg, files, diags := Parse("test.hcl", []byte(src))
	if diags.HasErrors() {
		t.Fatalf("unexpected errors:\n%s", diagText(t, files, diags))
	}
	return cfg
}

// errorsOf parses src, which must fail, and returns its error diagnostics.
func errorsOf(t *testing.T, src string) hcl.Diagnostics {
	t.Helper()
	cfg, _, diags := Parse("test.hcl", []byte(src))
	if cfg != nil || !diags.HasErrors() {
		t.Fatalf("want errors and a nil Config, got %v and %v", cfg, diags)
	}
	var errs hcl.Diagnostics
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			errs = append(errs, d)
		}
	}
	return errs
}

// Regression: "127.0.0.1:5040x" and "127.0.0.1:http" passed as admin
// addresses (only "host:" was rejected) and failed later at listen time.
func TestAdminAddressTrailingGarbageRejected(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:5040x", "127.0.0.1:http", "127.0.0.1:65536", "127.0.0.1:-1", "5040", "127.0.0.1:"} {
		errs := errorsOf(t, fmt.Sprintf("admin { address = %q }\ngroup \"a\" { port = 7000 }\n", addr))
		if len(errs) != 1 || !strings.HasPrefix(errs[0].Summary, "Invalid admin address") {
			t.Errorf("address %q: got %v, want one Invalid admin address error", addr, errs)
		}
	}
	for _, addr := range []string{"127.0.0.1:5040", "[::1]:5040", ":5040", "localhost:0", ""} {
		cfg := mustParse(t, fmt.Sprintf("admin { address = %q }\ngroup \"a\" { port = 7000 }\n", addr))
		if cfg.AdminAddress() != addr {
			t.Errorf("AdminAddress() = %q, want %q", cfg.AdminAddress(), addr)
		}
	}
}

// An IPv6 admin address's port is still checked for clashes (SplitHostPort,
// not the first colon, finds it).
func TestAdminIPv6PortClash(t *testing.T) {
	errs := errorsOf(t, "admin { address = \"[::1]:7001\" }\ngroup \"a\" {\n  port = 7000\n  count = 2\n}\n")
	if len(errs) != 1 || !strings.Contains(errs[0].Summary, "admin API (7001)") {
		t.Fatalf("got %v, want one clash with the admin API", errs)
	}
}

// Regression: stop_signal = "sigterm" was accepted but handed to drivers
// lower-case; it is now the canonical upper-case name.
func TestStopSignalLowercaseCanonicalized(t *testing.T) {
	cfg := mustParse(t, "group \"a\" {\n  port = 7000\n  stop_signal = \"sigint\"\n}\n")
	if got := cfg.Groups[0].StopSignal; got != "SIGINT" {
		t.Errorf("StopSignal = %q, want SIGINT", got)
	}
}

// Regression: a listeners or port value already reported as invalid also
// produced port clashes with every other block.
func TestInvalidListenersNoFalsePortClash(t *testing.T) {
	src := "group \"a\" { port = 7000 }\nbalancer \"b\" {\n  group = \"a\"\n  port = 5050\n  listeners = 100000\n}\nbalancer \"c\" {\n  group = \"a\"\n  port = 0\n}\n"
	for _, d := range errorsOf(t, src) {
		if strings.HasPrefix(d.Summary, "Port clash") {
			t.Errorf("false clash: %s", d.Summary)
		}
	}
}

// Regression: a health check that set only a short interval got the error for
// the default timeout at the whole health_check block; it now points at the
// interval the user wrote.
func TestDefaultTimeoutPointsAtInterval(t *testing.T) {
	errs := errorsOf(t, "group \"a\" {\n  port = 7000\n  health_check {\n    interval = \"500ms\"\n  }\n}\n")
	if len(errs) != 1 || errs[0].Subject.Start.Line != 4 || errs[0].Subject.Start.Column != 16 {
		t.Fatalf("got %v at %v, want one error at 4:16", errs, errs[0].Subject)
	}
}

// Regression: timeout equal to the interval was accepted although the field
// documents "must be below interval".
func TestHealthTimeoutEqualToIntervalRejected(t *testing.T) {
	errs := errorsOf(t, "group \"a\" {\n  port = 7000\n  health_check {\n    interval = \"2s\"\n    timeout = \"2s\"\n  }\n}\n")
	if len(errs) != 1 || !strings.Contains(errs[0].Summary, "not shorter") {
		t.Fatalf("got %v, want the timeout error", errs)
	}
}

// Regression: fall = 0 was reported at rise (or at the block when rise was
// not written).
func TestFallErrorPointsAtFall(t *testing.T) {
	errs := errorsOf(t, "group \"a\" {\n  port = 7000\n  health_check {\n    rise = 2\n    fall = 0\n  }\n}\n")
	if len(errs) != 1 || errs[0].Subject.Start.Line != 5 || !strings.HasPrefix(errs[0].Summary, "fall") {
		t.Fatalf("got %v at %v, want one fall error on line 5", errs, errs[0].Subject)
	}
}

// Regression: a group's worker port range could run past 65535 unnoticed
// (port = 65535 with three workers).
func TestWorkerPortsPastMaxPortRejected(t *testing.T) {
	errs := errorsOf(t, "group \"a\" {\n  port = 65534\n  scale {\n    min = 1\n    max = 3\n  }\n}\n")
	if len(errs) != 1 || !strings.Contains(errs[0].Summary, "past 65535") {
		t.Fatalf("got %v, want one past-65535 error", errs)
	}
	mustParse(t, "group \"a\" {\n  port = 65533\n  count = 3\n}\n")
}

// Regression: an app block beside config { command } was silently ignored.
func TestAppConflictsWithConfigCommand(t *testing.T) {
	errorsOf(t, "group \"a\" {\n  port = 7000\n  app { failure_rate = 0.5 }\n  config { image = \"x:1\" }\n}\n")
	// Without an app block, or with a config block that keeps the built-in
	// worker, there is no conflict.
	mustParse(t, "group \"a\" {\n  port = 7000\n  config { command = [\"./server\"] }\n}\n")
	mustParse(t, "group \"a\" {\n  port = 7000\n  app { failure_rate = 0.5 }\n  config { env = { A = \"b\" } }\n}\n")
}

// Regression: plugin and driver block names were not checked, so a pin like
// plugin "../x" was accepted.
func TestPluginAndDriverNamesValidated(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	errs := errorsOf(t, fmt.Sprintf("group \"a\" { port = 7000 }\nplugin \"../x\" { sha256 = %q }\ndriver \"a b\" {}\n", sha))
	if len(errs) != 2 {
		t.Fatalf("got %v, want two name errors", errs)
	}
}

func TestConfigHelpers(t *testing.T) {
	cfg := mustParse(t, `
driver "docker" { host = "unix:///x" }
group "a" {
  port = 7000
  driver = "docker"
  scale {
    min = 2
    max = 4
  }
}
group "b" {
  port = 7100
  count = 0
}
group "c" {
  port = 7200
  driver = "docker"
}
`)
	if g := cfg.Group("b"); g == nil || g.Port != 7100 {
		t.Errorf("Group(b) = %v", g)
	}
	if cfg.Group("zz") != nil {
		t.Error("Group(zz) found a group")
	}
	if cfg.DriverBlock("docker") == nil || cfg.DriverBlock("process") != nil {
		t.Error("DriverBlock finds the wrong blocks")
	}
	if got := cfg.DriversUsed(); !slices.Equal(got, []string{"docker", "process"}) {
		t.Errorf("DriversUsed = %v, want [docker process]", got)
	}
	for _, c := range []struct {
		name          string
		initial, most int
	}{{"a", 2, 4}, {"b", 0, 0}, {"c", 1, 1}} {
		g := cfg.Group(c.name)
		if g.InitialCount() != c.initial || g.MaxCount() != c.most {
			t.Errorf("group %s: InitialCount %d MaxCount %d, want %d %d", c.name, g.InitialCount(), g.MaxCount(), c.initial, c.most)
		}
	}
}

// blockAttrs lists the attribute names written in a body decoded later
// against a driver schema.
func blockAttrs(body hcl.Body) []string {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	var out []string
	for name := range sb.Attributes {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// renderConfig is a stable JSON rendering of what Parse decoded, with
// defaults applied: the fields the rest of golb reads, not the hcl.Body ones.
func renderConfig(t *testing.T, c *Config) string {
	t.Helper()
	type named struct {
		Name       string   `json:"name"`
		Attributes []string `json:"attributes"`
	}
	type plugin struct {
		Name   string `json:"name"`
		SHA256 string `json:"sha256"`
	}
	type group struct {
		Name         string   `json:"name"`
		Driver       string   `json:"driver"`
		Count        *int     `json:"count"`
		InitialCount int      `json:"initial_count"`
		MaxCount     int      `json:"max_count"`
		Port         int      `json:"port"`
		StopSignal   string   `json:"stop_signal"`
		StopTimeout  string   `json:"stop_timeout"`
		AvgDelay     string   `json:"app_avg_delay"`
		FailureRate  float64  `json:"app_failure_rate"`
		Config       []string `json:"config_attributes"`
		Scale        any      `json:"scale"`
		HealthPath   string   `json:"health_path"`
		HealthIntvl  string   `json:"health_interval"`
		HealthTmo    string   `json:"health_timeout"`
		Rise         int      `json:"health_rise"`
		Fall         int      `json:"health_fall"`
	}
	type balancer struct {
		Name         string   `json:"name"`
		Group        string   `json:"group"`
		Port         int      `json:"port"`
		Listeners    int      `json:"listeners"`
		Policy       string   `json:"policy"`
		Retries      int      `json:"retries"`
		RetryOn      []string `json:"retry_on"`
		DrainTimeout string   `json:"drain_timeout"`
		RespTimeout  string   `json:"response_timeout"`
		MaxHeader    int      `json:"max_header_bytes"`
		HeaderRead   string   `json:"header_read_timeout"`
		Idle         string   `json:"idle_timeout"`
		BodyRead     string   `json:"body_read_timeout"`
		BodyMinRate  int      `json:"body_min_rate"`
		TunnelIdle   string   `json:"tunnel_idle_timeout"`
	}
	out := struct {
		Filename      string     `json:"filename"`
		DataDir       string     `json:"data_dir"`
		PluginDir     string     `json:"plugin_dir"`
		AdminAddress  string     `json:"admin_address"`
		Drivers       []named    `json:"drivers"`
		Plugins       []plugin   `json:"plugins"`
		DriversUsed   []string   `json:"drivers_used"`
		Groups        []group    `json:"groups"`
		Balancers     []balancer `json:"balancers"`
		StatsSink     string     `json:"stats_sink"`
		StatsPath     string     `json:"stats_path"`
		StatsInterval string     `json:"stats_flush_interval"`
	}{
		Filename:      c.Filename,
		DataDir:       c.DataDir,
		PluginDir:     c.PluginDir,
		AdminAddress:  c.AdminAddress(),
		DriversUsed:   c.DriversUsed(),
		StatsSink:     c.Stats.Sink,
		StatsPath:     c.Stats.Path,
		StatsInterval: c.Stats.FlushIntervalDur.String(),
	}
	for _, d := range c.Drivers {
		out.Drivers = append(out.Drivers, named{d.Name, blockAttrs(d.Body)})
	}
	for _, p := range c.Plugins {
		out.Plugins = append(out.Plugins, plugin{p.Name, p.SHA256})
	}
	for _, g := range c.Groups {
		r := group{
			Name: g.Name, Driver: g.Driver, Count: g.Count,
			InitialCount: g.InitialCount(), MaxCount: g.MaxCount(), Port: g.Port,
			StopSignal: g.StopSignal, StopTimeout: g.StopTimeoutDur.String(),
			AvgDelay: g.App.AvgDelayDur.String(), FailureRate: *g.App.FailureRate,
			HealthPath: g.HealthCheck.Path, HealthIntvl: g.HealthCheck.IntervalDur.String(),
			HealthTmo: g.HealthCheck.TimeoutDur.String(), Rise: *g.HealthCheck.Rise, Fall: *g.HealthCheck.Fall,
		}
		if g.Config != nil {
			r.Config = blockAttrs(g.Config.Body)
		}
		if s := g.Scale; s != nil {
			r.Scale = scaleGolden(s)
		}
		out.Groups = append(out.Groups, r)
	}
	for _, b := range c.Balancers {
		out.Balancers = append(out.Balancers, balancer{b.Name, b.Group, b.Port, *b.Listeners, b.Policy, *b.Retries, b.RetryOn,
			b.DrainTimeoutDur.String(), b.ResponseTimeoutDur.String(), *b.MaxHeaderBytes, b.HeaderReadTimeoutDur.String(),
			b.IdleTimeoutDur.String(), b.BodyReadTimeoutDur.String(), *b.BodyMinRate, b.TunnelIdleTimeoutDur.String()})
	}
	js, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(js) + "\n"
}

// Regression: a function call was reported twice, the second time as the
// puzzling "Unsuitable value type: value must be known".
func TestFunctionCallReportedOnce(t *testing.T) {
	errs := errorsOf(t, "group \"a\" {\n  port = 7000\n  stop_signal = \"SIG${upper(\"term\")}\"\n}\n")
	if len(errs) != 1 || errs[0].Summary != "Function calls not allowed" {
		t.Fatalf("got %v, want one Function calls not allowed", errs)
	}
}

func TestBalancerBindAddress(t *testing.T) {
	cfg, _, diags := Parse("b.hcl", []byte("group \"a\" {\n  port = 7000\n}\nbalancer \"w\" {\n  group = \"a\"\n  port  = 7100\n}\n"))
	if diags.HasErrors() || cfg.Balancers[0].Bind != "127.0.0.1" {
		t.Fatalf("default bind: %v %v", cfg, diags)
	}
	_, _, diags = Parse("b.hcl", []byte("group \"a\" {\n  port = 7000\n}\nbalancer \"w\" {\n  group = \"a\"\n  bind  = \"everywhere\"\n  port  = 7100\n}\n"))
	if !diags.HasErrors() || diags[0].Subject.Start.Line != 6 {
		t.Fatalf("bad bind: %v", diags)
	}
}

// Regression: config kept a list of policies beside the balancer's own, so
// a policy added to balancer/ stayed refused by the config until someone
// edited both. The config asks balancer.Policies.
func TestPoliciesAreTheBalancers(t *testing.T) {
	src := "group \"a\" { port = 7000 }\nbalancer \"b\" {\n  group  = \"a\"\n  port   = 5050\n  policy = %q\n}\n"
	for _, p := range balancer.Policies() {
		if cfg := mustParse(t, fmt.Sprintf(src, p)); cfg.Balancers[0].Policy != p {
			t.Errorf("policy %q decoded as %q", p, cfg.Balancers[0].Policy)
		}
	}
	errs := errorsOf(t, fmt.Sprintf(src, "fastest"))
	if want := "Use one of " + strings.Join(balancer.Policies(), ", ") + "."; len(errs) != 1 || errs[0].Detail != want {
		t.Errorf("got %v, want one error with the hint %q", errs, want)
	}
}

// Regression: the config, the process driver and the docker driver each
// kept a list of stop signals. The config reads the drivers' one: it accepts
// what they accept ("SIGINT", "sigint", "INT") and hands them the canonical
// name.
func TestStopSignalsAreTheDrivers(t *testing.T) {
	src := "group \"a\" {\n  port = 7000\n  stop_signal = %q\n}\n"
	for _, name := range drivers.StopSignals() {
		for _, written := range []string{name, strings.ToLower(name), strings.TrimPrefix(name, "SIG")} {
			if got := mustParse(t, fmt.Sprintf(src, written)).Groups[0].StopSignal; got != name {
				t.Errorf("stop_signal %q became %q, want %q", written, got, name)
			}
		}
	}
	errs := errorsOf(t, fmt.Sprintf(src, "SIGSTOP"))
	if want := "Use one of " + strings.Join(drivers.StopSignals(), ", ") + "."; len(errs) != 1 || errs[0].Detail != want {
		t.Errorf("got %v, want one error with the hint %q", errs, want)
	}
}

// Regression: every pair of overlapping port claims was an error, so 5,000
// groups on one port (a 160 KB file) made 12.5 million diagnostics: golb
// validate printed 745 MB in 66 s and died at 4.4 GB. Each claim that
// overlaps earlier ones is now reported once.
func TestManyGroupsOnOnePortClashOnceEach(t *testing.T) {
	var b strings.Builder
	const n = 5000
	for i := range n {
		fmt.Fprintf(&b, "group \"g%d\" {\n  port = 7000\n}\n", i)
	}
	errs := errorsOf(t, b.String())
	if len(errs) != n-1 {
		t.Fatalf("%d errors, want %d (one per group after the first)", len(errs), n-1)
	}
	for _, d := range errs {
		if !strings.HasPrefix(d.Summary, "Port clash between group") || !strings.HasSuffix(d.Summary, `and group "g0" workers (7000-7000)`) {
			t.Fatalf("got %q, want a clash with g0", d.Summary)
		}
	}
}

// Regression: health_check { path = "/%zz" } (or a path with a space or
// "\r\nHost: evil") passed validate, and then the probe could build no
// request, so no worker ever became healthy. Parse and the balancer's own
// Config.Validate refuse it.
func TestHealthPathThatIsNoURLNeverHealthy(t *testing.T) {
	for _, p := range []string{`/%zz`, `/ x\r\nHost: evil`, `/a b`, `/a\tb`, `/a\u007f`, `/a#frag`, `/%`, `healthz`} {
		src := "group \"a\" {\n  port = 7000\n  health_check { path = \"" + p + "\" }\n}\n"
		diags := errorsOf(t, src)
		if d := diags[0]; !strings.HasPrefix(d.Summary, "Health check path") || d.Subject.Start.Line != 3 {
			t.Errorf("path %s: got %q at %v, want the health check path refused at line 3", p, d.Summary, d.Subject)
		}
	}
	for _, p := range []string{"/%zz", "/ x\r\nHost: evil", "/a b", "/a#frag", "/%"} {
		if err := (balancer.Config{Name: "b", Health: balancer.HealthCheck{Path: p}}).Validate(); !errors.Is(err, balancer.ErrInvalidHealthCheck) {
			t.Errorf("balancer.Config.Validate(path %q) = %v, want ErrInvalidHealthCheck", p, err)
		}
	}
	for _, p := range []string{"/healthz", "/a%20b", "/h?x=1&y=%2F", "/~user/ready"} {
		mustParse(t, "group \"a\" {\n  port = 7000\n  health_check { path = \""+p+"\" }\n}\n")
		if err := (balancer.Config{Name: "b", Health: balancer.HealthCheck{Path: p}}).Validate(); err != nil {
			t.Errorf("balancer.Config.Validate(path %q) = %v", p, err)
		}
	}
}

// Regression: app { avg_delay = "2h" } validated, and then every worker
// exited `GOLB_AVG_DELAY "2h0m0s": must be between 0s and 1h`: the group
// crash-looped. Parse holds avg_delay to workerapp.MaxAvgDelay.
func TestAvgDelayOverTheWorkersMaxCrashLoops(t *testing.T) {
	d := errorsOf(t, "group \"a\" {\n  port = 7000\n  app { avg_delay = \"1h0m1s\" }\n}\n")[0]
	if d.Summary != "avg_delay must be at most 1h" || d.Subject.Start.Line != 3 {
		t.Errorf("got %q at %v, want avg_delay refused at line 3", d.Summary, d.Subject)
	}
	mustParse(t, "group \"a\" {\n  port = 7000\n  app { avg_delay = \""+workerapp.MaxAvgDelay.String()+"\" }\n}\n")
}

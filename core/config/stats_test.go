package config

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

func parseStats(t *testing.T, block string) (*Config, hcl.Diagnostics) {
	t.Helper()
	cfg, _, diags := Parse("stats.hcl", []byte(statsPrefix+"stats {\n"+block+"\n}\n"))
	return cfg, diags
}

// statsPrefix is the group every test file needs; line numbers below count
// from the stats block (its line 1).
const statsPrefix = "group \"g\" {\n  port = 6000\n}\n"

// wantDiag fails t unless diags has exactly one error, containing summary and
// pointing at line.
func wantDiag(t *testing.T, diags hcl.Diagnostics, summary string, line int) {
	t.Helper()
	if len(diags) != 1 || !strings.Contains(diags[0].Summary, summary) || diags[0].Subject == nil || diags[0].Subject.Start.Line != line+strings.Count(statsPrefix, "\n") {
		t.Fatalf("diagnostics %v, want one %q at line %d", diags, summary, line)
	}
	for _, d := range diags {
		if strings.Contains(d.Summary+d.Detail, "s3cret") {
			t.Errorf("a diagnostic prints the password: %s: %s", d.Summary, d.Detail)
		}
	}
}

// TestStatsSinkNameListsKnownSinks: a sink nobody registered is an error at
// sink listing postgres and sqlite.
func TestStatsSinkNameListsKnownSinks(t *testing.T) {
	_, diags := parseStats(t, `sink = "mysql"`)
	wantDiag(t, diags, `Unknown stats sink "mysql"`, 2)
	if !strings.Contains(diags[0].Detail, "postgres, sqlite") {
		t.Errorf("hint %q does not list the sinks", diags[0].Detail)
	}
}

// TestStatsDSNFromFileOrEnvironment: the postgres sink takes dsn, or
// $GOLB_STATS_DSN when the file has none; both set and different, neither
// set, an empty dsn and a dsn that does not parse are errors, and the
// sink-specific attributes are refused on the other sink. A diagnostic about
// a written dsn points at the sink line, not the dsn line, which golb
// validate would print with the password in it.
func TestStatsDSNFromFileOrEnvironment(t *testing.T) {
	const dsn = "postgres://golb:s3cret@db.example/golbstats"
	t.Setenv(StatsDSNEnv, "")
	cfg, diags := parseStats(t, "sink = \"postgres\"\ndsn = \""+dsn+"\"")
	if diags.HasErrors() || cfg.Stats.DSN != dsn || cfg.Stats.DSNFromEnv {
		t.Fatalf("dsn in the file: %v %+v", diags, cfg.Stats)
	}
	if s := cfg.StatsSettings(); s.Sink != "postgres" || s.DSN != dsn || s.Instance == "" || s.Path != "" {
		t.Fatalf("StatsSettings = %+v", s)
	}

	_, diags = parseStats(t, `sink = "postgres"`)
	wantDiag(t, diags, "has no dsn", 1)

	t.Setenv(StatsDSNEnv, dsn)
	cfg, diags = parseStats(t, `sink = "postgres"`)
	if diags.HasErrors() || cfg.Stats.DSN != dsn || !cfg.Stats.DSNFromEnv {
		t.Fatalf("dsn from the environment: %v %+v", diags, cfg.Stats)
	}
	_, diags = parseStats(t, "sink = \"postgres\"\ndsn = \""+dsn+"\"")
	if diags.HasErrors() {
		t.Fatalf("the same dsn in both places: %v", diags)
	}
	_, diags = parseStats(t, "sink = \"postgres\"\ndsn = \"postgres://other@db/x\"")
	wantDiag(t, diags, "differ", 2)

	t.Setenv(StatsDSNEnv, "")
	_, diags = parseStats(t, "sink = \"postgres\"\ndsn = \"\"")
	wantDiag(t, diags, "stats.dsn is empty", 3)
	_, diags = parseStats(t, "sink = \"postgres\"\ndsn = \"postgres://golb:s3cret@db:port/x\"")
	wantDiag(t, diags, "Invalid stats dsn", 2)
	_, diags = parseStats(t, "sink = \"postgres\"\ndsn = \""+dsn+"\"\npath = \"x.db\"")
	wantDiag(t, diags, "stats.path is for the sqlite sink only", 4)
	_, diags = parseStats(t, "dsn = \""+dsn+"\"")
	wantDiag(t, diags, "stats.dsn is for the postgres sink only", 1)
	_, diags = parseStats(t, "sink = \"sqlite\"\ninstance = \"a\"")
	wantDiag(t, diags, "stats.instance is for the postgres sink only", 2)
	_, diags = parseStats(t, "sink = \"postgres\"\ndsn = \""+dsn+"\"\ninstance = \"a\\u0007b\"")
	wantDiag(t, diags, "Invalid stats.instance", 4)
}

// TestStatsInstanceDefault: with no instance, an agent's rows are named by the
// host name and the absolute data_dir; an explicit one is kept.
func TestStatsInstanceDefault(t *testing.T) {
	t.Setenv(StatsDSNEnv, "postgres://golb@db/x")
	cfg, diags := parseStats(t, `sink = "postgres"`)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if got := cfg.StatsInstance(); !strings.HasSuffix(got, ":/") && !strings.Contains(got, ":/") || !strings.HasSuffix(got, ".golb") {
		t.Errorf("default instance %q, want HOST:/abs/path/.golb", got)
	}
	cfg, diags = parseStats(t, "sink = \"postgres\"\ninstance = \"web-1\"")
	if diags.HasErrors() || cfg.StatsInstance() != "web-1" {
		t.Fatalf("explicit instance: %v %q", diags, cfg.StatsInstance())
	}
}

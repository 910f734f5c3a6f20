package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/golb/golb/core/stats"
)

// StatsDSNEnv is the environment variable that gives the postgres sink its DSN
// when the stats block has no dsn attribute.
const StatsDSNEnv = "GOLB_STATS_DSN"

// checkStats checks the stats block: a known sink, and the attributes of that
// sink only. For postgres it settles the DSN (the attribute or $GOLB_STATS_DSN)
// and checks its syntax; connecting is for golb validate and run (core).
func (v *validator) checkStats() {
	s := v.cfg.Stats
	known := stats.Sinks()
	if !slices.Contains(known, s.Sink) {
		v.errorf(attrRange(s.Body, "sink"), "Unknown stats sink %q", "Use one of: "+strings.Join(known, ", ")+".", s.Sink)
		return
	}
	if s.Sink != "postgres" {
		for _, attr := range []string{"dsn", "instance"} {
			if hasAttr(s.Body, attr) {
				v.errorf(SecretSafeRange(s), "stats.%s is for the postgres sink only", `Remove it, or set sink = "postgres".`, attr)
			}
		}
		return
	}
	if hasAttr(s.Body, "path") {
		v.errorf(attrRange(s.Body, "path"), "stats.path is for the sqlite sink only", "Remove it: the postgres sink takes dsn (or $"+StatsDSNEnv+").")
	}
	env, envSet := os.LookupEnv(StatsDSNEnv)
	switch {
	case hasAttr(s.Body, "dsn") && strings.TrimSpace(s.DSN) == "":
		v.errorf(attrRange(s.Body, "dsn"), "stats.dsn is empty", `Give a libpq URL such as "postgres://golb@db/golbstats", or remove dsn and set $`+StatsDSNEnv+".")
		return
	case hasAttr(s.Body, "dsn") && envSet && env != "" && env != s.DSN:
		v.errorf(SecretSafeRange(s), "stats.dsn and $"+StatsDSNEnv+" differ", "Keep one: remove dsn from the file (so that the password need not live in it), or unset "+StatsDSNEnv+".")
		return
	case !hasAttr(s.Body, "dsn"):
		if strings.TrimSpace(env) == "" {
			v.errorf(s.Body.MissingItemRange(), "The postgres stats sink has no dsn", `Set dsn = "postgres://USER@HOST/DB" in the stats block, or export `+StatsDSNEnv+".")
			return
		}
		s.DSN, s.DSNFromEnv = env, true
	}
	if err := stats.ParseDSN(s.DSN); err != nil {
		v.errorf(SecretSafeRange(s), "Invalid stats dsn", oneLineHint(err.Error()))
	}
	if hasAttr(s.Body, "instance") {
		if err := stats.CheckInstance(s.Instance); err != nil {
			v.errorf(attrRange(s.Body, "instance"), "Invalid stats.instance", oneLineHint(err.Error()))
		}
	}
}

// SecretSafeRange is where a diagnostic about the DSN points: the sink
// attribute (or the stats block's opening), never the dsn line, whose source
// golb validate would print with the password in it.
func SecretSafeRange(s *Stats) hcl.Range {
	return attrRange(s.Body, "sink")
}

// oneLineHint folds an error onto one line of at most 300 bytes.
func oneLineHint(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// StatsInstance is the name of this agent's rows in a shared stats database:
// stats.instance, else the host name and the absolute data_dir
// ("web-1:/srv/golb/.golb"), which no two agents can share, since golb locks
// its data_dir.
func (c *Config) StatsInstance() string {
	if c.Stats != nil && c.Stats.Instance != "" {
		return c.Stats.Instance
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	dir, err := filepath.Abs(c.DataDir)
	if err != nil {
		dir = c.DataDir
	}
	name := host + ":" + dir
	if len(name) > stats.MaxInstance {
		name = name[len(name)-stats.MaxInstance:]
	}
	return name
}

// StatsSettings are the settings core/stats opens the sink with.
func (c *Config) StatsSettings() stats.Settings {
	s := stats.Settings{Sink: c.Stats.Sink}
	if c.Stats.Sink == "postgres" {
		s.DSN, s.Instance = c.Stats.DSN, c.StatsInstance()
	} else {
		s.Path = c.Stats.Path
	}
	return s
}

package config

import (
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Update is how a group whose worker shape changed (app settings, driver
// config, port, driver) rolls over, on a reload or on a restart with a
// changed file: replacements are started at most MaxParallel at a time, and
// an old worker is stopped only once a replacement is healthy. The name and
// meaning are those of Nomad's update block.
type Update struct {
	// MaxParallel is how many replacements may be starting at once; the
	// group's healthy count never drops below count − max_parallel.
	// Default 1; 1 to 1000.
	MaxParallel *int `hcl:"max_parallel,optional"`
	// HealthyDeadline is how long a replacement may take to become healthy
	// in every balancer of its group; past it (or when a replacement exits
	// or fails to start) the rollout stops and the old workers keep
	// serving until the next reload. Default "60s"; at least 1s.
	HealthyDeadline string   `hcl:"healthy_deadline,optional"`
	Body            hcl.Body `hcl:",body"`

	HealthyDeadlineDur time.Duration
}

// updateDefaults fills a group's update block, adding one when absent.
func updateDefaults(g *Group) {
	if g.Update == nil {
		g.Update = &Update{Body: hcl.EmptyBody()}
	}
	if g.Update.MaxParallel == nil {
		g.Update.MaxParallel = intPtr(1)
	}
	if g.Update.HealthyDeadline == "" {
		g.Update.HealthyDeadline = "60s"
	}
}

// checkUpdate reports an update block's invalid values as diagnostics.
func (v *validator) checkUpdate(g *Group) {
	u := g.Update
	if n := *u.MaxParallel; n < 1 || n > 1000 {
		v.errorf(attrRange(u.Body, "max_parallel"), "update.max_parallel must be between 1 and 1000", "It is how many replacements start at once; 1 replaces one worker at a time.")
	}
	u.HealthyDeadlineDur = v.duration(u.Body, "healthy_deadline", u.HealthyDeadline, time.Second)
}

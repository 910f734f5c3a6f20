package core

import (
	"slices"

	"github.com/golb/golb/balancer"
	"github.com/golb/golb/core/config"
)

// The fleet is what a reload swaps while everything runs: the config, the
// groups' resolved worker templates and the balancers. A reload builds new
// maps and slices and swaps them under fleetMu; nothing of them is changed in
// place. Code that runs after Run started reads them through these methods.

// config returns the config in effect.
func (a *Agent) config() *config.Config {
	a.fleetMu.RLock()
	defer a.fleetMu.RUnlock()
	return a.cfg
}

// spec returns group's worker template, or nil for a group the config no
// longer has (and whose workers are gone).
func (a *Agent) spec(group string) *groupSpec {
	a.fleetMu.RLock()
	defer a.fleetMu.RUnlock()
	return a.groups[group]
}

// balancersOf returns the balancers serving group.
func (a *Agent) balancersOf(group string) []*balancer.Balancer {
	a.fleetMu.RLock()
	defer a.fleetMu.RUnlock()
	return a.byGroup[group]
}

// allBalancers returns every balancer in effect.
func (a *Agent) allBalancers() []*balancer.Balancer {
	a.fleetMu.RLock()
	defer a.fleetMu.RUnlock()
	return a.balancers
}

// groupOfBalancer returns the group b serves, false once b was removed.
func (a *Agent) groupOfBalancer(b *balancer.Balancer) (string, bool) {
	a.fleetMu.RLock()
	defer a.fleetMu.RUnlock()
	for g, bs := range a.byGroup {
		if slices.Contains(bs, b) {
			return g, true
		}
	}
	return "", false
}

// fleetChanged is closed at the next swap of the fleet.
func (a *Agent) fleetChanged() <-chan struct{} {
	a.fleetMu.RLock()
	defer a.fleetMu.RUnlock()
	return a.fleetGen
}

// swapFleet puts a new fleet in effect and wakes the balancer feeds.
func (a *Agent) swapFleet(cfg *config.Config, groups map[string]*groupSpec, bs []*balancer.Balancer, byGroup map[string][]*balancer.Balancer) {
	a.fleetMu.Lock()
	defer a.fleetMu.Unlock()
	a.cfg, a.groups, a.balancers, a.byGroup = cfg, groups, bs, byGroup
	close(a.fleetGen)
	a.fleetGen = make(chan struct{})
}

// fleetBalancers returns every balancer and the balancers by group, from
// one fleet.
func (a *Agent) fleetBalancers() ([]*balancer.Balancer, map[string][]*balancer.Balancer) {
	a.fleetMu.RLock()
	defer a.fleetMu.RUnlock()
	return a.balancers, a.byGroup
}

package core

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/golb/golb/balancer"
	"github.com/golb/golb/core/admin"
	"github.com/golb/golb/core/state"
)

// dashViews is the agent as the dashboard (core/admin) sees it.
type dashViews struct{ a *Agent }

// State reads the groups, workers and drivers from the store (watching
// them in ws), the balancers' health and counters, and the stats' totals.
func (v dashViews) State(ws memdb.WatchSet) admin.State {
	a := v.a
	gs, _ := a.store.Groups(ws)
	ws2, _ := a.store.Workers(ws)
	ds, _ := a.store.Drivers(ws)
	st := admin.State{
		Groups:    make([]admin.Group, 0, len(gs)),
		Workers:   make([]admin.Worker, 0, len(ws2)),
		Drivers:   make([]admin.Driver, 0, len(ds)),
		Balancers: make([]admin.Balancer, 0, len(a.allBalancers())),
	}
	for _, g := range gs {
		st.Groups = append(st.Groups, admin.Group{Name: g.Name, Driver: g.Driver, Desired: g.Desired, Min: g.Min, Max: g.Max, Failing: g.Failing, Reason: g.Reason, Scale: a.scaleView(g.Name)})
	}
	hs, ts := a.health(), a.totals()
	for _, w := range ws2 {
		row := admin.Worker{ID: w.ID, Group: w.Group, Driver: w.Driver, Address: w.Address, Status: string(w.Status), StartedAt: w.StartedAt, Reason: w.Reason}
		row.PID, _ = strconv.Atoi(w.Details["pid"])
		if h := hs[w.ID]; h != nil {
			row.Healthy, row.InFlight = h.healthy, h.inflight
			if !h.healthy {
				row.HealthError = h.healthErr
			}
		} else if len(a.balancersOf(w.Group)) == 0 {
			row.Healthy = w.Status == state.StatusRunning
		}
		for _, b := range a.balancersOf(w.Group) {
			row.Ejected = row.Ejected || b.Ejected(w.ID)
		}
		t := ts[w.ID]
		row.Requests, row.Failed, row.MeanLatencyMS = t.Total(), t.Failed, meanMS(t)
		if w.Exit != nil {
			row.Exit, row.LastWords = w.Exit.String(), lastLine(w.Exit.Output)
		}
		st.Workers = append(st.Workers, row)
	}
	for _, d := range ds {
		st.Drivers = append(st.Drivers, admin.Driver{Name: d.Name, Version: d.Info.Version, Reachable: d.Fingerprint.Healthy, Detail: oneLine(d.Fingerprint.Detail, maxDetail), Running: d.Running, PID: d.PluginPID, Restarts: d.Restarts, Error: d.Error})
	}
	groupOf := map[*balancer.Balancer]string{}
	all, byGroup := a.fleetBalancers()
	for g, bs := range byGroup {
		for _, b := range bs {
			groupOf[b] = g
		}
	}
	for _, b := range all {
		st.Balancers = append(st.Balancers, balancerView(b, groupOf[b]))
	}
	return st
}

// balancerView is b's counters as the dashboard reads them.
func balancerView(b *balancer.Balancer, group string) admin.Balancer {
	t := b.Totals()
	v := admin.Balancer{Name: b.Name(), Group: group, Addrs: b.Addrs(), Classes: map[string]uint64{}, Bounds: balancer.LatencyBounds[:], Buckets: t.Buckets[:], InFlight: t.InFlight, Held: t.Held, Retries: t.Retries, Unavailable: t.Unavailable}
	for i, n := range t.Classes {
		v.Classes[balancer.ClassNames[i]] = n
	}
	return v
}

// scaleView is what the dashboard shows of group's autoscaler (nil without
// a scale block): its mode, its figures against the target, and its last
// decision that changed the count.
func (a *Agent) scaleView(group string) *admin.Scale {
	v := a.autoscalerView(group)
	if v == nil {
		return nil
	}
	s := &admin.Scale{Mode: string(v.Mode), Rule: fmt.Sprintf("target %s %g · in flight %g (stable), %g (panic) · %g rps · wants %d: %s", v.Metric, v.Target, v.StableInflight, v.PanicInflight, v.StableRPS, v.Wants, v.Why)}
	if d := v.LastDecision; d != nil {
		s.Last = &admin.Decision{Time: d.Time, From: d.From, To: d.To, Direction: string(d.Direction), Mode: string(d.Mode), Reason: d.Reason}
	}
	return s
}

// Drain takes a running worker out of its balancers, waits for its
// in-flight requests and stops it; the reconciler starts its replacement.
func (v dashViews) Drain(id string) error {
	a := v.a
	w, _ := a.store.Worker(nil, id)
	switch {
	case w == nil:
		return fmt.Errorf("draining %s: %w", id, admin.ErrNoWorker)
	case w.Status != state.StatusRunning:
		return fmt.Errorf("draining %s (%s): %w", id, w.Status, admin.ErrNotRunning)
	case a.trafficCtx == nil: // an agent that Run has not started (the admin API starts after Run set it)
		return fmt.Errorf("draining %s: golb is still starting", id)
	}
	// Counted for shutdown at once, or refused once shutdown began (it
	// stops every worker itself): never started behind Run's last wait.
	if !a.wg.tryAdd() {
		return fmt.Errorf("draining %s: golb is shutting down and stops every worker: %w", id, admin.ErrNotRunning)
	}
	// Running to draining in one transaction: the reconciler, or another
	// drain, may have begun stopping it since it was read.
	moved := false
	ok, err := a.store.UpdateWorker(id, func(w *state.Worker) {
		if w.Status == state.StatusRunning {
			w.Status, moved = state.StatusDraining, true
		}
	})
	if err != nil || !ok || !moved {
		a.wg.Done()
		switch {
		case err != nil:
			return fmt.Errorf("draining %s: %w", id, err)
		case !ok:
			return fmt.Errorf("draining %s: %w", id, admin.ErrNoWorker)
		}
		return fmt.Errorf("draining %s: being stopped already: %w", id, admin.ErrNotRunning)
	}
	a.logger.Info("draining worker on request", "worker", id, "group", w.Group)
	ctx := a.trafficCtx
	go func() {
		defer a.wg.Done()
		_ = a.stopWorker(ctx, id, true)
	}()
	return nil
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	s = strings.TrimRight(s, "\r\n\t ")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}

// dashboard returns the agent's dashboard server.
func (a *Agent) dashboard() *admin.Server {
	return admin.New(dashViews{a}, admin.Options{Logger: a.logger.With("component", "dashboard"), GoneFor: time.Minute})
}

var _ admin.Views = dashViews{}

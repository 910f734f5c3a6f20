package core

import (
	"context"
	"errors"
	"time"

	"github.com/golb/golb/core/admin"
	"github.com/golb/golb/core/state"
)

// The JSON admin API's views are core/admin's; these are the names the golb
// command and the tests use.
type (
	GroupView       = admin.GroupView
	AutoscalerView  = admin.AutoscalerView
	WorkerView      = admin.WorkerView
	DriverView      = admin.DriverView
	StatsStoreView  = admin.StatsStoreView
	StatsWorkerView = admin.StatsWorkerView
)

// apiViews is the agent as the JSON admin API (core/admin) sees it. The
// views are computed in admin.go and admin_autoscale.go; the actions are
// the agent's own (Scale, Reload).
type apiViews struct{ a *Agent }

func (v apiViews) Groups() []GroupView             { return v.a.GroupViews() }
func (v apiViews) Workers() []WorkerView           { return v.a.WorkerViews() }
func (v apiViews) Drivers() []DriverView           { return v.a.DriverViews() }
func (v apiViews) StatsWorkers() []StatsWorkerView { return v.a.StatsWorkers() }
func (v apiViews) StatsStore() StatsStoreView      { return v.a.StatsStore() }
func (v apiViews) StatsSeed() ([]byte, error)      { return v.a.agg.SeedJSON() }
func (v apiViews) ReloadStatus() any               { return v.a.ReloadStatus() }

// GroupEvents is the agent's part of GET /v1/groups/NAME/events
// (admin_autoscale.go); core/admin adds the lifecycle events.
func (v apiViews) GroupEvents(group string) ([]admin.GroupEvent, error) {
	return v.a.groupEvents(group)
}

// Scale scales group by hand (Agent.Scale) and returns the floor it sets.
func (v apiViews) Scale(group string, n int) (time.Time, error) {
	err := v.a.Scale(group, n)
	switch {
	case errors.Is(err, state.ErrNoGroup):
		return time.Time{}, asAdmin(err, admin.ErrNoGroup)
	case errors.Is(err, ErrScaleBounds):
		return time.Time{}, asAdmin(err, admin.ErrOutOfBounds)
	case err != nil:
		return time.Time{}, err
	}
	return v.a.FloorUntil(group), nil
}

// Reload reloads (Agent.Reload) and answers with the event and, for a
// reload that changed nothing, the error and the diagnostics as `golb
// validate` prints them.
func (v apiViews) Reload(ctx context.Context) (any, error) {
	ev, err := v.a.Reload(ctx)
	ans := reloadAnswer{ReloadEvent: ev}
	if err == nil {
		return ans, nil
	}
	ans.Error = err.Error()
	if re, ok := errorsAsReload(err); ok {
		ans.Refused = re.Refused
		ans.Diags = diagsJSON(re)
	}
	if errors.Is(err, ErrNotRunning) {
		err = asAdmin(err, admin.ErrUnavailable)
	}
	return ans, err
}

// adminError is err as core/admin tells its status code: errors.Is matches
// it to kind, one of admin's sentinels, and its message is err's alone.
type adminError struct{ err, kind error }

func (e adminError) Error() string   { return e.err.Error() }
func (e adminError) Unwrap() []error { return []error{e.err, e.kind} }

// asAdmin is err, also matching kind.
func asAdmin(err, kind error) error { return adminError{err, kind} }

var _ admin.APIViews = apiViews{}

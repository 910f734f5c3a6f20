package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// APIViews is what the JSON admin API needs of the agent: its views, and
// the actions that scripts and the golb command take. Errors wrap the
// sentinels of errors.go when they are the caller's; their messages are the
// answers' "error".
type APIViews interface {
	// Groups, Workers and Drivers are GET /v1/groups, /v1/workers and
	// /v1/drivers.
	Groups() []GroupView
	Workers() []WorkerView
	Drivers() []DriverView
	// StatsWorkers is GET /v1/stats/workers, StatsStore GET /v1/stats/store.
	StatsWorkers() []StatsWorkerView
	StatsStore() StatsStoreView
	// StatsSeed is GET /v1/stats: every worker's totals, as JSON in the
	// shape of the seed's /worker/stats.
	StatsSeed() ([]byte, error)
	// GroupEvents is the agent's part of GET /v1/groups/NAME/events (the
	// group's scale decisions and stopped rollovers), newest first; the
	// API merges the group's lifecycle events into it (group_events.go).
	// Its error wraps ErrNoGroup for an unknown group.
	GroupEvents(group string) ([]GroupEvent, error)
	// Scale sets group's desired count. It returns when the floor it sets
	// for the autoscaler ends, zero for a group that does not autoscale;
	// its error wraps ErrNoGroup or ErrOutOfBounds when they are the
	// caller's.
	Scale(group string, n int) (floorUntil time.Time, err error)
	// Reload applies the config file as it is now and returns the answer
	// of POST /v1/reload. Its error is nil when the reload applied or had
	// nothing to do; it wraps ErrUnavailable while golb starts or stops,
	// and otherwise is why nothing changed (the answer says it too).
	Reload(ctx context.Context) (answer any, err error)
	// ReloadStatus is GET /v1/reload: the last reload and the reload events.
	ReloadStatus() any
}

// API is the JSON admin API and /metrics. Its handlers are added to a mux
// with Register.
type API struct {
	views   APIViews
	metrics http.Handler // nil: no /metrics
	// lifecycle is where GET /v1/groups/NAME/events reads the lifecycle
	// events; nil: the agent's entries only. Serve sets it to its Server.
	lifecycle lifecycleLog
}

// NewAPI returns the API over views, with /metrics gathered from metrics
// (none when nil).
func NewAPI(views APIViews, metrics prometheus.Gatherer) *API {
	api := &API{views: views}
	if metrics != nil {
		api.metrics = promhttp.HandlerFor(metrics, promhttp.HandlerOpts{})
	}
	return api
}

// Register adds the API's routes to mux. Serve mux behind Guard.
func (api *API) Register(mux *http.ServeMux) {
	v := api.views
	mux.HandleFunc("GET /v1/groups", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, v.Groups()) })
	mux.HandleFunc("GET /v1/workers", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, v.Workers()) })
	mux.HandleFunc("GET /v1/drivers", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, v.Drivers()) })
	mux.HandleFunc("GET /v1/stats/workers", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, v.StatsWorkers()) })
	mux.HandleFunc("GET /v1/stats/store", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, v.StatsStore()) })
	mux.HandleFunc("GET /v1/stats", api.serveStats)
	mux.HandleFunc("GET /v1/groups/{name}/events", api.serveGroupEvents) // group_events.go
	mux.HandleFunc("POST /v1/groups/{name}/scale", api.serveScale)
	mux.HandleFunc("POST /v1/reload", api.serveReload) // reload.go
	mux.HandleFunc("GET /v1/reload", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, v.ReloadStatus()) })
	if api.metrics != nil {
		mux.Handle("GET /metrics", api.metrics)
	}
}

// serveStats is GET /v1/stats: the totals in the seed's shape, as they are
// (tab-indented by the stats package, not re-encoded).
func (api *API) serveStats(w http.ResponseWriter, r *http.Request) {
	body, err := api.views.StatsSeed()
	if err != nil {
		refuse(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

package admin

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"
)

// GET /v1/groups/NAME/events is one list, newest first, of two sources:
// the agent's entries (APIViews.GroupEvents: scale decisions, stopped
// rollovers), and the group's lifecycle events, which the dashboard's
// event log (events.go) also keeps per group. Every entry is a JSON object
// with a "time" and a "kind": "scale", "rollout_stopped" or "lifecycle".

// DefaultGroupEvents is how many lifecycle events the log keeps per group:
// as many as the scale decisions it keeps (autoscale.DefaultKeep), and
// apart from them and from the other groups, so that a crash loop in one
// group pushes out neither its decisions nor another group's events.
const DefaultGroupEvents = 100

// KindLifecycle is the "kind" of a lifecycle entry.
const KindLifecycle = "lifecycle"

// GroupEvent is one of the agent's entries of GET /v1/groups/NAME/events:
// its time, by which it is merged, its kind, and what it is encoded as (a
// JSON object with that "time" and "kind").
type GroupEvent struct {
	Time  time.Time
	Kind  string // the entry's "kind", for ?kind=
	Entry any
}

// LifecycleEntry is a lifecycle entry of GET /v1/groups/NAME/events: one
// event of the event log (GET /v1/events) about the group or one of its
// workers.
type LifecycleEntry struct {
	Kind string `json:"kind"` // always "lifecycle"
	// Type is the event log's kind: started, exited (a worker failed or
	// was lost), replaced, stopped, gone, draining, unhealthy, healthy,
	// ejected, scaled (the desired count changed; for a group without a
	// scale block only: an autoscaled group's changes are its "scale"
	// entries), failing, recovered.
	Type   string    `json:"type"`
	Time   time.Time `json:"time"`
	Group  string    `json:"group"`
	Worker string    `json:"worker,omitempty"` // the worker's id, when the event is one worker's
	Text   string    `json:"text"`             // as in GET /v1/events
}

// lifecycleLog is where the API reads a group's lifecycle events: a
// Server, when Serve serves both.
type lifecycleLog interface {
	GroupLifecycle(group string) []Event
}

// GroupLifecycle returns the lifecycle events of group, newest first: the
// last Options.GroupEvents of them.
func (s *Server) GroupLifecycle(group string) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.byGroup[group]
	out := make([]Event, len(l))
	for i, e := range l {
		out[len(l)-1-i] = e
	}
	return out
}

// keepGroupEventsLocked adds the group events of evs to their groups' logs,
// and forgets the groups st no longer has. A "decision" event is not a
// group's lifecycle (the agent lists the decision itself, with its
// figures), nor is a "scaled" one of a group that autoscales: each of its
// count changes is a decision.
func (s *Server) keepGroupEventsLocked(st State, evs []Event) {
	scaled := map[string]bool{}
	for _, g := range st.Groups {
		scaled[g.Name] = g.Scale != nil
	}
	for _, e := range evs {
		if e.Group == "" || e.Kind == "decision" || e.Kind == "scaled" && scaled[e.Group] {
			continue
		}
		l := append(s.byGroup[e.Group], e)
		if len(l) > s.opts.GroupEvents {
			l = append(l[:0:0], l[len(l)-s.opts.GroupEvents:]...)
		}
		s.byGroup[e.Group] = l
	}
	for g := range s.byGroup {
		if _, ok := scaled[g]; !ok {
			delete(s.byGroup, g)
		}
	}
}

// mergeGroupEvents is the answer of GET /v1/groups/NAME/events: the
// agent's entries and the lifecycle events, newest first (on equal times,
// the agent's entry first), only those of kinds unless kinds is empty.
func mergeGroupEvents(agent []GroupEvent, life []Event, kinds []string) []any {
	all := make([]GroupEvent, 0, len(agent)+len(life))
	all = append(all, agent...)
	for _, e := range life {
		all = append(all, GroupEvent{Time: e.Time, Kind: KindLifecycle, Entry: LifecycleEntry{Kind: KindLifecycle, Type: e.Kind, Time: e.Time, Group: e.Group, Worker: e.Worker, Text: e.Text}})
	}
	slices.SortStableFunc(all, func(a, b GroupEvent) int { return b.Time.Compare(a.Time) })
	out := make([]any, 0, len(all))
	for _, e := range all {
		if len(kinds) == 0 || slices.Contains(kinds, e.Kind) {
			out = append(out, e.Entry)
		}
	}
	return out
}

// serveGroupEvents is GET /v1/groups/{name}/events: the group's scale
// decisions, stopped rollovers and lifecycle events, newest first; 404 for
// an unknown group. ?kind=scale,lifecycle lists only the entries of those
// kinds.
func (api *API) serveGroupEvents(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	agent, err := api.views.GroupEvents(name)
	switch {
	case errors.Is(err, ErrNoGroup):
		refuse(w, http.StatusNotFound, err.Error())
		return
	case err != nil:
		refuse(w, http.StatusInternalServerError, err.Error())
		return
	}
	var life []Event
	if api.lifecycle != nil {
		life = api.lifecycle.GroupLifecycle(name)
	}
	var kinds []string
	if q := r.URL.Query().Get("kind"); q != "" {
		kinds = strings.Split(q, ",")
	}
	writeJSON(w, http.StatusOK, mergeGroupEvents(agent, life, kinds))
}

var _ lifecycleLog = (*Server)(nil)

package admin

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Event is one line of the event log.
type Event struct {
	Time time.Time `json:"time"`
	// Kind is one of started, exited, replaced, stopped, gone, draining,
	// unhealthy, healthy, ejected, scaled, decision, failing, recovered,
	// plugin.
	Kind   string `json:"kind"`
	Group  string `json:"group,omitempty"`
	Worker string `json:"worker,omitempty"`
	Driver string `json:"driver,omitempty"`
	Text   string `json:"text"`
}

// lineage is an exited worker waiting for its replacement.
type lineage struct {
	id       string
	restarts int
}

// tracker turns successive States into events, and remembers what the
// States forget: workers that are gone, and how many workers of a line
// exited before the one running now. Not safe for concurrent use.
type tracker struct {
	prev     *State
	restarts map[string]int       // by worker id
	awaiting map[string][]lineage // exited workers by group, oldest first
	gone     map[string]goneRow   // by worker id
	goneFor  time.Duration
}

type goneRow struct {
	w  Worker
	at time.Time
}

func newTracker(goneFor time.Duration) *tracker {
	return &tracker{restarts: map[string]int{}, awaiting: map[string][]lineage{}, gone: map[string]goneRow{}, goneFor: goneFor}
}

// observe compares st with the previous State and returns what happened.
// The first State only sets the baseline.
func (t *tracker) observe(st State, now time.Time) []Event {
	prev := t.prev
	t.prev = &st
	if prev == nil {
		return nil
	}
	var out []Event
	emit := func(e Event) { e.Time = now; out = append(out, e) }
	before := map[string]Worker{}
	for _, w := range prev.Workers {
		before[w.ID] = w
	}
	// Exits first, then disappearances, then newcomers: a replacement
	// that appears in the same reading as its predecessor's exit is seen
	// as one.
	checked := map[string]bool{} // groups a balancer health-checks
	for _, b := range st.Balancers {
		checked[b.Group] = true
	}
	seen := map[string]bool{}
	var fresh []Worker
	for _, w := range st.Workers {
		seen[w.ID] = true
		p, ok := before[w.ID]
		if !ok {
			fresh = append(fresh, w)
			continue
		}
		if p.Status != w.Status {
			if e, ok := t.statusEvent(w); ok {
				emit(e)
			}
		}
		if w.Status == "running" && checked[w.Group] {
			switch {
			case w.Ejected && !p.Ejected:
				emit(Event{Kind: "ejected", Group: w.Group, Worker: w.ID, Text: w.ID + " ejected for failing requests"})
			case !w.Healthy && p.Healthy:
				emit(Event{Kind: "unhealthy", Group: w.Group, Worker: w.ID, Text: strings.TrimSpace(w.ID + " unhealthy: " + w.HealthError)})
			case w.Healthy && !p.Healthy:
				emit(Event{Kind: "healthy", Group: w.Group, Worker: w.ID, Text: w.ID + " healthy"})
			}
		}
	}
	for _, p := range prev.Workers {
		if seen[p.ID] {
			continue
		}
		if p.Status == "running" || p.Status == "pending" {
			// It ended and was cleaned up between two readings.
			t.awaiting[p.Group] = append(t.awaiting[p.Group], lineage{p.ID, t.restarts[p.ID]})
			emit(Event{Kind: "gone", Group: p.Group, Worker: p.ID, Text: p.ID + " is gone"})
		}
		g := p
		g.Status, g.Healthy, g.InFlight = "gone", false, 0
		g.Restarts = t.restarts[p.ID]
		t.gone[p.ID] = goneRow{g, now}
		delete(t.restarts, p.ID)
	}
	for _, w := range fresh {
		if l := t.awaiting[w.Group]; len(l) > 0 {
			t.awaiting[w.Group] = l[1:]
			t.restarts[w.ID] = l[0].restarts + 1
			emit(Event{Kind: "replaced", Group: w.Group, Worker: w.ID, Text: fmt.Sprintf("%s replaces %s", w.ID, l[0].id)})
		}
		if e, ok := t.statusEvent(w); ok {
			emit(e)
		}
	}
	out = append(out, groupEvents(prev.Groups, st.Groups, now)...)
	out = append(out, driverEvents(prev.Drivers, st.Drivers, now)...)
	t.forget(now)
	return out
}

// goneKept is how many gone workers of a group the table keeps.
const goneKept = 3

// forget drops the gone workers older than goneFor, and all but the newest
// goneKept of each group (a crash loop would fill the table).
func (t *tracker) forget(now time.Time) {
	byGroup := map[string][]string{}
	for id, g := range t.gone {
		if now.Sub(g.at) > t.goneFor {
			delete(t.gone, id)
			continue
		}
		byGroup[g.w.Group] = append(byGroup[g.w.Group], id)
	}
	for _, ids := range byGroup {
		if len(ids) <= goneKept {
			continue
		}
		sort.Slice(ids, func(i, j int) bool { return t.gone[ids[i]].at.After(t.gone[ids[j]].at) })
		for _, id := range ids[goneKept:] {
			delete(t.gone, id)
		}
	}
}

// statusEvent is the event of w entering its status.
func (t *tracker) statusEvent(w Worker) (Event, bool) {
	e := Event{Group: w.Group, Worker: w.ID}
	switch w.Status {
	case "running":
		e.Kind, e.Text = "started", fmt.Sprintf("%s running at %s", w.ID, w.Address)
		if w.PID > 0 {
			e.Text += fmt.Sprintf(" (pid %d)", w.PID)
		}
	case "draining":
		e.Kind, e.Text = "draining", w.ID+" draining"
	case "stopped":
		e.Kind, e.Text = "stopped", w.ID+" stopped"
	case "failed", "lost":
		t.awaiting[w.Group] = append(t.awaiting[w.Group], lineage{w.ID, t.restarts[w.ID]})
		e.Kind, e.Text = "exited", fmt.Sprintf("%s %s: %s", w.ID, w.Status, firstOf(w.Exit, w.Reason, "no exit status"))
		if w.LastWords != "" && !strings.Contains(e.Text, w.LastWords) {
			e.Text += "; last words: " + w.LastWords
		}
	default:
		return e, false
	}
	return e, true
}

func groupEvents(prev, cur []Group, now time.Time) []Event {
	var out []Event
	before := map[string]Group{}
	for _, g := range prev {
		before[g.Name] = g
	}
	for _, g := range cur {
		p, ok := before[g.Name]
		if !ok {
			continue
		}
		e := Event{Time: now, Group: g.Name}
		if g.Desired != p.Desired {
			e.Kind, e.Text = "scaled", fmt.Sprintf("%s: desired %d → %d", g.Name, p.Desired, g.Desired)
			out = append(out, e)
		}
		if g.Failing && (!p.Failing || g.Reason != p.Reason) {
			e.Kind, e.Text = "failing", g.Name+": "+g.Reason
			out = append(out, e)
		} else if !g.Failing && p.Failing {
			e.Kind, e.Text = "recovered", g.Name+" keeps its count again"
			out = append(out, e)
		}
		if d := lastDecision(g); d != nil && d.From != d.To {
			if pd := lastDecision(p); pd == nil || !pd.Time.Equal(d.Time) {
				e.Kind, e.Text = "decision", fmt.Sprintf("%s: autoscaler %s %d → %d: %s", g.Name, firstOf(d.Mode, g.Scale.Mode, "decided"), d.From, d.To, d.Reason)
				out = append(out, e)
			}
		}
	}
	return out
}

func lastDecision(g Group) *Decision {
	if g.Scale == nil {
		return nil
	}
	return g.Scale.Last
}

func driverEvents(prev, cur []Driver, now time.Time) []Event {
	var out []Event
	before := map[string]Driver{}
	for _, d := range prev {
		before[d.Name] = d
	}
	for _, d := range cur {
		p, ok := before[d.Name]
		if !ok {
			continue
		}
		e := Event{Time: now, Kind: "plugin", Driver: d.Name}
		switch {
		case d.Restarts > p.Restarts:
			e.Text = fmt.Sprintf("driver %s restarted (pid %d, %d restarts)", d.Name, d.PID, d.Restarts)
			if d.Error != "" {
				e.Text += ": " + d.Error
			}
		case p.Running && !d.Running:
			e.Text = "driver " + d.Name + " is down"
			if d.Error != "" {
				e.Text += ": " + d.Error
			}
		case d.Reachable != p.Reachable:
			e.Text = fmt.Sprintf("driver %s: runtime reachable %v", d.Name, d.Reachable)
		default:
			continue
		}
		out = append(out, e)
	}
	return out
}

// rows returns the workers of st for the table, the gone ones after the
// others, with their uptime and restarts.
func (t *tracker) rows(st State, now time.Time) []Worker {
	out := make([]Worker, 0, len(st.Workers)+len(t.gone))
	for _, w := range st.Workers {
		if !w.StartedAt.IsZero() {
			w.UptimeS = int64(now.Sub(w.StartedAt) / time.Second)
		}
		w.Restarts = t.restarts[w.ID]
		out = append(out, w)
	}
	for _, g := range t.gone {
		out = append(out, g.w)
	}
	return out
}

func firstOf(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

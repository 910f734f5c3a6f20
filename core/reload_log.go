package core

import (
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Reload results, as events, /metrics (golb_reloads_total{result}) and
// `golb status` name them.
const (
	ReloadApplied   = "applied"   // the difference is being applied
	ReloadUnchanged = "unchanged" // nothing to do (no change, or no file)
	ReloadInvalid   = "invalid"   // the file has errors: nothing changed
	ReloadRefused   = "refused"   // a change cannot apply live: nothing changed
	// RolloutStopped is the event of a rollover stopped by its healthy
	// deadline or a failed replacement (Group names the group).
	RolloutStopped = "rollout_stopped"
)

// ReloadEvent is one reload, or one rollover that stopped.
type ReloadEvent struct {
	Time    time.Time `json:"time"`
	Result  string    `json:"result"`
	Summary string    `json:"summary"`
	Group   string    `json:"group,omitempty"`
}

// reloadKeep is how many events the reload log keeps.
const reloadKeep = 50

// reloadLog serializes reloads (run) and keeps their events, newest last.
type reloadLog struct {
	run    sync.Mutex
	mu     sync.Mutex
	events []ReloadEvent
	counts map[string]uint64
	last   *ReloadEvent // the last reload (not rollout event)
}

func (l *reloadLog) add(result, summary string) ReloadEvent {
	ev := ReloadEvent{Time: time.Now().UTC(), Result: result, Summary: summary}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.appendLocked(ev)
	if l.counts == nil {
		l.counts = map[string]uint64{}
	}
	l.counts[result]++
	l.last = &ev
	return ev
}

// event records a rollover's stop for group.
func (l *reloadLog) event(group, summary string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.appendLocked(ReloadEvent{Time: time.Now().UTC(), Result: RolloutStopped, Summary: summary, Group: group})
}

func (l *reloadLog) appendLocked(ev ReloadEvent) {
	l.events = append(l.events, ev)
	if len(l.events) > reloadKeep {
		l.events = append([]ReloadEvent(nil), l.events[len(l.events)-reloadKeep:]...)
	}
}

// ReloadStatus is GET /v1/reload: the last reload, and the events newest
// first.
type ReloadStatus struct {
	Last   *ReloadEvent  `json:"last"`
	Events []ReloadEvent `json:"events"`
}

// ReloadStatus returns the last reload and the reload events.
func (a *Agent) ReloadStatus() ReloadStatus {
	l := &a.reloads
	l.mu.Lock()
	defer l.mu.Unlock()
	out := ReloadStatus{Events: make([]ReloadEvent, 0, len(l.events))}
	if l.last != nil {
		cp := *l.last
		out.Last = &cp
	}
	for i := len(l.events) - 1; i >= 0; i-- {
		out.Events = append(out.Events, l.events[i])
	}
	return out
}

// reloadAnswer is POST /v1/reload's body: the event, and for a reload that
// changed nothing, the error and the diagnostics as `golb validate` prints
// them (file:line:col: summary, the source line, a caret).
type reloadAnswer struct {
	ReloadEvent
	Error   string     `json:"error,omitempty"`
	Refused []string   `json:"refused,omitempty"`
	Diags   *DiagsJSON `json:"diagnostics,omitempty"`
}

var descReloads = prometheus.NewDesc("golb_reloads_total", "Config reloads by result: applied, unchanged, invalid, refused.", []string{"result"}, nil)

// reloadCollector is golb_reloads_total.
type reloadCollector struct{ a *Agent }

func (c reloadCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descReloads }

func (c reloadCollector) Collect(ch chan<- prometheus.Metric) {
	l := &c.a.reloads
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range []string{ReloadApplied, ReloadUnchanged, ReloadInvalid, ReloadRefused} {
		ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(l.counts[r]), r)
	}
}

// DiagJSON is one diagnostic of a refused reload, for `golb reload` to print
// as `golb validate` does.
type DiagJSON struct {
	Severity string     `json:"severity"` // error | warning
	Summary  string     `json:"summary"`
	Detail   string     `json:"detail,omitempty"`
	Subject  *hcl.Range `json:"subject,omitempty"`
}

// DiagsJSON is the diagnostics and, per file, its source with every line
// that no diagnostic points at blanked (byte offsets kept): enough to show
// each offending line, and no more of a file that may hold a password.
type DiagsJSON struct {
	Diags   []DiagJSON        `json:"diags"`
	Sources map[string]string `json:"sources,omitempty"`
}

// diagsJSON converts a ReloadError's diagnostics.
func diagsJSON(re *ReloadError) *DiagsJSON {
	if len(re.Diags) == 0 {
		return nil
	}
	out := &DiagsJSON{Sources: map[string]string{}}
	keep := map[string]map[int]bool{}
	for _, d := range re.Diags {
		dj := DiagJSON{Severity: "error", Summary: d.Summary, Detail: d.Detail, Subject: d.Subject}
		if d.Severity == hcl.DiagWarning {
			dj.Severity = "warning"
		}
		out.Diags = append(out.Diags, dj)
		if d.Subject != nil {
			if keep[d.Subject.Filename] == nil {
				keep[d.Subject.Filename] = map[int]bool{}
			}
			keep[d.Subject.Filename][d.Subject.Start.Line] = true
		}
	}
	for name, lines := range keep {
		f := re.Files[name]
		if f == nil {
			continue
		}
		src := []byte(string(f.Bytes))
		line := 1
		for i, c := range src {
			if c == '\n' {
				line++
				continue
			}
			if !lines[line] {
				src[i] = ' '
			}
		}
		out.Sources[name] = string(src)
	}
	return out
}

// HCL turns the diagnostics back into hcl's, with the files they point at,
// for printing as `golb validate` does.
func (d *DiagsJSON) HCL() (hcl.Diagnostics, map[string]*hcl.File) {
	files := map[string]*hcl.File{}
	for name, src := range d.Sources {
		files[name] = &hcl.File{Body: hcl.EmptyBody(), Bytes: []byte(src)}
	}
	var diags hcl.Diagnostics
	for _, dj := range d.Diags {
		sev := hcl.DiagError
		if dj.Severity == "warning" {
			sev = hcl.DiagWarning
		}
		diags = append(diags, &hcl.Diagnostic{Severity: sev, Summary: dj.Summary, Detail: dj.Detail, Subject: dj.Subject})
	}
	return diags, files
}

// rolloutEvent is a stopped rollover in GET /v1/groups/NAME/events.
type rolloutEvent struct {
	Kind   string    `json:"kind"` // "rollout_stopped"
	Time   time.Time `json:"time"`
	Reason string    `json:"reason"`
}

// withRolloutEvents merges group's stopped rollovers into its scale events
// (newest first; timeOf(i) is the time of scale[i]), newest first.
func (a *Agent) withRolloutEvents(group string, scale []any, timeOf func(i int) time.Time) []any {
	var rs []rolloutEvent
	for _, ev := range a.ReloadStatus().Events {
		if ev.Result == RolloutStopped && ev.Group == group {
			rs = append(rs, rolloutEvent{Kind: RolloutStopped, Time: ev.Time, Reason: ev.Summary})
		}
	}
	out := make([]any, 0, len(scale)+len(rs))
	i, j := 0, 0
	for i < len(scale) || j < len(rs) {
		if j == len(rs) || i < len(scale) && timeOf(i).After(rs[j].Time) {
			out = append(out, scale[i])
			i++
		} else {
			out = append(out, rs[j])
			j++
		}
	}
	return out
}

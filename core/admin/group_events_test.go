package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// scaleEntry is an agent's scale entry as the fake gives it: the fields of
// core's, in the same order.
type scaleEntry struct {
	Kind   string    `json:"kind"`
	Time   time.Time `json:"time"`
	Group  string    `json:"group,omitempty"`
	From   int       `json:"from"`
	To     int       `json:"to"`
	Reason string    `json:"reason"`
}

// TestMergeGroupEventsNewestFirst: the agent's entries and the lifecycle
// events come out in one list, newest first, each as it is encoded (a
// lifecycle event with kind "lifecycle" and the log's kind as type); on
// equal times the agent's entry first; ?kind= keeps the kinds named.
func TestMergeGroupEventsNewestFirst(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	agent := []GroupEvent{ // newest first, as the agent gives them
		{Time: at(9), Kind: "scale", Entry: scaleEntry{"scale", at(9), "hello", 2, 1, "idle"}},
		{Time: at(5), Kind: "rollout_stopped", Entry: map[string]any{"kind": "rollout_stopped", "time": at(5), "reason": "deadline"}},
		{Time: at(2), Kind: "scale", Entry: scaleEntry{"scale", at(2), "hello", 1, 2, "load"}},
	}
	life := []Event{ // newest first, as GroupLifecycle gives them
		{Time: at(10), Kind: "stopped", Group: "hello", Worker: "hello-b", Text: "hello-b stopped"},
		{Time: at(5), Kind: "failing", Group: "hello", Text: "hello: cannot start"},
		{Time: at(3), Kind: "started", Group: "hello", Worker: "hello-b", Text: "hello-b running at 127.0.0.1:6001"},
	}
	got := mergeGroupEvents(agent, life, nil)
	var order []string
	for _, e := range got {
		switch e := e.(type) {
		case LifecycleEntry:
			order = append(order, fmt.Sprintf("%s/%s@%d", e.Kind, e.Type, int(e.Time.Sub(t0).Seconds())))
		case scaleEntry:
			order = append(order, fmt.Sprintf("scale@%d", int(e.Time.Sub(t0).Seconds())))
		default:
			order = append(order, "rollout_stopped")
		}
	}
	want := "lifecycle/stopped@10 scale@9 rollout_stopped lifecycle/failing@5 lifecycle/started@3 scale@2"
	if strings.Join(order, " ") != want {
		t.Errorf("merged:\n%s\nwant:\n%s", strings.Join(order, " "), want)
	}

	b, _ := json.Marshal(got[0])
	if w := `{"kind":"lifecycle","type":"stopped","time":"2026-01-02T03:04:15Z","group":"hello","worker":"hello-b","text":"hello-b stopped"}`; string(b) != w {
		t.Errorf("a lifecycle entry:\n%s\nwant:\n%s", b, w)
	}
	b, _ = json.Marshal(got[3])
	if w := `{"kind":"lifecycle","type":"failing","time":"2026-01-02T03:04:10Z","group":"hello","text":"hello: cannot start"}`; string(b) != w {
		t.Errorf("a group's lifecycle entry:\n%s\nwant:\n%s", b, w)
	}

	if n := len(mergeGroupEvents(agent, life, []string{"scale"})); n != 2 {
		t.Errorf("?kind=scale: %d entries, want 2", n)
	}
	if n := len(mergeGroupEvents(agent, life, []string{"lifecycle", "rollout_stopped"})); n != 4 {
		t.Errorf("?kind=lifecycle,rollout_stopped: %d entries, want 4", n)
	}
	if n := len(mergeGroupEvents(nil, nil, nil)); n != 0 {
		t.Errorf("no events: %d entries", n)
	}
}

// TestGroupLifecycleKeepsTheLastNPerGroup: each group keeps its own last
// GroupEvents lifecycle events, so a crash loop in one group pushes out
// none of another's; a "decision" is never one, nor a "scaled" of a group
// that autoscales; a group that is gone is forgotten.
func TestGroupLifecycleKeepsTheLastNPerGroup(t *testing.T) {
	s := New(newFake(State{}), Options{GroupEvents: 3, Events: 5})
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := State{Groups: []Group{
		{Name: "loop", Driver: "process", Desired: 1},
		{Name: "quiet", Driver: "process", Desired: 1},
		{Name: "auto", Driver: "process", Desired: 1, Scale: &Scale{Mode: "stable"}},
	}}
	s.observe(st, now) // the baseline
	quiet := st
	quiet.Workers = []Worker{{ID: "quiet-a", Group: "quiet", Status: "running", Address: "127.0.0.1:7000"}}
	now = now.Add(time.Second)
	s.observe(quiet, now)
	for i := range 10 { // loop's worker starts and fails, 10 times over
		id := fmt.Sprintf("loop-%d", i)
		up := quiet
		up.Workers = append([]Worker{{ID: id, Group: "loop", Status: "running", Address: "127.0.0.1:7001"}}, quiet.Workers...)
		now = now.Add(time.Second)
		s.observe(up, now)
		down := up
		down.Workers = append([]Worker{{ID: id, Group: "loop", Status: "failed", Exit: "exit status 1"}}, quiet.Workers...)
		now = now.Add(time.Second)
		s.observe(down, now)
		now = now.Add(time.Second)
		s.observe(quiet, now)
	}
	loop := s.GroupLifecycle("loop")
	var got []string
	for _, e := range loop {
		got = append(got, e.Kind+" "+e.Worker)
	}
	if w := "exited loop-9 started loop-9 replaced loop-9"; strings.Join(got, " ") != w {
		t.Errorf("loop's events, newest first: %q, want %q", strings.Join(got, " "), w)
	}
	for i := 1; i < len(loop); i++ {
		if loop[i].Time.After(loop[i-1].Time) {
			t.Errorf("not newest first: %v after %v", loop[i].Time, loop[i-1].Time)
		}
	}
	if q := s.GroupLifecycle("quiet"); len(q) != 1 || q[0].Kind != "started" || q[0].Worker != "quiet-a" {
		t.Errorf("quiet's events after loop's crash loop: %+v", q)
	}
	if n := len(s.events); n != 5 {
		t.Errorf("the event log keeps %d, want Events (5)", n)
	}

	// Count changes: a "scaled" of a plain group is its lifecycle; of a
	// group that autoscales, and any "decision", they are the agent's
	// scale entries.
	sc := quiet
	sc.Groups = []Group{
		{Name: "loop", Driver: "process", Desired: 2},
		st.Groups[1],
		{Name: "auto", Driver: "process", Desired: 2, Scale: &Scale{Mode: "stable", Last: &Decision{Time: now, From: 1, To: 2, Reason: "load"}}},
	}
	now = now.Add(time.Second)
	s.observe(sc, now)
	if l := s.GroupLifecycle("loop"); len(l) != 3 || l[0].Kind != "scaled" || !strings.Contains(l[0].Text, "1 → 2") {
		t.Errorf("loop's events after a count change: %+v", l)
	}
	if l := s.GroupLifecycle("auto"); len(l) != 0 {
		t.Errorf("an autoscaled group's count change is a lifecycle event: %+v", l)
	}
	var kinds []string
	for _, e := range s.events {
		kinds = append(kinds, e.Kind)
	}
	if !strings.Contains(strings.Join(kinds, " "), "decision") {
		t.Errorf("the event log lost the decision: %v", kinds)
	}

	gone := sc
	gone.Groups = sc.Groups[1:]
	s.observe(gone, now.Add(time.Second))
	if l := s.GroupLifecycle("loop"); len(l) != 0 {
		t.Errorf("a removed group's events are kept: %+v", l)
	}
}

// TestGroupEventsEndpointMergesTheLog: Serve's API lists the group's
// lifecycle events from its Server's log among the agent's entries, the
// group's only, newest first; the agent's entry is as the agent encodes it.
func TestGroupEventsEndpointMergesTheLog(t *testing.T) {
	f := newFake(fleet())
	_, s := serve(t, f)
	api := NewAPI(&fakeAPI{}, prometheus.NewRegistry())
	api.lifecycle = s // as Serve does
	mux := http.NewServeMux()
	api.Register(mux)

	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.tracker.prev != nil }) // the baseline
	f.set(func(st *State) {
		st.Groups = append(st.Groups, Group{Name: "other", Driver: "process", Desired: 1})
		st.Workers[1].Status, st.Workers[1].Exit = "failed", "exit status 2"
		st.Workers = append(st.Workers, Worker{ID: "other-a", Group: "other", Status: "running", Address: "127.0.0.1:7000"})
	})
	waitFor(t, func() bool { return len(s.GroupLifecycle("hello")) > 0 })

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/groups/hello/events", nil))
	var got []map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); rec.Code != 200 || err != nil {
		t.Fatalf("GET /v1/groups/hello/events: %d %s %v", rec.Code, rec.Body, err)
	}
	// The fake's scale entry has no time: it is the oldest.
	if len(got) != 2 || got[0]["kind"] != "lifecycle" || got[0]["type"] != "exited" || got[0]["worker"] != "hello-b" ||
		!strings.Contains(fmt.Sprint(got[0]["text"]), "exit status 2") || got[1]["kind"] != "scale" || len(got[1]) != 1 {
		t.Errorf("hello's events: %s", rec.Body)
	}
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/groups/hello/events?kind=scale", nil))
	if w := "[\n  {\n    \"kind\": \"scale\"\n  }\n]\n"; rec.Body.String() != w {
		t.Errorf("?kind=scale: %s, want %s", rec.Body, w)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
)

// fakeViews is a State that tests change; State's WatchSet fires on change
// as memdb's does.
type fakeViews struct {
	mu      sync.Mutex
	st      State
	changed chan struct{}
	drained []string
}

func newFake(st State) *fakeViews { return &fakeViews{st: st, changed: make(chan struct{})} }

func (f *fakeViews) State(ws memdb.WatchSet) State {
	f.mu.Lock()
	defer f.mu.Unlock()
	ws.Add(f.changed)
	return f.st
}

func (f *fakeViews) set(fn func(st *State)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	st.Workers = append([]Worker(nil), st.Workers...)
	st.Groups = append([]Group(nil), st.Groups...)
	st.Balancers = append([]Balancer(nil), st.Balancers...)
	fn(&st)
	f.st = st
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeViews) Drain(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.st.Workers {
		if w.ID == id {
			if w.Status != "running" {
				return fmt.Errorf("draining %s: %w", id, ErrNotRunning)
			}
			f.drained = append(f.drained, id)
			return nil
		}
	}
	return fmt.Errorf("draining %s: %w", id, ErrNoWorker)
}

func fleet() State {
	now := time.Now()
	return State{
		Groups: []Group{{Name: "hello", Driver: "process", Desired: 2, Min: 0, Max: 1000}},
		Workers: []Worker{
			{ID: "hello-a", Group: "hello", Driver: "process", Address: "127.0.0.1:6000", Status: "running", Healthy: true, StartedAt: now},
			{ID: "hello-b", Group: "hello", Driver: "process", Address: "127.0.0.1:6001", Status: "running", Healthy: true, StartedAt: now},
		},
		Drivers:   []Driver{{Name: "process", Version: "1", Reachable: true, Running: true, PID: 42}},
		Balancers: []Balancer{{Name: "web", Group: "hello", Classes: map[string]uint64{}, Bounds: []float64{.1, 1}, Buckets: []uint64{0, 0, 0}}},
	}
}

// serve runs a Server on f behind Guard and returns its base URL.
func serve(t *testing.T, f *fakeViews) (string, *Server) {
	t.Helper()
	s := New(f, Options{Interval: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewUnstartedServer(nil)
	srv.Config.Handler = Guard(srv.Listener.Addr().String(), mux)
	srv.Start()
	t.Cleanup(func() { cancel(); <-done; srv.Close() })
	return srv.URL, s
}

// sse reads Server-Sent Events.
type sse struct {
	r  *bufio.Reader
	cl io.Closer
}

func openStream(t *testing.T, url string) *sse {
	t.Helper()
	resp, err := http.Get(url + "/v1/stream")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	t.Cleanup(func() { resp.Body.Close() })
	return &sse{bufio.NewReader(resp.Body), resp.Body}
}

// next returns the next event's name and data.
func (s *sse) next(t *testing.T) (string, string) {
	t.Helper()
	var event, data string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && event != "":
			return event, data
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
}

// until reads events until one named name for which ok holds.
func (s *sse) until(t *testing.T, name string, ok func(data string) bool) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ev, data := s.next(t); ev == name && ok(data) {
			return data
		}
	}
	t.Fatalf("no %s event as wanted within 10s", name)
	return ""
}

func TestStreamSendsHistoryThenSnapshotsAndEvents(t *testing.T) {
	f := newFake(fleet())
	url, _ := serve(t, f)
	time.Sleep(200 * time.Millisecond) // a few points of history
	s := openStream(t, url)
	ev, data := s.next(t)
	if ev != "history" {
		t.Fatalf("first event %q, want history", ev)
	}
	var h history
	if err := json.Unmarshal([]byte(data), &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Points) < 2 || h.StepMS != 50 {
		t.Fatalf("history: %d points, step %d ms; want some points at 50 ms", len(h.Points), h.StepMS)
	}
	data = s.until(t, "snapshot", func(string) bool { return true })
	var snap snapshot
	if err := json.Unmarshal([]byte(data), &snap); err != nil {
		t.Fatal(err)
	}
	if len(snap.Workers) != 2 || len(snap.Groups) != 1 || snap.Groups[0].Healthy != 2 || len(snap.Drivers) != 1 {
		t.Fatalf("snapshot: %+v", snap)
	}

	// Traffic: 100 attempts in the next reading become a rate and a p50.
	f.set(func(st *State) {
		st.Balancers[0].Classes = map[string]uint64{"2xx": 90, "5xx": 10}
		st.Balancers[0].Buckets = []uint64{50, 50, 0}
	})
	s.until(t, "snapshot", func(d string) bool {
		var sn snapshot
		_ = json.Unmarshal([]byte(d), &sn)
		p := sn.Point.B["web"]
		return p[BalOK] > 0 && p[Bal5xx] > 0 && p[BalP50] > 0 && p[BalP50] <= 100
	})

	// A worker exits with HTML in its last words: an event at once, the
	// text as the worker wrote it (the page escapes it).
	f.set(func(st *State) {
		st.Workers[1].Status, st.Workers[1].Exit, st.Workers[1].LastWords = "failed", "signal 9", "<script>alert(1)</script>"
	})
	data = s.until(t, "event", func(d string) bool { return strings.Contains(d, `"exited"`) })
	var e Event
	_ = json.Unmarshal([]byte(data), &e)
	if e.Worker != "hello-b" || !strings.Contains(e.Text, "signal 9") || !strings.Contains(e.Text, "<script>alert(1)</script>") {
		t.Fatalf("exit event: %+v", e)
	}
	// It is removed and replaced: the replacement has one restart, the
	// old one stays in the table as gone.
	f.set(func(st *State) {
		st.Workers[1] = Worker{ID: "hello-c", Group: "hello", Driver: "process", Address: "127.0.0.1:6002", Status: "running", StartedAt: time.Now()}
	})
	data = s.until(t, "event", func(d string) bool { return strings.Contains(d, `"replaced"`) })
	if !strings.Contains(data, "hello-c replaces hello-b") {
		t.Fatalf("replaced event: %s", data)
	}
	data = s.until(t, "snapshot", func(d string) bool { return strings.Contains(d, `"hello-c"`) })
	var sn snapshot
	_ = json.Unmarshal([]byte(data), &sn)
	byID := map[string]Worker{}
	for _, w := range sn.Workers {
		byID[w.ID] = w
	}
	if byID["hello-c"].Restarts != 1 || byID["hello-b"].Status != "gone" {
		t.Fatalf("workers after the replacement: %+v", sn.Workers)
	}

	// A later page gets the event log with its history.
	s2 := openStream(t, url)
	if ev, data := s2.next(t); ev != "history" || !strings.Contains(data, "hello-c replaces hello-b") {
		t.Fatalf("second page's first event %q lacks the log: %.300s", ev, data)
	}
}

func TestGroupAndPluginEvents(t *testing.T) {
	tr := newTracker(time.Minute)
	st := fleet()
	now := time.Now()
	tr.observe(st, now)
	next := fleet()
	next.Groups[0].Desired = 3
	next.Groups[0].Scale = &Scale{Mode: "panic", Last: &Decision{Time: now, From: 2, To: 3, Reason: "panic window 25 in flight"}}
	next.Drivers[0].Restarts, next.Drivers[0].Error = 1, "driver process crashed"
	evs := tr.observe(next, now.Add(time.Second))
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind+": "+e.Text)
	}
	got := strings.Join(kinds, "\n")
	for _, want := range []string{"scaled: hello: desired 2 → 3", "decision: hello: autoscaler panic 2 → 3: panic window 25 in flight", "plugin: driver process restarted (pid 42, 1 restarts): driver process crashed"} {
		if !strings.Contains(got, want) {
			t.Errorf("events lack %q:\n%s", want, got)
		}
	}
	if again := tr.observe(next, now.Add(2*time.Second)); len(again) != 0 {
		t.Errorf("the same state again: %v", again)
	}
}

func TestGuard(t *testing.T) {
	f := newFake(fleet())
	base, _ := serve(t, f)
	hostport := strings.TrimPrefix(base, "http://")
	_, port, _ := strings.Cut(hostport, ":")
	for _, tc := range []struct {
		name, method, path, host, origin, ctype string
		want                                    int
	}{
		{"the page", "GET", "/", "", "", "", 200},
		{"the CLI's POST", "POST", "/v1/workers/hello-a/drain", "", "", "application/json", 202},
		{"the page's own POST", "POST", "/v1/workers/hello-a/drain", "", base, "application/json", 202},
		{"the page loaded as localhost", "POST", "/v1/workers/hello-a/drain", "localhost:" + port, "http://localhost:" + port, "application/json", 202},
		{"CSRF: another site's fetch", "POST", "/v1/workers/hello-a/drain", "", "http://evil.example", "application/json", 403},
		{"CSRF: another site's form", "POST", "/v1/workers/hello-a/drain", "", "http://evil.example", "application/x-www-form-urlencoded", 403},
		{"CSRF: a page on another local port", "POST", "/v1/workers/hello-a/drain", "", "http://127.0.0.1:1", "application/json", 403},
		{"CSRF: an https page of the same host", "POST", "/v1/workers/hello-a/drain", "", "https://" + hostport, "application/json", 403},
		{"CSRF: the null origin of a sandboxed frame", "POST", "/v1/workers/hello-a/drain", "", "null", "application/json", 403},
		{"a form without Origin", "POST", "/v1/workers/hello-a/drain", "", "", "text/plain", 415},
		{"DNS rebinding: the page", "GET", "/", "rebound.example:" + port, "", "", 403},
		{"DNS rebinding: the stream", "GET", "/v1/stream", "rebound.example:" + port, "", "", 403},
		{"DNS rebinding: same-origin POST", "POST", "/v1/workers/hello-a/drain", "rebound.example:" + port, "http://rebound.example:" + port, "application/json", 403},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader("{}"))
		if tc.host != "" {
			req.Host = tc.host
		}
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
}

func TestDrain(t *testing.T) {
	st := fleet()
	st.Workers[1].Status = "draining"
	f := newFake(st)
	base, _ := serve(t, f)
	for path, want := range map[string]int{"hello-a": 202, "hello-b": 409, "nope": 404} {
		resp, err := http.Post(base+"/v1/workers/"+path+"/drain", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("drain %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	if len(f.drained) != 1 || f.drained[0] != "hello-a" {
		t.Errorf("drained %v", f.drained)
	}
}

func TestPageIsServedWithItsPolicy(t *testing.T) {
	base, _ := serve(t, newFake(fleet()))
	for _, path := range []string{"/", "/dashboard/app.js", "/dashboard/style.css"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(body) == 0 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: %d, %d bytes, headers %v", path, resp.StatusCode, len(body), resp.Header)
		}
	}
	if resp, err := http.Get(base + "/dashboard/"); err != nil || resp.StatusCode != 404 {
		t.Errorf("GET /dashboard/ lists the files: %v %v", resp, err)
	}
}

// TestPageWeight states the page's size (run with -v), and keeps the
// script to its rule: data goes into the page as text only.
func TestPageWeight(t *testing.T) {
	h, j, c := PageWeight()
	t.Logf("page weight: %d bytes (index.html %d, app.js %d, style.css %d)", h+j+c, h, j, c)
	js, _ := static.ReadFile("static/app.js")
	for _, banned := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
		if strings.Contains(string(js), banned) {
			t.Errorf("app.js uses %s: render data with textContent", banned)
		}
	}
}

func TestQuantile(t *testing.T) {
	bounds := []float64{.1, .5, 1}
	for _, tc := range []struct {
		q      float64
		counts []uint64
		want   float64
	}{
		{0.5, []uint64{0, 0, 0, 0}, 0},
		{0.5, []uint64{100, 0, 0, 0}, 50},
		{0.5, []uint64{0, 100, 0, 0}, 300},
		{0.99, []uint64{50, 50, 0, 0}, 492},
		{0.99, []uint64{0, 0, 0, 10}, 1000},
	} {
		if got := quantileMS(tc.q, bounds, tc.counts); math.Abs(got-tc.want) > 0.01 {
			t.Errorf("q%v of %v: %v ms, want %v", tc.q, tc.counts, got, tc.want)
		}
	}
}

func TestRingKeepsTheLastPoints(t *testing.T) {
	r := newRing(3)
	for i := range 5 {
		r.add(Point{T: int64(i)})
	}
	got := r.all()
	if len(got) != 3 || got[0].T != 2 || got[2].T != 4 {
		t.Fatalf("ring: %+v", got)
	}
}

// TestHealthEvents: a balanced group's worker that fails its checks, is
// ejected or recovers makes an event; a group no balancer checks makes none.
func TestHealthEvents(t *testing.T) {
	tr := newTracker(time.Minute)
	st := fleet()
	st.Groups = append(st.Groups, Group{Name: "solo", Driver: "process", Desired: 1})
	st.Workers = append(st.Workers, Worker{ID: "solo-a", Group: "solo", Status: "running", Healthy: true})
	now := time.Now()
	tr.observe(st, now)
	next := fleet()
	next.Groups, next.Workers = st.Groups, append([]Worker(nil), st.Workers...)
	next.Workers[0].Healthy, next.Workers[0].HealthError = false, "GET /healthz: 503"
	next.Workers[1].Ejected = true
	next.Workers[2].Healthy = false
	var got []string
	for _, e := range tr.observe(next, now.Add(time.Second)) {
		got = append(got, e.Kind+": "+e.Text)
	}
	want := []string{"unhealthy: hello-a unhealthy: GET /healthz: 503", "ejected: hello-b ejected for failing requests"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	back := tr.observe(st, now.Add(2*time.Second))
	if len(back) != 1 || back[0].Kind != "healthy" || back[0].Worker != "hello-a" {
		t.Errorf("recovery events: %+v", back)
	}
}

// Regression: streams had no cap, so idle dashboards could hold every one
// of the admin API's 256 connections and leave none for golb status.
func TestStreamsBeyondTheCapAreRefused(t *testing.T) {
	url, s := serve(t, newFake(fleet()))
	streams := make([]*sse, maxStreams)
	for i := range streams {
		streams[i] = openStream(t, url)
	}
	one := &http.Client{Timeout: 5 * time.Second} // an accepted stream never ends
	resp, err := one.Get(url + "/v1/stream")
	if err != nil {
		t.Fatalf("stream %d: %v; want a 503 at once", maxStreams+1, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "too many dashboard streams") {
		t.Fatalf("stream %d: %d, Retry-After %q, %s; want 503 with Retry-After", maxStreams+1, resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	// The rest of the API still answers.
	if resp, err := http.Get(url + "/v1/events"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/v1/events beside %d streams: %v %v", maxStreams, resp, err)
	} else {
		resp.Body.Close()
	}
	// A stream that closes frees its place.
	streams[0].cl.Close()
	deadline := time.Now().Add(10 * time.Second)
	for s.Streams() >= maxStreams {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams open 10s after one closed", s.Streams())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ev, _ := openStream(t, url).next(t); ev != "history" {
		t.Fatalf("first event of a stream opened after one closed: %q", ev)
	}
}

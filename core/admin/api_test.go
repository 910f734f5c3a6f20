package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeAPI answers the API with fixed views and records the actions. Only
// the HTTP layer is under test here; the agent's views are core's tests.
type fakeAPI struct {
	floor     time.Time
	reloadErr error
	seedErr   error
	scaled    []string
}

func (f *fakeAPI) Groups() []GroupView {
	return []GroupView{{Name: "hello", Driver: "process", Desired: 2, Running: 2, Healthy: 1, Max: 1000}}
}
func (f *fakeAPI) Workers() []WorkerView {
	return []WorkerView{{ID: "hello-a", Group: "hello", Driver: "process", Status: "running", Healthy: true, StartedAt: "2026-01-02T03:04:05Z"}}
}
func (f *fakeAPI) Drivers() []DriverView { return []DriverView{} }
func (f *fakeAPI) StatsWorkers() []StatsWorkerView {
	return []StatsWorkerView{{ID: "hello-a", Success: 3, Failed: 1, Total: 4}}
}
func (f *fakeAPI) StatsStore() StatsStoreView { return StatsStoreView{Sink: "sqlite", State: "ok"} }
func (f *fakeAPI) StatsSeed() ([]byte, error) {
	return []byte("{\n\t\"TotalRequests\": []\n}"), f.seedErr
}

func (f *fakeAPI) GroupEvents(group string) ([]GroupEvent, error) {
	if group != "hello" {
		return nil, fmt.Errorf("%w: %s", ErrNoGroup, group)
	}
	return []GroupEvent{{Kind: "scale", Entry: map[string]string{"kind": "scale"}}}, nil
}

func (f *fakeAPI) Scale(group string, n int) (time.Time, error) {
	switch {
	case group == "broken":
		return time.Time{}, errors.New("the store is closed")
	case group != "hello":
		return time.Time{}, fmt.Errorf("%w: %s", ErrNoGroup, group)
	case n > 3:
		return time.Time{}, fmt.Errorf("%w: %d is not within [1, 3]", ErrOutOfBounds, n)
	}
	f.scaled = append(f.scaled, fmt.Sprint(group, " ", n))
	return f.floor, nil
}

func (f *fakeAPI) Reload(ctx context.Context) (any, error) {
	if _, ok := ctx.Deadline(); !ok {
		return nil, errors.New("reload without a deadline")
	}
	ans := map[string]string{"result": "applied"}
	if f.reloadErr != nil {
		ans = map[string]string{"result": "invalid", "error": f.reloadErr.Error()}
	}
	return ans, f.reloadErr
}

func (f *fakeAPI) ReloadStatus() any { return map[string]any{"last": nil, "events": []string{}} }

var _ APIViews = (*fakeAPI)(nil)

// serveAPI serves f's API behind Guard, with an empty /metrics registry,
// and returns its base URL.
func serveAPI(t *testing.T, f *fakeAPI) string {
	t.Helper()
	mux := http.NewServeMux()
	NewAPI(f, prometheus.NewRegistry()).Register(mux)
	srv := httptest.NewUnstartedServer(nil)
	srv.Config.Handler = Guard(srv.Listener.Addr().String(), mux)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// call sends one request and returns the status, Content-Type and body.
func call(t *testing.T, method, url, body string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// TestAPIAnswersAsBefore: every endpoint's status, Content-Type and body,
// byte for byte: the indented JSON scripts and golb status read.
func TestAPIAnswersAsBefore(t *testing.T) {
	f := &fakeAPI{}
	base := serveAPI(t, f)
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"GET", "/v1/groups", "", 200, "[\n  {\n    \"name\": \"hello\",\n    \"driver\": \"process\",\n    \"desired\": 2,\n    \"running\": 2,\n    \"healthy\": 1,\n    \"min\": 0,\n    \"max\": 1000\n  }\n]\n"},
		{"GET", "/v1/workers", "", 200, "[\n  {\n    \"id\": \"hello-a\",\n    \"group\": \"hello\",\n    \"driver\": \"process\",\n    \"address\": \"\",\n    \"status\": \"running\",\n    \"healthy\": true,\n    \"requests\": 0,\n    \"failed\": 0,\n    \"mean_latency_ms\": 0,\n    \"in_flight\": 0,\n    \"started_at\": \"2026-01-02T03:04:05Z\"\n  }\n]\n"},
		{"GET", "/v1/drivers", "", 200, "[]\n"},
		{"GET", "/v1/stats/workers", "", 200, "[\n  {\n    \"id\": \"hello-a\",\n    \"success\": 3,\n    \"failed\": 1,\n    \"total\": 4,\n    \"mean_latency_ms\": 0\n  }\n]\n"},
		{"GET", "/v1/stats/store", "", 200, "{\n  \"sink\": \"sqlite\",\n  \"state\": \"ok\",\n  \"unflushed_requests\": 0\n}\n"},
		{"GET", "/v1/stats", "", 200, "{\n\t\"TotalRequests\": []\n}"},
		{"GET", "/v1/groups/hello/events", "", 200, "[\n  {\n    \"kind\": \"scale\"\n  }\n]\n"},
		{"GET", "/v1/groups/nosuch/events", "", 404, "{\n  \"error\": \"no such group: nosuch\"\n}\n"},
		{"POST", "/v1/groups/hello/scale", `{"count": 2}`, 200, "{\n  \"desired\": 2,\n  \"group\": \"hello\"\n}\n"},
		{"POST", "/v1/groups/hello/scale", `{"count": 4}`, 422, "{\n  \"error\": \"count outside the group's bounds: 4 is not within [1, 3]\"\n}\n"},
		{"POST", "/v1/groups/nosuch/scale", `{"count": 2}`, 404, "{\n  \"error\": \"no such group: nosuch\"\n}\n"},
		{"POST", "/v1/groups/broken/scale", `{"count": 2}`, 500, "{\n  \"error\": \"the store is closed\"\n}\n"},
		{"GET", "/v1/reload", "", 200, "{\n  \"events\": [],\n  \"last\": null\n}\n"},
		{"POST", "/v1/reload", "", 200, "{\n  \"result\": \"applied\"\n}\n"},
	} {
		code, ctype, body := call(t, tc.method, base+tc.path, tc.body)
		if code != tc.code || ctype != "application/json" || body != tc.want {
			t.Errorf("%s %s %s: %d %s\n%s\nwant %d application/json\n%s", tc.method, tc.path, tc.body, code, ctype, body, tc.code, tc.want)
		}
	}
	if fmt.Sprint(f.scaled) != "[hello 2]" {
		t.Errorf("scaled %v, want [hello 2]", f.scaled)
	}
}

// TestScaleRefusesOtherBodies: anything but {"count": N} within 4 KiB is a
// 400 that says so, and scales nothing; GET is 405.
func TestScaleRefusesOtherBodies(t *testing.T) {
	f := &fakeAPI{}
	base := serveAPI(t, f)
	for _, body := range []string{``, `not json`, `{}`, `{"count": null}`, `{"count": "2"}`, `{"count": 1.5}`, `[2]`,
		`{"count": 2, "pad": "` + strings.Repeat("x", 5000) + `"}`} {
		code, _, out := call(t, "POST", base+"/v1/groups/hello/scale", body)
		if code != http.StatusBadRequest || out != "{\n  \"error\": \"body must be {\\\"count\\\": N}\"\n}\n" {
			t.Errorf("POST scale %.40q: %d %s, want 400", body, code, out)
		}
	}
	if len(f.scaled) != 0 {
		t.Errorf("scaled %v by a refused body", f.scaled)
	}
	if code, _, _ := call(t, "GET", base+"/v1/groups/hello/scale", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("GET scale: %d, want 405", code)
	}
}

// TestScaleOfAnAutoscaledGroupSaysTheFloor: floor_until is in the answer
// only when the group has a floor.
func TestScaleOfAnAutoscaledGroupSaysTheFloor(t *testing.T) {
	f := &fakeAPI{floor: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	base := serveAPI(t, f)
	_, _, out := call(t, "POST", base+"/v1/groups/hello/scale", `{"count": 3}`)
	if want := "{\n  \"desired\": 3,\n  \"floor_until\": \"2026-01-02T03:04:05Z\",\n  \"group\": \"hello\"\n}\n"; out != want {
		t.Errorf("POST scale: %s, want %s", out, want)
	}
}

// TestReloadStatusCodes: 422 with the answer when nothing changed, 503
// while golb is not running; the answer is the body either way.
func TestReloadStatusCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("reload refused, nothing changed: the config has errors"), 422},
		{fmt.Errorf("reloading: %w", ErrUnavailable), 503},
	} {
		base := serveAPI(t, &fakeAPI{reloadErr: tc.err})
		code, _, out := call(t, "POST", base+"/v1/reload", "")
		if code != tc.code || !strings.Contains(out, `"error": "`+tc.err.Error()+`"`) {
			t.Errorf("POST /v1/reload with %v: %d %s, want %d with the error", tc.err, code, out, tc.code)
		}
	}
}

// TestStatsSeedError: a seed that cannot be encoded is a 500 with the error.
func TestStatsSeedError(t *testing.T) {
	base := serveAPI(t, &fakeAPI{seedErr: errors.New("encoding totals: boom")})
	if code, _, out := call(t, "GET", base+"/v1/stats", ""); code != 500 || out != "{\n  \"error\": \"encoding totals: boom\"\n}\n" {
		t.Errorf("GET /v1/stats: %d %s", code, out)
	}
}

// TestMetricsOnlyWithARegistry: /metrics is served from the gatherer given,
// and not at all without one.
func TestMetricsOnlyWithARegistry(t *testing.T) {
	base := serveAPI(t, &fakeAPI{})
	if code, ctype, _ := call(t, "GET", base+"/metrics", ""); code != 200 || !strings.HasPrefix(ctype, "text/plain") {
		t.Errorf("GET /metrics: %d %s", code, ctype)
	}
	mux := http.NewServeMux()
	NewAPI(&fakeAPI{}, nil).Register(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET /metrics without a registry: %d, want 404", rec.Code)
	}
}

package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestStatusShowsHealthError: `golb status` puts an unhealthy worker's
// health error in the NOTE column of its row, and nothing there for a
// healthy one.
func TestStatusShowsHealthError(t *testing.T) {
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/groups":
			_, _ = w.Write([]byte(`[{"name":"hello","driver":"process","desired":2,"running":2,"healthy":1}]`))
		case "/v1/workers":
			_, _ = w.Write([]byte(`[
{"id":"hello-1","group":"hello","driver":"process","address":"127.0.0.1:6000","status":"running","healthy":true,"requests":77,"failed":7,"mean_latency_ms":12.5},
{"id":"hello-2","group":"hello","driver":"process","address":"127.0.0.1:6001","status":"running","healthy":false,"health_error":"GET /healthz: 404 Not Found"}]`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer admin.Close()
	var out, errOut bytes.Buffer
	if code := cmdStatus([]string{"--admin", strings.TrimPrefix(admin.URL, "http://")}, &out, &errOut); code != exitOK {
		t.Fatalf("golb status exit %d: %s", code, errOut.String())
	}
	t.Logf("\n%s", out.String())
	rows := map[string][]string{}
	for _, line := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			rows[f[0]] = f
		}
	}
	if h := rows["WORKER"]; len(h) == 0 || h[len(h)-1] != "NOTE" {
		t.Fatalf("worker table header %q does not end in NOTE", h)
	}
	if got := strings.Join(rows["hello-2"][9:], " "); got != "GET /healthz: 404 Not Found" {
		t.Errorf("unhealthy worker's NOTE is %q, want its health error", got)
	}
	if r := rows["hello-1"]; len(r) != 9 || r[6] != "77" || r[7] != "7" || r[8] != "12.5ms" {
		t.Errorf("healthy worker's row is %q, want 9 columns with 77 requests, 7 failed, 12.5ms and no NOTE", r)
	}
}

// TestStatusShowsStatsStoreState pins a defect: while every stats flush
// failed (a damaged file), `golb status` showed nothing wrong. It now ends
// with the stats store's state: ok, or failing since when, with the requests
// not stored yet and the error.
func TestStatusShowsStatsStoreState(t *testing.T) {
	for _, tc := range []struct {
		store, want string
	}{
		{`{"sink":"sqlite","path":"/srv/worker-stats.db","state":"ok","unflushed_requests":4}`,
			"stats store: ok (sqlite /srv/worker-stats.db)"},
		{`{"sink":"sqlite","path":"/srv/worker-stats.db","state":"failing","failing_since":"2026-12-01T20:41:07Z",` +
			`"error":"writing stats to /srv/worker-stats.db: the file is damaged: database disk image is malformed (11)","failed_writes":60,"unflushed_requests":1234}`,
			"stats store: failing since 2026-12-01T20:41:07Z, 1234 requests unflushed: writing stats to /srv/worker-stats.db: the file is damaged: database disk image is malformed (11)"},
		{`{"sink":"postgres","database":"golb@db:5432/golbstats","instance":"web-1:/srv/.golb","state":"ok","unflushed_requests":4}`,
			"stats store: ok (postgres golb@db:5432/golbstats as web-1:/srv/.golb)"},
		{`{"sink":"postgres","database":"golb@db:5432/golbstats","instance":"web-1","state":"failing","unreachable":true,"failing_since":"2026-12-01T20:41:07Z",` +
			`"error":"writing stats to golb@db:5432/golbstats: database unreachable: dial error","failed_writes":3,"unflushed_requests":99}`,
			"stats: database unreachable since 2026-12-01T20:41:07Z, 99 requests kept in memory and retried: writing stats to golb@db:5432/golbstats: database unreachable: dial error"},
	} {
		var out, errOut bytes.Buffer
		code := cmdStatus([]string{"--admin", fakeAdmin(t, map[string]string{"/v1/stats/store": tc.store})}, &out, &errOut)
		if code != exitOK {
			t.Fatalf("golb status exit %d: %s", code, errOut.String())
		}
		t.Logf("\n%s", out.String())
		lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
		if last := lines[len(lines)-1]; last != tc.want {
			t.Errorf("last line of golb status:\n%s\nwant\n%s", last, tc.want)
		}
	}
}

// TestStatsMarksEachWorkersAgent: with a database several agents share,
// `golb stats` adds an AGENT column naming the agent that runs each worker;
// with SQLite (no instance) the table is as before.
func TestStatsMarksEachWorkersAgent(t *testing.T) {
	seed := `{"SuccessfulRequests":[{"total":3},{"a-1":1},{"b-1":2}],"FailedRequests":[{"total":0},{"a-1":0},{"b-1":0}],` +
		`"TotalRequests":[{"total":3},{"a-1":1},{"b-1":2}],"AverageResponseTime":[{"total":1},{"a-1":1},{"b-1":1}]}`
	for _, tc := range []struct {
		workers string
		want    []string
	}{
		{`[{"id":"a-1","instance":"web-1:/srv/.golb","total":1},{"id":"b-1","instance":"web-2:/srv/.golb","total":2}]`,
			[]string{"AGENT", "web-1:/srv/.golb", "web-2:/srv/.golb"}},
		{`[{"id":"a-1","total":1},{"id":"b-1","total":2}]`, nil},
	} {
		var out, errOut bytes.Buffer
		code := cmdStats([]string{"--admin", fakeAdmin(t, map[string]string{"/v1/stats": seed, "/v1/stats/workers": tc.workers})}, &out, &errOut)
		if code != exitOK {
			t.Fatalf("golb stats exit %d: %s", code, errOut.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("golb stats lacks %q:\n%s", w, out.String())
			}
		}
		if tc.want == nil && strings.Contains(out.String(), "AGENT") {
			t.Errorf("golb stats on SQLite has an AGENT column:\n%s", out.String())
		}
		if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 4 {
			t.Errorf("golb stats printed %d lines, want a header, 2 workers and the total:\n%s", len(lines), out.String())
		}
	}
}

// fakeAdmin serves bodies[path] as JSON (`[]` for /v1/groups and /v1/workers
// unless given), 404 for any other path, until t ends; it returns the address
// for --admin.
func fakeAdmin(t *testing.T, bodies map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := bodies[r.URL.Path]
		if !ok && (r.URL.Path == "/v1/groups" || r.URL.Path == "/v1/workers") {
			body, ok = `[]`, true
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestScaleGroupNameIsOneSegment pins a misdirected scale: the group name
// went into the URL unescaped, so `golb scale '../../v1/reload#' 7` was
// redirected to a GET of /v1/reload and reported "desired 7", and
// `golb scale 'nosuch/../a' 4` scaled group a. The name is one escaped
// path segment, and the client follows no redirect.
func TestScaleGroupNameIsOneSegment(t *testing.T) {
	var got []string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/groups/{name}/scale", func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.PathValue("name"))
		if r.PathValue("name") != "a" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":"no group named that"}`))
			return
		}
		_, _ = w.Write([]byte(`{}`))
	})
	admin := httptest.NewServer(mux) // ServeMux redirects unclean paths (301)
	defer admin.Close()
	addr := strings.TrimPrefix(admin.URL, "http://")
	for _, name := range []string{"../../v1/reload#", "nosuch/../a", "%61", "a/"} {
		var out, errOut bytes.Buffer
		if code := cmdScale([]string{"--admin", addr, name, "4"}, &out, &errOut); code != exitError {
			t.Errorf("golb scale %q 4: exit %d (%q), want an error", name, code, out.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := cmdScale([]string{"--admin", addr, "a", "4"}, &out, &errOut); code != exitOK {
		t.Errorf("golb scale a 4: exit %d: %s", code, errOut.String())
	}
	if want := []string{"../../v1/reload#", "nosuch/../a", "%61", "a/", "a"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("the server saw groups %q, want %q", got, want)
	}
}

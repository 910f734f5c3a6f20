package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/golb/golb/core"
)

func defaultAdmin() string {
	if a := os.Getenv("GOLB_ADMIN"); a != "" {
		return a
	}
	return "127.0.0.1:5040"
}

// httpClient talks to the admin API, which never redirects: a redirect
// (say, a path the server cleaned) is an answer, not followed, so a POST
// never turns into a GET of another endpoint.
var httpClient = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// call sends a request to the admin API and decodes a JSON answer into out
// (or copies it raw when out is an io.Writer).
func call(admin, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+admin+path, rd)
	if err != nil {
		return fmt.Errorf("admin API request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the golb agent at %s (is `golb run` running? use --admin or GOLB_ADMIN): %w", admin, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s", e.Error)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if w, ok := out.(io.Writer); ok {
		_, err = w.Write(raw)
		return err
	}
	return json.Unmarshal(raw, out)
}

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", stderr, "Usage: golb status [--json] [--admin ADDR]\n\nShows the groups and workers of the running agent.")
	asJSON := fs.Bool("json", false, "print JSON")
	admin := fs.String("admin", defaultAdmin(), "admin API address")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return exitUsage
	}
	var groups []core.GroupView
	var workers []core.WorkerView
	if err := call(*admin, "GET", "/v1/groups", nil, &groups); err != nil {
		fmt.Fprintln(stderr, "golb:", err)
		return exitError
	}
	if err := call(*admin, "GET", "/v1/workers", nil, &workers); err != nil {
		fmt.Fprintln(stderr, "golb:", err)
		return exitError
	}
	var store core.StatsStoreView
	if err := call(*admin, "GET", "/v1/stats/store", nil, &store); err != nil {
		store = core.StatsStoreView{State: "unknown", Error: err.Error()}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"groups": groups, "workers": workers, "stats_store": store})
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tDRIVER\tDESIRED\tRUNNING\tHEALTHY\tNOTE")
	for _, g := range groups {
		note := ""
		if g.Failing {
			note = g.Reason
		} else if g.RolloutStopped != "" {
			note = g.RolloutStopped
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", g.Name, g.Driver, g.Desired, g.Running, g.Healthy, note)
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	if autoscalerTable(stdout, groups) {
		fmt.Fprintln(stdout)
	}
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tGROUP\tDRIVER\tADDRESS\tSTATUS\tHEALTH\tREQUESTS\tFAILED\tMEAN\tNOTE")
	for _, w := range workers {
		health := "unhealthy"
		if w.Healthy {
			health = "healthy"
		}
		note := w.HealthError
		if w.Reason != "" {
			note = w.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%.1fms\t%s\n", w.ID, w.Group, w.Driver, w.Address, w.Status, health, w.Requests, w.Failed, w.MeanLatencyMS, note)
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, statsStoreLine(store))
	if line := reloadLine(*admin); line != "" {
		fmt.Fprintln(stdout, line)
	}
	return exitOK
}

// statsStoreLine is the stats store's line in `golb status`:
//
//	stats store: ok (sqlite worker-stats.db)
//	stats store: failing since 2026-12-01T20:41:07Z, 1234 requests unflushed: writing stats to …
//	stats store: ok (postgres golb@db:5432/golbstats as web-1:/srv/golb/.golb)
//	stats: database unreachable since 2026-12-01T20:41:07Z, 1234 requests kept in memory and retried: …
func statsStoreLine(s core.StatsStoreView) string {
	where := strings.TrimSpace(s.Sink + " " + s.Path)
	if s.Database != "" {
		where = fmt.Sprintf("%s %s as %s", s.Sink, s.Database, s.Instance)
	}
	switch s.State {
	case "ok":
		return fmt.Sprintf("stats store: ok (%s)", where)
	case "failing":
		if s.Unreachable {
			return fmt.Sprintf("stats: database unreachable since %s, %d requests kept in memory and retried: %s", s.FailingSince, s.UnflushedRequests, s.Error)
		}
		return fmt.Sprintf("stats store: failing since %s, %d requests unflushed: %s", s.FailingSince, s.UnflushedRequests, s.Error)
	case "unknown":
		return "stats store: unknown: " + s.Error
	}
	return fmt.Sprintf("stats store: %s (%s)", s.State, where)
}

func cmdScale(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("scale", stderr, "Usage: golb scale [--admin ADDR] GROUP N\n\nSets GROUP's desired worker count (within its scale block's bounds).")
	admin := fs.String("admin", defaultAdmin(), "admin API address")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return exitUsage
	}
	n, err := strconv.Atoi(fs.Arg(1))
	if err != nil || n < 0 {
		fmt.Fprintf(stderr, "golb: N must be a whole number >= 0, not %q\n", fs.Arg(1))
		return exitUsage
	}
	var out map[string]any
	if err := call(*admin, "POST", "/v1/groups/"+url.PathEscape(fs.Arg(0))+"/scale", map[string]int{"count": n}, &out); err != nil {
		fmt.Fprintln(stderr, "golb:", err)
		return exitError
	}
	fmt.Fprintf(stdout, "group %s: desired %d\n", fs.Arg(0), n)
	if until, ok := out["floor_until"].(string); ok {
		fmt.Fprintf(stdout, "group %s is autoscaled: it keeps at least %d workers until %s (one stable window), then the autoscaler decides again\n", fs.Arg(0), n, until)
	}
	return exitOK
}

func cmdStats(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("stats", stderr, "Usage: golb stats [--json] [--admin ADDR]\n\nPer-worker request stats, across golb restarts. --json prints the seed's JSON.")
	asJSON := fs.Bool("json", false, "print the seed's JSON shape")
	admin := fs.String("admin", defaultAdmin(), "admin API address")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return exitUsage
	}
	var buf bytes.Buffer
	if err := call(*admin, "GET", "/v1/stats", nil, &buf); err != nil {
		fmt.Fprintln(stderr, "golb:", err)
		return exitError
	}
	if *asJSON {
		stdout.Write(buf.Bytes())
		if !bytes.HasSuffix(buf.Bytes(), []byte("\n")) {
			fmt.Fprintln(stdout)
		}
		return exitOK
	}
	rows, err := seedRows(buf.Bytes())
	if err != nil {
		fmt.Fprintln(stderr, "golb: decoding stats:", err)
		return exitError
	}
	agents := statsAgents(*admin)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	if agents == nil {
		fmt.Fprintln(tw, "WORKER\tSUCCESSFUL\tFAILED\tTOTAL\tMEAN MS\t")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f\t\n", r.id, r.ok, r.failed, r.total, r.mean)
		}
		tw.Flush()
		return exitOK
	}
	// A database several agents share: say which agent runs each worker.
	fmt.Fprintln(tw, "WORKER\tSUCCESSFUL\tFAILED\tTOTAL\tMEAN MS\tAGENT")
	for _, r := range rows {
		agent := agents[r.id]
		if agent == "" {
			agent = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f\t%s\n", r.id, r.ok, r.failed, r.total, r.mean, agent)
	}
	tw.Flush()
	return exitOK
}

// statsAgents maps each worker to the agent (stats instance) that runs it,
// from GET /v1/stats/workers; nil when no worker has one (SQLite, or an agent
// without that endpoint).
func statsAgents(admin string) map[string]string {
	var views []core.StatsWorkerView
	if err := call(admin, "GET", "/v1/stats/workers", nil, &views); err != nil {
		return nil
	}
	var out map[string]string
	for _, v := range views {
		if v.Instance != "" {
			if out == nil {
				out = map[string]string{"total": ""}
			}
			out[v.ID] = v.Instance
		}
	}
	return out
}

type statRow struct {
	id                string
	ok, failed, total uint64
	mean              float64
}

// seedRows turns the seed's JSON (four arrays of one-key objects, "total"
// first) into table rows, workers in the order given and the total last.
func seedRows(raw []byte) ([]statRow, error) {
	var seed map[string][]map[string]json.Number
	if err := json.Unmarshal(raw, &seed); err != nil {
		return nil, err
	}
	var order []string
	byID := map[string]*statRow{}
	get := func(id string) *statRow {
		if r, ok := byID[id]; ok {
			return r
		}
		r := &statRow{id: id}
		byID[id] = r
		order = append(order, id)
		return r
	}
	for key, arr := range seed {
		for _, obj := range arr {
			for id, n := range obj {
				r := get(id)
				switch key {
				case "SuccessfulRequests":
					v, _ := strconv.ParseUint(n.String(), 10, 64)
					r.ok = v
				case "FailedRequests":
					v, _ := strconv.ParseUint(n.String(), 10, 64)
					r.failed = v
				case "TotalRequests":
					v, _ := strconv.ParseUint(n.String(), 10, 64)
					r.total = v
				case "AverageResponseTime":
					r.mean, _ = n.Float64()
				}
			}
		}
	}
	var rows []statRow
	for _, id := range order {
		if id != "total" {
			rows = append(rows, *byID[id])
		}
	}
	if t, ok := byID["total"]; ok {
		rows = append(rows, *t)
	}
	return rows, nil
}

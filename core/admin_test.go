package core

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golb/golb/core/state"
)

var httpc = &http.Client{Timeout: 10 * time.Second}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := httpc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET %s: %s %s", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decoding: %v", url, err)
	}
}

// post sends body and returns the status and the decoded JSON answer.
func post(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := httpc.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("POST %s %q: %s, answer is not a JSON object: %q", url, body, resp.Status, raw)
	}
	return resp.StatusCode, out
}

// environHas reports whether process pid has kv in its environment.
func environHas(pid int, kv string) bool {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	return err == nil && bytes.Contains(append([]byte{0}, env...), []byte("\x00"+kv+"\x00"))
}

// TestAdminAPI: the admin API of a running agent lists groups, workers (with
// their pid) and drivers, scales within bounds with the documented status
// codes, and exports golb_workers and golb_driver_plugin_up.
func TestAdminAPI(t *testing.T) {
	g, h := uniq("adm"), uniq("fix")
	killProcs(t, g, h)
	admin := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1))
	scaled := strings.Replace(groupHCL(g, 2, freePorts(t, 10), "1ms"), "  app {", "  scale {\n    min = 1\n    max = 3\n    scale_down_delay = \"1h\"\n  }\n  app {", 1)
	src := header(t.TempDir(), admin) + scaled + groupHCL(h, 1, freePorts(t, 10), "1ms") + fmt.Sprintf(`
balancer "front" {
  group = %q
  port  = %d
}
`, g, freePorts(t, 1))
	ta := startAgent(t, parseConfig(t, src))
	ta.waitWorkers(t, 60*time.Second, "3 running workers", func(ws []*state.Worker) bool {
		return len(inGroup(ws, g, state.StatusRunning)) == 2 && len(inGroup(ws, h, state.StatusRunning)) == 1
	})
	base := "http://" + admin

	var groups []GroupView
	getJSON(t, base+"/v1/groups", &groups)
	want := map[string]GroupView{
		g: {Name: g, Driver: "process", Desired: 2, Running: 2, Min: 1, Max: 3},
		h: {Name: h, Driver: "process", Desired: 1, Running: 1, Min: 0, Max: 1000},
	}
	if len(groups) != 2 {
		t.Fatalf("GET /v1/groups: %+v", groups)
	}
	for _, gv := range groups {
		w := want[gv.Name]
		gv.Healthy = 0 // health depends on the checker's timing; not compared
		if (gv.Autoscaler != nil) != (gv.Name == g) {
			t.Errorf("GET /v1/groups: group %s has autoscaler %+v; want one for the scaled group only", gv.Name, gv.Autoscaler)
		}
		gv.Autoscaler = nil
		if gv != w {
			t.Errorf("GET /v1/groups: %+v, want %+v", gv, w)
		}
	}

	var workers []WorkerView
	getJSON(t, base+"/v1/workers", &workers)
	if len(workers) != 3 {
		t.Fatalf("GET /v1/workers: %+v", workers)
	}
	for _, w := range workers {
		pid, _ := strconv.Atoi(w.Details["pid"])
		if w.Status != "running" || w.Driver != "process" || !strings.HasPrefix(w.ID, w.Group+"-") || w.Address == "" {
			t.Errorf("worker view: %+v", w)
		}
		if pid == 0 || !alive(pid) || !environHas(pid, "GOLB_WORKER_ID="+w.ID) {
			t.Errorf("worker %s: details pid %q is not its process (alive %v; details %v; worker processes now %v)",
				w.ID, w.Details["pid"], alive(pid), w.Details, workerProcs(g, h))
		}
		if _, err := time.Parse(time.RFC3339, w.StartedAt); err != nil {
			t.Errorf("worker %s: started_at %q: %v", w.ID, w.StartedAt, err)
		}
	}

	var ds []DriverView
	getJSON(t, base+"/v1/drivers", &ds)
	if len(ds) != 1 || ds[0].Name != "process" || !ds[0].Running || !ds[0].Healthy || !alive(ds[0].PID) {
		t.Errorf("GET /v1/drivers: %+v", ds)
	}

	scale := base + "/v1/groups/" + g + "/scale"
	for _, body := range []string{``, `not json`, `{}`, `{"count": null}`, `{"count": "2"}`, `{"count": 1.5}`, `[2]`,
		`{"count": 2, "pad": "` + strings.Repeat("x", 5000) + `"}`} {
		if code, out := post(t, scale, body); code != http.StatusBadRequest || out["error"] == "" {
			t.Errorf("POST scale %.40q: %d %v, want 400 with an error", body, code, out)
		}
	}
	if code, out := post(t, base+"/v1/groups/nosuch/scale", `{"count": 1}`); code != http.StatusNotFound || !strings.Contains(fmt.Sprint(out["error"]), "nosuch") {
		t.Errorf("POST scale of an unknown group: %d %v, want 404 naming it", code, out)
	}
	for _, n := range []int{0, 4} {
		if code, out := post(t, scale, fmt.Sprintf(`{"count": %d}`, n)); code != http.StatusUnprocessableEntity || !strings.Contains(fmt.Sprint(out["error"]), "[1, 3]") {
			t.Errorf("POST scale to %d outside [1, 3]: %d %v, want 422 with the bounds", n, code, out)
		}
	}
	if code, out := post(t, scale, `{"count": 3}`); code != http.StatusOK || out["desired"] != 3.0 {
		t.Errorf("POST scale to 3: %d %v", code, out)
	}
	if gr, _ := ta.Store().Group(nil, g); gr.Desired != 3 {
		t.Errorf("desired after POST scale: %d, want 3", gr.Desired)
	}
	if resp, err := httpc.Get(scale); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET on the scale endpoint: %v %v, want 405", resp, err)
	} else {
		resp.Body.Close()
	}
	ta.waitWorkers(t, 60*time.Second, "the third worker running", func(ws []*state.Worker) bool {
		return len(inGroup(ws, g, state.StatusRunning)) == 3
	})

	resp, err := httpc.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metrics := string(raw)
	for _, line := range []string{
		fmt.Sprintf(`golb_workers{group=%q,status="running"} 3`, g),
		fmt.Sprintf(`golb_workers{group=%q,status="running"} 1`, h),
		fmt.Sprintf(`golb_workers{group=%q,status="failed"} 0`, g),
		fmt.Sprintf(`golb_group_desired_workers{group=%q} 3`, g),
		`golb_driver_plugin_up{driver="process"} 1`,
		`golb_driver_plugin_restarts_total{driver="process"} 0`,
	} {
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("GET /metrics lacks %q", line)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", metrics)
	}

	ta.stop(t)
	if _, err := httpc.Get(base + "/v1/groups"); err == nil {
		t.Error("the admin API still answers after Run returned")
	}
	if left := workerProcs(g, h); len(left) != 0 {
		t.Fatalf("worker processes left after Run returned: %v", left)
	}
}

func jsonDecode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

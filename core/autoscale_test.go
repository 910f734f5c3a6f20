package core

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/golb/golb/core/autoscale"
	"github.com/golb/golb/core/state"
)

// TestAutoscalerFromZeroHoldsAndRecords: a request to a scaled group at
// zero is held, scales the group up at once and is answered 200; the
// decision is an event of GET /v1/groups/NAME/events and the group's
// autoscaler view; Scale on the group sets a floor for one stable window
// and is an event too.
func TestAutoscalerFromZeroHoldsAndRecords(t *testing.T) {
	g := uniq("asz")
	killProcs(t, g)
	admin := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1))
	lb := freePorts(t, 1)
	grp := strings.Replace(groupHCL(g, 0, freePorts(t, 4), "1ms"), "  count  = 0\n",
		"  scale {\n    min = 0\n    max = 3\n    stable_window = \"20s\"\n  }\n", 1)
	src := header(t.TempDir(), admin) + grp + fmt.Sprintf("balancer \"front\" {\n  group = %q\n  port  = %d\n}\n", g, lb)
	ta := startAgent(t, parseConfig(t, src))
	base := "http://" + admin
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := httpc.Get(base + "/v1/groups")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admin API does not answer: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	var events []struct {
		Kind string `json:"kind"`
		autoscale.Decision
	}
	getJSON(t, base+"/v1/groups/"+g+"/events", &events)
	if len(events) != 0 {
		t.Fatalf("events before any request: %+v", events)
	}
	start := time.Now()
	resp, err := httpc.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("the held request: %d %s", resp.StatusCode, body)
	}
	t.Logf("the request to a group at zero answered 200 after %v", time.Since(start).Round(time.Millisecond))

	getJSON(t, base+"/v1/groups/"+g+"/events", &events)
	if len(events) == 0 || events[len(events)-1].Kind != "scale" || events[len(events)-1].From != 0 || events[len(events)-1].To != 1 ||
		events[len(events)-1].Direction != autoscale.Up || events[len(events)-1].Reason == "" {
		t.Fatalf("events after scaling from zero: %+v", events)
	}

	if err := ta.Scale(g, 3); err != nil {
		t.Fatal(err)
	}
	until := ta.FloorUntil(g)
	if d := time.Until(until); d < 15*time.Second || d > 20*time.Second {
		t.Errorf("FloorUntil is %v from now, want one stable window (20s)", d)
	}
	ta.waitGroup(t, g, 5*time.Second, "desired 3", func(sg *state.Group) bool { return sg.Desired == 3 })
	var groups []GroupView
	getJSON(t, base+"/v1/groups", &groups)
	if len(groups) != 1 || groups[0].Autoscaler == nil || groups[0].Autoscaler.LastDecision == nil ||
		!strings.Contains(groups[0].Autoscaler.LastDecision.Reason, "golb scale") || groups[0].Autoscaler.FloorUntil.IsZero() {
		t.Errorf("the group's autoscaler view after Scale: %+v", groups[0].Autoscaler)
	}
	time.Sleep(1500 * time.Millisecond) // decisions in between keep the floor
	if sg, _ := ta.Store().Group(nil, g); sg.Desired != 3 {
		t.Errorf("desired %d within the floor, want 3", sg.Desired)
	}

	resp, err = httpc.Get(base + "/v1/groups/nosuch/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("events of an unknown group: %d, want 404", resp.StatusCode)
	}
}

// scaledAtZero is a config of group g at min 0 with the scale block's
// extra lines, behind one balancer on port lb.
func scaledAtZero(t *testing.T, g string, lb int, extra string) string {
	grp := strings.Replace(groupHCL(g, 0, freePorts(t, 4), "1ms"), "  count  = 0\n",
		"  scale {\n    min = 0\n    max = 3\n"+extra+"  }\n", 1)
	return header(t.TempDir(), "") + grp + fmt.Sprintf("balancer \"front\" {\n  group = %q\n  port  = %d\n}\n", g, lb)
}

// waitListening waits until 127.0.0.1:port accepts connections.
func waitListening(t *testing.T, port int) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("a listener on port %d", port), func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// TestAutoscalerAtZeroWakesOnRequestsRefusedAtOnce: with hold_max = 0 a
// group at zero answers 503 at once, so its in-flight count is always 0:
// on the inflight metric it stayed at zero forever.
func TestAutoscalerAtZeroWakesOnRequestsRefusedAtOnce(t *testing.T) {
	g := uniq("asr")
	killProcs(t, g)
	lb := freePorts(t, 1)
	ta := startAgent(t, parseConfig(t, scaledAtZero(t, g, lb, "    hold_max = 0\n")))
	waitListening(t, lb)
	// A client that tries again, as Retry-After asks: the feeder counts
	// from its first sample, so a request before it is not seen.
	deadline := time.Now().Add(10 * time.Second)
	for {
		start := time.Now()
		resp, err := httpc.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			break
		}
		if resp.StatusCode != 503 || time.Since(start) > 5*time.Second {
			t.Fatalf("a request at zero with hold_max = 0: %d after %v, want 503 at once", resp.StatusCode, time.Since(start))
		}
		if time.Now().After(deadline) {
			sg, _ := ta.Store().Group(nil, g)
			t.Fatalf("10 s of requests refused at zero: desired %d, want the group woken", sg.Desired)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestAutoscalerAtZeroOnTargetRPSServesHeldRequests: on target_rps the
// feeder counts completed requests, so a request held at zero added
// nothing to rps: the group stayed at zero and the request got its 503
// after hold_timeout.
func TestAutoscalerAtZeroOnTargetRPSServesHeldRequests(t *testing.T) {
	g := uniq("asq")
	killProcs(t, g)
	lb := freePorts(t, 1)
	startAgent(t, parseConfig(t, scaledAtZero(t, g, lb, "    target_rps = 100\n    hold_timeout = \"20s\"\n")))
	waitListening(t, lb)
	start := time.Now()
	resp, err := httpc.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/hello", lb))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a request held at zero on target_rps: %d %s after %v, want 200", resp.StatusCode, body, time.Since(start).Round(time.Millisecond))
	}
}

package admin

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/golb/golb/internal/testutil/browsertest"
)

// hostile is markup that would run or show if the page rendered it.
func hostile(field string) string {
	return fmt.Sprintf(`<img src=x onerror="document.title='%s'"><script>document.title='%s'</script><b>%s</b>`, field, field, field)
}

// TestPageEscapesEverything loads the page in Chromium over a state whose
// every string is markup (worker ids, groups, health errors, exits and last
// words, plugin errors, autoscaler reasons, events): all of it is shown as
// text, no element is made of it, nothing runs, and the console stays clean.
func TestPageEscapesEverything(t *testing.T) {
	b := browsertest.New(t)
	st := fleet()
	st.Groups[0].Name, st.Groups[0].Reason, st.Groups[0].Failing = hostile("group"), hostile("reason"), true
	st.Groups[0].Scale = &Scale{Mode: hostile("mode"), Rule: hostile("rule"), Last: &Decision{Time: time.Now(), From: 1, To: 2, Reason: hostile("decision")}}
	for i := range st.Workers {
		st.Workers[i].Group = st.Groups[0].Name
	}
	st.Workers[0].ID, st.Workers[0].Healthy, st.Workers[0].HealthError = hostile("id"), false, hostile("health")
	st.Workers[1].Status, st.Workers[1].Exit, st.Workers[1].LastWords = "failed", hostile("exit"), hostile("words")
	st.Drivers[0].Name, st.Drivers[0].Error = hostile("driver"), hostile("plugin")
	st.Balancers[0].Name, st.Balancers[0].Group, st.Balancers[0].Addrs = hostile("balancer"), st.Groups[0].Name, []string{hostile("addr")}
	f := newFake(st)
	base, _ := serve(t, f)

	b.Do(chromedp.Navigate(base + "/"))
	b.Wait(10*time.Second, "the stream connected", `document.getElementById('conn').textContent === 'live'`)
	b.Wait(10*time.Second, "the rows", `document.querySelectorAll('#workers tbody tr').length === 2`)
	// An event as it happens: the worker's exit is in the log.
	f.set(func(st *State) { st.Workers[0].Status, st.Workers[0].LastWords = "failed", hostile("event") })
	b.Wait(10*time.Second, "the exit event", `document.getElementById('events').textContent.includes("document.title='event'")`)
	time.Sleep(200 * time.Millisecond)

	text := browsertest.Eval[string](b, `document.body.textContent`)
	for _, field := range []string{"group", "reason", "mode", "rule", "decision", "id", "exit", "driver", "plugin", "balancer", "addr", "event"} {
		if !strings.Contains(text, hostile(field)) {
			t.Errorf("the page does not show the %s as text", field)
		}
	}
	if n := browsertest.Eval[int](b, `document.querySelectorAll('main img, main script, main b').length`); n != 0 {
		t.Errorf("the page made %d elements of the state's strings", n)
	}
	if title := browsertest.Eval[string](b, `document.title`); title != "golb" {
		t.Errorf("a script of the state's strings ran: the title is %q", title)
	}
	if errs := b.ConsoleErrors(); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}

// TestOtherSitesCannotDrive: a page of another origin (another port of
// 127.0.0.1) in a real Chromium tries what CSRF would — a JSON fetch (with
// its preflight), a no-cors text POST, a form POST, reading the stream —
// and none of it drains a worker or reads a byte.
func TestOtherSitesCannotDrive(t *testing.T) {
	b := browsertest.New(t)
	f := newFake(fleet())
	base, _ := serve(t, f)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><title>evil</title><form id=f method=POST action="%s/v1/workers/hello-a/drain" enctype="text/plain"><input name='{"a":"' value='"}'></form>`, base)
	}))
	defer evil.Close()
	b.Do(chromedp.Navigate(evil.URL + "/"))

	attempts := map[string]string{
		"json fetch":   `fetch(%q, {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"}).then(r => "status " + r.status, e => "refused")`,
		"no-cors post": `fetch(%q, {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: "{}"}).then(r => "opaque", e => "refused")`,
		"read stream":  `fetch(%q.replace(/workers.*/, "stream")).then(r => r.text(), e => "refused")`,
	}
	for name, js := range attempts {
		got := browsertest.Eval[string](b, fmt.Sprintf(js, base+"/v1/workers/hello-a/drain"), chromedp.EvalAwaitPromise)
		if got != "refused" && got != "opaque" {
			t.Errorf("%s from another origin: %q", name, got)
		}
	}
	b.Do(chromedp.Evaluate[chromedp.Void](`document.getElementById('f').submit()`))
	time.Sleep(time.Second)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.drained) != 0 {
		t.Errorf("another origin's page drained %v", f.drained)
	}
}

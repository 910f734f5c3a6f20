package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/golb/golb/core"
	"github.com/golb/golb/core/admin"
	"github.com/golb/golb/internal/testutil"
	"github.com/golb/golb/internal/testutil/browsertest"
)

// The dashboard tests use ports 17000-18999: a sub-range of cmd/golb's
// that no other test of it uses.
func dashPorts(t testing.TB) ports {
	base := testutil.PortRange(t, 17000, 19000, 20)
	return ports{worker: base, lb: base + 12, admin: base + 16}
}

// xss is what the noisy group's worker writes before it exits: the page
// must show it as text.
const xss = `<img src=x onerror=alert(1)><b>bold</b>`

// dashConfig is a group of 3 built-in workers behind one balancer, a group
// whose worker writes xss to stderr and exits (a crash loop), and an
// autoscaled group behind another balancer.
func dashConfig(t testing.TB, dir string, p ports) string {
	t.Helper()
	cfg := fmt.Sprintf(`
data_dir = ".golb"
admin { address = "127.0.0.1:%d" }
group "hello" {
  driver = "process"
  count  = 3
  port   = %d
  app {
    avg_delay    = "20ms"
    failure_rate = 0.05
  }
  health_check {
    interval = "1s"
    timeout  = "500ms"
  }
}
group "noisy" {
  driver = "process"
  count  = 1
  port   = %d
  config { command = ["sh", "-c", "echo '%s' >&2; sleep 2; exit 3"] }
}
group "auto" {
  driver = "process"
  port   = %d
  app { avg_delay = "60ms" }
  scale {
    min              = 1
    max              = 3
    target_inflight  = 1
    stable_window    = "6s"
    panic_window     = "2s"
    scale_down_delay = "5s"
  }
}
balancer "web" {
  group     = "hello"
  port      = %d
  listeners = 1
}
balancer "api" {
  group     = "auto"
  port      = %d
  listeners = 1
}
stats { path = "stats.db" }
`, p.admin, p.worker, p.worker+8, xss, p.worker+4, p.lb, p.lb+1)
	path := filepath.Join(dir, "golb.hcl")
	mustWrite(t, path, cfg)
	return path
}

// load sends GET /api/v1/hello to url at about rps requests a second until
// ctx ends, and counts the answers.
func load(ctx context.Context, url string, rps int) *atomic.Int64 {
	var n atomic.Int64
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	sem := make(chan struct{}, 64)
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(rps))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case sem <- struct{}{}:
			default:
				continue // 64 in flight: the agent is slower than the rate
			}
			go func() {
				defer func() { <-sem }()
				if resp, err := c.Get(url + "/api/v1/hello"); err == nil {
					resp.Body.Close()
					n.Add(1)
				}
			}()
		}
	}()
	return &n
}

// rowsJS lists the worker table's rows as "id status group".
const rowsJS = `[...document.querySelectorAll('#workers tbody tr')].map(r => r.dataset.id + ' ' + r.children[4].textContent + ' ' + r.children[1].textContent)`

// TestDashboard drives the page in headless Chromium against a golb under
// load: the workers listed, the requests chart growing, a SIGKILLed worker
// gone and replaced, the scale control and the drain button working, a
// worker's HTML shown as text, no console error; it saves a screenshot
// (to docs/dashboard.png with GOLB_UPDATE_SCREENSHOT=1).
func TestDashboard(t *testing.T) {
	b := browsertest.New(t)
	dir := t.TempDir()
	pt := dashPorts(t)
	p := golb(t, dir, pt.adminAddr(), "run", dashConfig(t, dir, pt))
	waitHealthyIn(p, "hello", 3, 60*time.Second)
	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	sent := load(ctx, "http://127.0.0.1:"+strconv.Itoa(pt.lb), 100)
	load(ctx, "http://127.0.0.1:"+strconv.Itoa(pt.lb+1), 40) // about 2.4 in flight: 3 workers wanted

	base := "http://" + pt.adminAddr()
	b.Do(chromedp.Navigate(base + "/"))
	b.Wait(20*time.Second, "the stream connected", `document.getElementById('conn').textContent === 'live'`)

	// Every worker is listed: the table's rows are the admin API's
	// workers, each with its status (read again until both agree, as the
	// autoscaled and the crash-looping groups change meanwhile).
	b.Wait(10*time.Second, "the 3 hello workers running", helloHealthyJS+` === 3`)
	var api, page []string
	if _, ok := within(20*time.Second, func() bool {
		api = api[:0]
		for _, w := range p.workers() {
			api = append(api, w.ID+" "+w.Status+" "+w.Group)
		}
		page = browsertest.Eval[[]string](b, rowsJS+`.filter(r => !r.includes(' gone '))`)
		slices.Sort(api)
		slices.Sort(page)
		return len(api) >= 5 && slices.Equal(api, page)
	}); !ok {
		t.Errorf("the worker table:\n%s\nthe admin API's workers:\n%s", strings.Join(page, "\n"), strings.Join(api, "\n"))
	}

	// The requests chart's data grows under load.
	before := browsertest.Eval[float64](b, `golbDashboard.requests('web')`)
	b.Wait(20*time.Second, "the requests chart growing", fmt.Sprintf(`golbDashboard.requests('web') > %v + 50 && +document.querySelector('canvas.requests-chart').dataset.points > 3`, before))

	// A SIGKILLed worker shows gone, and its replacement appears.
	victim := healthyIn(p, "hello")[0]
	if err := syscall.Kill(pidOf(victim), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	b.Wait(30*time.Second, victim.ID+" gone", fmt.Sprintf(`[...document.querySelectorAll('#workers tbody tr')].some(r => r.dataset.id === %q && /^(gone|failed)$/.test(r.children[4].textContent))`, victim.ID))
	gone := time.Since(killed)
	b.Wait(30*time.Second, "a replacement", helloHealthyJS+` >= 3`)
	t.Logf("dashboard: SIGKILLed worker shown gone after %v, its replacement healthy after %v", gone.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	b.Wait(10*time.Second, "the replaced event", fmt.Sprintf(`document.getElementById('events').textContent.includes(%q)`, "replaces "+victim.ID))

	// The scale control changes the running count.
	card := `#groups [data-group="hello"] `
	b.Do(chromedp.SetValue(chromedp.CSS(card+"input"), "4"), chromedp.Click(chromedp.CSS(card+"button")))
	b.Wait(60*time.Second, "4 hello workers running", `document.querySelector('`+card+`').dataset.running === '4'`)
	waitHealthyIn(p, "hello", 4, 30*time.Second)

	// The drain button drains a worker; its group replaces it.
	drained := healthyIn(p, "hello")[0].ID
	b.Do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`#workers tr[data-id=%q] button.drain`, drained))))
	b.Wait(30*time.Second, drained+" drained", fmt.Sprintf(`document.getElementById('events').textContent.includes(%q)`, drained+" draining"))

	// The autoscaled group shows its mode and its last decision.
	b.Wait(60*time.Second, "the autoscaler's decision", `/autoscaler: (stable|panic).*last decision .*: \d+ → \d+/.test(document.querySelector('#groups [data-group="auto"]').textContent)`)

	// The noisy worker's last words are text, not markup.
	b.Wait(30*time.Second, "the noisy worker's last words", fmt.Sprintf(`document.body.textContent.includes(%q)`, xss))
	if n := browsertest.Eval[int](b, `document.querySelectorAll('main img, main b').length`); n != 0 {
		t.Errorf("the page made %d elements of a worker's output", n)
	}

	time.Sleep(2 * time.Second) // the charts draw a little more for the picture
	if os.Getenv("GOLB_UPDATE_SCREENSHOT") == "1" {
		// The README's picture: a minute and a half more, with a step in
		// the load half-way, so that the charts have a history to show.
		time.Sleep(45 * time.Second)
		load(ctx, "http://127.0.0.1:"+strconv.Itoa(pt.lb), 100)
		time.Sleep(45 * time.Second)
	}
	saveScreenshot(t, b.Screenshot())
	if errs := b.ConsoleErrors(); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
	t.Logf("load: %d answers", sent.Load())
}

// saveScreenshot writes png under $GOLB_ARTIFACTS (or the temp dir) and,
// with GOLB_UPDATE_SCREENSHOT=1, to docs/dashboard.png.
func saveScreenshot(t testing.TB, png []byte) {
	t.Helper()
	dir := os.Getenv("GOLB_ARTIFACTS")
	if dir == "" {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, "golb-dashboard.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("saving the screenshot: %v", err)
	} else {
		t.Logf("screenshot: %s (%d bytes)", path, len(png))
	}
	if os.Getenv("GOLB_UPDATE_SCREENSHOT") == "1" {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "dashboard.png"), png, 0o644); err != nil {
			t.Errorf("updating docs/dashboard.png: %v", err)
		}
	}
}

// within polls cond every 100 ms until it holds or timeout passes.
func within(timeout time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < timeout {
		if cond() {
			return time.Since(start), true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return timeout, false
}

// helloHealthyJS counts the page's healthy rows of group hello.
const helloHealthyJS = `[...document.querySelectorAll('#workers tbody tr.st-healthy')].filter(r => r.children[1].textContent === 'hello').length`

// healthyIn returns group's running, healthy workers, by the admin API.
func healthyIn(p *golbProc, group string) []core.WorkerView {
	var out []core.WorkerView
	for _, w := range p.healthyWorkers() {
		if w.Group == group {
			out = append(out, w)
		}
	}
	return out
}

// waitHealthyIn waits for n running, healthy workers in group.
func waitHealthyIn(p *golbProc, group string, n int, timeout time.Duration) {
	p.t.Helper()
	eventually(p.t, timeout, fmt.Sprintf("%d healthy %s workers", n, group), func() bool { return len(healthyIn(p, group)) == n })
}

// TestDashboardCPU measures golb's CPU at the same load with no page open
// and with one, in turns (GOLB_MEASURE=dashboard; it takes a minute and a
// half), and the page's weight. It logs the figures; nothing is asserted about them.
func TestDashboardCPU(t *testing.T) {
	if os.Getenv("GOLB_MEASURE") != "dashboard" {
		t.Skip("set GOLB_MEASURE=dashboard to measure")
	}
	html, js, css := admin.PageWeight()
	t.Logf("page weight: %d bytes (HTML %d, JS %d, CSS %d), uncompressed", html+js+css, html, js, css)
	b := browsertest.New(t)
	dir := t.TempDir()
	pt := dashPorts(t)
	p := golb(t, dir, pt.adminAddr(), "run", dashConfig(t, dir, pt))
	waitHealthyIn(p, "hello", 3, 60*time.Second)
	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	const rps, span = 200, 10 * time.Second
	load(ctx, "http://127.0.0.1:"+strconv.Itoa(pt.lb), rps)
	time.Sleep(5 * time.Second) // warm up
	// Alternate, so that the other load of a shared machine falls on both.
	pid := p.cmd.Process.Pid
	var none, one []float64
	for range 3 {
		b.Do(chromedp.Navigate("about:blank"))
		time.Sleep(2 * time.Second)
		none = append(none, cpuOver(t, pid, span))
		b.Do(chromedp.Navigate("http://" + pt.adminAddr() + "/"))
		b.Wait(20*time.Second, "the stream connected", `document.getElementById('conn').textContent === 'live'`)
		time.Sleep(2 * time.Second)
		one = append(one, cpuOver(t, pid, span))
	}
	mean := func(xs []float64) float64 {
		var s float64
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	t.Logf("golb agent CPU at %d req/s, 3 rounds of %v each: %.1f%% of a core with no page %.1f, %.1f%% with one page open %.1f (%+.1f points)",
		rps, span, mean(none), none, mean(one), one, mean(one)-mean(none))
}

// cpuOver is the CPU process pid used over d, in percent of one core.
func cpuOver(t testing.TB, pid int, d time.Duration) float64 {
	t.Helper()
	ticks := func() float64 {
		raw := mustRead(t, fmt.Sprintf("/proc/%d/stat", pid))
		f := strings.Fields(raw[strings.LastIndexByte(raw, ')')+2:])
		u, _ := strconv.ParseFloat(f[11], 64) // utime, field 14
		s, _ := strconv.ParseFloat(f[12], 64) // stime, field 15
		return u + s
	}
	start, t0 := ticks(), time.Now()
	time.Sleep(d)
	return (ticks() - start) / 100 / time.Since(t0).Seconds() * 100 // USER_HZ is 100 on Linux
}

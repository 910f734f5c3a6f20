// Package browsertest runs a headless Chromium page for tests, driven with
// chromedp: the dashboard's tests load golb's page in it, read its state
// with JavaScript and check that its console stayed free of errors. Where no
// Chromium is installed the tests skip, and fail instead when $GOLB_REQUIRE
// names chromium (CI sets it).
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/golb/golb/internal/testutil"
)

// Path returns Chromium's path, or skips t (fails it under
// GOLB_REQUIRE=chromium) when there is none.
func Path(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if testutil.Required("chromium") {
		t.Fatal("GOLB_REQUIRE names chromium, but no chromium is on PATH (apt-get install chromium)")
	}
	t.Skip("no chromium on PATH (set GOLB_REQUIRE=chromium to fail instead)")
	return ""
}

// Browser is one page of a headless Chromium, with what its console said.
type Browser struct {
	t   testing.TB
	ctx context.Context

	mu   sync.Mutex
	errs []string
}

// New starts Chromium with a 1440×1600 window; t's cleanup ends it.
func New(t testing.TB) *Browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(Path(t)), chromedp.WindowSize(1440, 1600))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &Browser{t: t, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting chromium: %v", err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.errs = append(b.errs, m.String())
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// ConsoleErrors are the errors and uncaught exceptions the page logged,
// CSP violations and failed loads included.
func (b *Browser) ConsoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errs...)
}

// Do runs actions, failing the test past 30 s.
func (b *Browser) Do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// Screenshot is a PNG of the whole page.
func (b *Browser) Screenshot() []byte {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	return png
}

// Eval evaluates a JavaScript expression in b's page (with
// chromedp.EvalAwaitPromise, the value a promise resolves to).
func Eval[T any](b *Browser, expr string, opts ...chromedp.EvaluateOption) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// Wait polls a JavaScript condition every 20 ms until it holds, failing the
// test after timeout, and returns how long it took.
func (b *Browser) Wait(timeout time.Duration, what, cond string) time.Duration {
	b.t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if Eval[bool](b, "!!("+cond+")") {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.t.Fatalf("timed out after %v waiting for %s on the page", timeout, what)
	return 0
}

// Command bench measures golb's balancer against HAProxy, nginx and Caddy, all
// in front of the same three golb workers, and against no proxy at all
// ("direct"): throughput, latency, errors, and the proxy's memory and CPU per
// request, for a fast, a slow and a many-connections workload.
//
// Run it from the repo root: go run ./bench [-workloads fast,slow,conns] [-reps 3]
// (or bench/run). It installs haproxy, nginx, caddy and wrk from Debian when
// they are missing, pins every server to core 0 and wrk to core 1, and prints
// one markdown table per workload on stdout, progress on stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// workload is one kind of traffic: the workers' delay and how wrk drives them.
type workload struct {
	name     string
	avgDelay string // the app block's avg_delay
	base     int    // first port: workers base..base+2, proxies base+10..base+40
	load
	// pause between two paths of a rep; for conns, long enough (3/2 of the
	// delay) that every request the last path left at the workers is over.
	pause  time.Duration
	warmup bool // one short run per path before rep 1
	// slices: each rep runs a path's dur as this many interleaved runs
	// (-slices, fast only; 1 for the others).
	slices int
}

// allPaths are the paths in their first rep's order (repOrder changes it
// for later reps).
var allPaths = []string{"direct", "haproxy", "nginx", "caddy", "golb"}

type options struct {
	paths    []string
	reps     int
	slices   int
	dur      time.Duration
	connsDur time.Duration
	conns    int
	keep     bool
	golb     string
	rev      string
}

func parseOptions() (options, []workload) {
	var o options
	var workloads, paths string
	flag.StringVar(&workloads, "workloads", "fast,slow,conns", "workloads to run: fast (no worker delay, 64 conns), slow (500ms, 256 conns), conns (10s, many conns held open)")
	flag.StringVar(&paths, "paths", strings.Join(allPaths, ","), "paths to measure")
	flag.IntVar(&o.reps, "reps", 3, "repetitions; every figure is the median over them")
	flag.DurationVar(&o.dur, "d", 10*time.Second, "duration of each wrk run of fast and slow")
	flag.DurationVar(&o.connsDur, "conns-d", 30*time.Second, "duration of each wrk run of conns")
	flag.IntVar(&o.slices, "slices", 5, "fast: run each path's -d as this many interleaved slices (each at least 1s), the paths taking turns")
	flag.IntVar(&o.conns, "conns", 5000, "connections held open by conns")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir (configs, logs, wrk output)")
	flag.StringVar(&o.golb, "golb", "", "a prebuilt golb binary instead of building ./cmd/golb")
	flag.StringVar(&o.rev, "rev", "", "build golb from this git revision (e.g. HEAD) instead of the work tree")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./bench [flags]\n\nBenchmarks golb's balancer against HAProxy, nginx, Caddy and direct access\nto the same 3 workers. Tables on stdout, progress on stderr.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if o.golb != "" && o.rev != "" {
		usageError("-golb and -rev conflict: give one")
	}
	if flag.NArg() > 0 {
		usageError("unexpected argument %q", flag.Arg(0))
	}
	if o.reps < 1 {
		usageError("-reps must be at least 1")
	}
	if o.slices < 1 {
		usageError("-slices must be at least 1")
	}
	if o.dur < time.Second || o.connsDur < time.Second {
		usageError("-d and -conns-d must be at least 1s")
	}
	if o.conns < 1 || o.conns > 15000 {
		usageError("-conns must be between 1 and 15000 (each proxy holds two fds per connection)")
	}
	known := map[string]workload{
		"fast":  {name: "fast", avgDelay: "0s", base: 16000, load: load{conns: 64, dur: o.dur, timeout: 5 * time.Second}, pause: time.Second, warmup: true, slices: o.slices},
		"slow":  {name: "slow", avgDelay: "500ms", base: 16100, load: load{conns: 256, dur: o.dur, timeout: 5 * time.Second}, pause: time.Second, warmup: true},
		"conns": {name: "conns", avgDelay: "10s", base: 16200, load: load{conns: o.conns, dur: o.connsDur, timeout: 30 * time.Second}, pause: 15 * time.Second},
	}
	var ws []workload
	for _, name := range splitList(workloads) {
		w, ok := known[name]
		if !ok {
			usageError("unknown workload %q (fast, slow, conns)", name)
		}
		ws = append(ws, w)
	}
	for _, p := range splitList(paths) {
		if !slices.Contains(allPaths, p) {
			usageError("unknown path %q (%s)", p, strings.Join(allPaths, ", "))
		}
	}
	for _, p := range allPaths { // keep the canonical order
		if slices.Contains(splitList(paths), p) {
			o.paths = append(o.paths, p)
		}
	}
	if len(ws) == 0 || len(o.paths) == 0 {
		usageError("nothing to run")
	}
	return o, ws
}

// sawFailure keeps the temp dir: the logs the failure messages point at.
var sawFailure bool

func main() {
	o, ws := parseOptions()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := run(ctx, o, ws)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, o options, ws []workload) int {
	root, err := moduleRoot()
	if err != nil {
		return fail(err)
	}
	// Before any child: each one inherits the raised limit.
	limit, err := raiseNofile()
	if err != nil {
		return fail(err)
	}
	if need := uint64(2*o.conns + 200); slices.Contains(workloadNames(ws), "conns") && limit < need {
		progress("warning: open-file limit %d is below the %d that %d connections through a proxy need", limit, need, o.conns)
	}
	tmp, err := os.MkdirTemp("", "golb-bench-")
	if err != nil {
		return fail(err)
	}
	defer func() {
		stopAll()
		if o.keep || sawFailure {
			progress("kept %s (configs, logs, wrk output)", tmp)
		} else {
			_ = os.RemoveAll(tmp)
		}
	}()

	found := ensureTools(ctx, loadTools)
	for _, t := range loadTools {
		if found[t.bin] == "" {
			return fail(fmt.Errorf("%s is required (Debian package %s) and could not be installed", t.bin, t.pkg))
		}
	}
	bins := map[string]string{}
	var want []tool
	for _, p := range o.paths {
		want = append(want, tools[p]...)
	}
	found = ensureTools(ctx, want)
	var paths []string
	for _, p := range o.paths {
		ok := true
		for _, t := range tools[p] {
			if found[t.bin] == "" {
				progress("skipping %s: %s is not installed and apt-get could not install %s", p, t.bin, t.pkg)
				ok = false
			} else {
				bins[p] = found[t.bin]
			}
		}
		if ok {
			paths = append(paths, p)
		}
	}
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}

	golbBin := o.golb
	if golbBin == "" {
		from := "the work tree"
		if o.rev != "" {
			from = "git revision " + o.rev
		}
		progress("building golb from %s (CGO_ENABLED=0 go build ./cmd/golb)", from)
		if golbBin, err = buildGolb(ctx, root, o.rev, tmp); err != nil {
			return fail(err)
		}
	} else if golbBin, err = filepath.Abs(golbBin); err != nil {
		return fail(err)
	}
	golbDesc := describeGolb(root, o)

	progress("open-file limit %d; servers on core %s, wrk on core %s; %s", limit, serverCPU, loadCPU, machine())
	failed := false
	for _, w := range ws {
		reps, err := runWorkload(ctx, o, w, paths, bins, golbBin, filepath.Join(tmp, w.name))
		if ctx.Err() != nil {
			if len(reps) > 0 {
				printTable(os.Stdout, w, paths, reps, golbDesc)
			}
			progress("interrupted")
			return 130
		}
		if err != nil {
			progress("workload %s failed: %v", w.name, err)
			failed, sawFailure = true, true
			if len(reps) == 0 {
				continue
			}
		}
		printTable(os.Stdout, w, paths, reps, golbDesc)
	}
	if failed {
		return 1
	}
	return 0
}

// runWorkload starts golb and the proxies in front of its workers, then runs
// the reps; it returns the results of the reps that completed.
func runWorkload(ctx context.Context, o options, w workload, names []string, bins map[string]string, golbBin, dir string) ([]map[string]result, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	progress("%s: starting golb (avg_delay %s) with %d workers from port %d", w.name, w.avgDelay, workerCount, w.base)
	a, err := startGolb(ctx, golbBin, dir, w.base, w.avgDelay)
	if err != nil {
		return nil, err
	}
	defer a.stop()

	var paths []*path
	for _, name := range names {
		switch name {
		case "direct":
			paths = append(paths, &path{name: "direct", port: w.base})
			continue
		case "golb":
			paths = append(paths, a.path())
			continue
		}
		p, err := startProxy(ctx, name, bins[name], dir, w.base+proxyPorts[name], a.workers)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			progress("%s: skipping %s: %v", w.name, name, err)
			sawFailure = true
			continue
		}
		defer p.stop()
		paths = append(paths, p)
	}

	reportLimits(a, paths)

	if w.warmup {
		progress("%s: warming up every path (1s each)", w.name)
		for _, p := range paths {
			if _, err := runWrk(ctx, dir, p.url(), load{conns: w.conns, dur: time.Second, timeout: w.timeout}); err != nil {
				return nil, fmt.Errorf("warming up %s: %w", p.name, err)
			}
		}
	}

	// A sliced workload runs each path's -d as slices short runs, the
	// paths taking turns slice after slice: each path's share of a rep is
	// spread over the same stretch of time, so that the VM's drift within
	// it (±30 % within a minute) falls on every path alike.
	nslices, l := max(1, w.slices), w.load
	l.dur = sliceDur(w)
	var reps []map[string]result
	for rep := range o.reps {
		parts := map[string][]result{}
		order := repOrder(len(paths), rep)
		for slice := range nslices {
			seq := order
			if slice%2 == 1 { // and back: each path runs after both its neighbours
				seq = slices.Clone(order)
				slices.Reverse(seq)
			}
			for i, at := range seq {
				p := paths[at]
				if i > 0 || slice > 0 {
					if err := sleepCtx(ctx, w.pause); err != nil {
						return reps, err
					}
				}
				r, err := measure(ctx, dir, p, l)
				if err != nil {
					return reps, fmt.Errorf("rep %d, %s: %w", rep+1, p.name, err)
				}
				parts[p.name] = append(parts[p.name], r)
				if nslices == 1 {
					reportRun(rep, o.reps, w, p, r)
				} else {
					progress("rep %d/%d %s slice %d/%d: %-7s %8.0f rps", rep+1, o.reps, w.name, slice+1, nslices, p.name, r.rps)
				}
			}
		}
		results := map[string]result{}
		for _, at := range order {
			p := paths[at]
			results[p.name] = mergeSlices(parts[p.name])
			if nslices > 1 {
				reportRun(rep, o.reps, w, p, results[p.name])
			}
		}
		reps = append(reps, results)
		if err := sleepCtx(ctx, w.pause); err != nil {
			return reps, err
		}
	}
	return reps, nil
}

// reportRun is the progress line of path p's result r in rep (of reps),
// and the tail of its log when there were errors.
func reportRun(rep, reps int, w workload, p *path, r result) {
	progress("rep %d/%d %s: %-7s %8.0f rps  p50 %s ms  p99 %s ms  errors %.0f%s  rss %s MiB  cpu %s µs/req",
		rep+1, reps, w.name, p.name, r.rps, ms(r.p50), ms(r.p99), r.errors, paren(r.errDetail),
		num(r.rssMiB, 1), num(r.cpuPerReq, 1))
	if r.errors > 0 && p.c != nil {
		progress("%s: last lines of %s's log:\n%s", w.name, p.name, p.c.tail(3))
	}
}

// sliceDur is how long each of w's wrk runs lasts: dur, or its share of
// dur when sliced (whole seconds, at least one: wrk takes seconds).
func sliceDur(w workload) time.Duration {
	if w.slices <= 1 {
		return w.dur
	}
	return max(time.Second, (w.dur / time.Duration(w.slices)).Round(time.Second))
}

// repOrder is the order in which rep runs n paths: the i-th path of rep r
// is k·(i + r) mod n, k the rep's stride, a number coprime with n taken in
// turn. The stride changes which path runs right before which, and with
// the offset r a path's position moves from rep to rep. A plain rotation
// kept every path's neighbours: golb always ran right after Caddy, whose
// process and whose many worker connections were still winding down.
func repOrder(n, rep int) []int {
	var strides []int
	for k := 1; k < max(n, 2); k++ {
		if gcd(k, n) == 1 {
			strides = append(strides, k)
		}
	}
	k := strides[rep%len(strides)]
	order := make([]int, n)
	for i := range order {
		order[i] = k * (i + rep) % n
	}
	return order
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func workloadNames(ws []workload) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.name)
	}
	return out
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// progress writes one line to stderr, stamped with the time.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func fail(err error) int {
	progress("%v", err)
	return 1
}

func usageError(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	flag.Usage()
	os.Exit(2)
}

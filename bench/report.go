package main

import (
	"fmt"
	"io"
	"math"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// printTable writes the markdown table of one workload: for each path the
// median over the reps of each figure; ratios are taken within a rep, then
// their median.
func printTable(out io.Writer, w workload, names []string, reps []map[string]result, golbDesc string) {
	runs := ""
	if w.slices > 1 {
		runs = fmt.Sprintf(" × %d slices a rep, the paths taking turns", w.slices)
	}
	fmt.Fprintf(out, "\n### %s: avg_delay %s, wrk -t1 -c%d -d%s --timeout %s%s, median of %d rep(s)\n\n",
		w.name, w.avgDelay, w.conns, wrkDuration(sliceDur(w)), wrkDuration(w.timeout), runs, len(reps))
	fmt.Fprintln(out, "| path | rps | × direct | p50 ms | p99 ms | errors | peak RSS MiB | CPU µs/req |")
	fmt.Fprintln(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, name := range names {
		rs := collect(reps, name)
		if len(rs) == 0 {
			continue
		}
		pick := func(f func(result) float64) float64 {
			var v []float64
			for _, r := range rs {
				v = append(v, f(r))
			}
			return median(v)
		}
		errs := pick(func(r result) float64 { return r.errors })
		maxErr := 0.0
		for _, r := range rs {
			maxErr = max(maxErr, r.errors)
		}
		errCell := fmt.Sprintf("%.0f", errs)
		if maxErr > errs {
			errCell += fmt.Sprintf(" (max %.0f)", maxErr)
		}
		fmt.Fprintf(out, "| %s | %.0f | %s | %s | %s | %s | %s | %s |\n", name,
			pick(func(r result) float64 { return r.rps }),
			num(ratio(reps, name, "direct"), 2),
			ms(pick(func(r result) float64 { return r.p50 })),
			ms(pick(func(r result) float64 { return r.p99 })),
			errCell,
			num(pick(func(r result) float64 { return r.rssMiB }), 1),
			num(pick(func(r result) float64 { return r.cpuPerReq }), 1))
	}
	var parts []string
	for _, other := range []string{"haproxy", "nginx", "caddy"} {
		if v := ratio(reps, "golb", other); !math.IsNaN(v) {
			parts = append(parts, fmt.Sprintf("golb ÷ %s %.2f", other, v))
		}
	}
	fmt.Fprintln(out)
	if len(parts) > 0 {
		fmt.Fprintf(out, "rps ratios (median of per-rep ratios): %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(out, "%s; %s; %s\n", time.Now().Format("2006-01-02 15:04 MST"), machine(), golbDesc)
	fmt.Fprintln(out, "RSS and CPU: the proxy's processes that carry traffic (golb: the agent process only; its workers and driver plugin are separate processes and not counted; nginx: its worker). Servers pinned to core 0, wrk to core 1.")
}

// collect returns the results of path name, one per rep that measured it.
func collect(reps []map[string]result, name string) []result {
	var out []result
	for _, rep := range reps {
		if r, ok := rep[name]; ok {
			out = append(out, r)
		}
	}
	return out
}

// ratio is the median over the reps that measured both of rps(a) ÷ rps(b).
func ratio(reps []map[string]result, a, b string) float64 {
	var v []float64
	for _, rep := range reps {
		ra, okA := rep[a]
		rb, okB := rep[b]
		if okA && okB && rb.rps > 0 {
			v = append(v, ra.rps/rb.rps)
		}
	}
	return median(v)
}

// median of the values that are not NaN; NaN when there is none.
func median(v []float64) float64 {
	var xs []float64
	for _, x := range v {
		if !math.IsNaN(x) {
			xs = append(xs, x)
		}
	}
	if len(xs) == 0 {
		return math.NaN()
	}
	sort.Float64s(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// ms formats a latency with the decimals that matter at its size.
func ms(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 1000:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// num formats v with prec decimals, or "-" for NaN (no proxy, no figure).
func num(v float64, prec int) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

// reportLimits shows the open-file limit of a worker and of every proxy
// process that carries traffic: the conns workload needs thousands.
func reportLimits(a *agent, paths []*path) {
	limit := func(pid int) string {
		l, err := nofile(pid)
		if err != nil {
			return "?"
		}
		return l
	}
	var parts []string
	if len(a.pids) > 0 {
		parts = append(parts, "worker "+limit(a.pids[0]))
	}
	for _, p := range paths {
		if p.pids != nil {
			for _, pid := range p.pids() {
				parts = append(parts, fmt.Sprintf("%s %s", p.name, limit(pid)))
			}
		}
	}
	progress("open files (soft:hard): %s", strings.Join(parts, ", "))
}

// describeGolb says which golb is measured, for the report.
func describeGolb(root string, o options) string {
	if o.golb != "" {
		return "golb binary " + o.golb
	}
	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"-C", root}, args...)...).Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	if o.rev != "" {
		return "golb at " + o.rev + " " + git("rev-parse", "--short", o.rev)
	}
	desc := "golb work tree at " + git("rev-parse", "--short", "HEAD")
	if git("status", "--porcelain", "--untracked-files=no") != "" {
		desc += " with uncommitted changes"
	}
	return desc
}

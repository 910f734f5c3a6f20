package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// loadCPU is the core wrk runs on; every server is pinned to core 0.
const loadCPU = "1"

// result is one wrk run against one path, with its proxy's resources.
type result struct {
	rps       float64
	requests  float64
	p50, p99  float64 // ms; NaN when wrk reported no latency
	errors    float64 // socket errors (connect, read, write, timeout) + non-2xx/3xx
	errDetail string  // the non-zero kinds, for the progress line
	rssMiB    float64 // NaN for direct
	cpuPerReq float64 // µs of proxy CPU per completed request; NaN for direct
}

// load is how wrk drives one workload.
type load struct {
	conns   int
	dur     time.Duration
	timeout time.Duration
}

// runWrk runs `taskset -c 1 wrk -t1 -cN -dD --timeout T --latency URL`, appends
// its output to DIR/wrk.log and parses it.
func runWrk(ctx context.Context, dir, url string, l load) (result, error) {
	wrk, err := lookTool("wrk")
	if err != nil {
		return result{}, err
	}
	taskset, err := lookTool("taskset")
	if err != nil {
		return result{}, err
	}
	args := []string{"-c", loadCPU, wrk, "-t1", "-c" + strconv.Itoa(l.conns),
		"-d" + wrkDuration(l.dur), "--timeout", wrkDuration(l.timeout), "--latency", url}
	cmd := exec.CommandContext(ctx, taskset, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out, errOut bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errOut
	runErr := cmd.Run()
	appendLog(filepath.Join(dir, "wrk.log"), fmt.Sprintf("$ taskset %s\n%s%s\n", strings.Join(args, " "), out.String(), errOut.String()))
	if ctx.Err() != nil {
		return result{}, ctx.Err()
	}
	if runErr != nil {
		return result{}, fmt.Errorf("wrk %s: %w\n%s%s", url, runErr, out.String(), tailLines(errOut.String(), 10))
	}
	r, err := parseWrk(out.String())
	if err != nil {
		return result{}, fmt.Errorf("wrk %s: %w\n%s", url, err, out.String())
	}
	return r, nil
}

// wrkDuration writes d in whole seconds (at least 1), which wrk reads.
func wrkDuration(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Round(d.Seconds())))) + "s"
}

var (
	reRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	reRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	reSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	rePct      = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s|m|h)\s*$`)
)

// parseWrk reads wrk's --latency report.
func parseWrk(out string) (result, error) {
	r := result{p50: math.NaN(), p99: math.NaN(), rssMiB: math.NaN(), cpuPerReq: math.NaN()}
	m := reRequests.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no request count in wrk's output")
	}
	r.requests, _ = strconv.ParseFloat(m[1], 64)
	if m := reRPS.FindStringSubmatch(out); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	} else {
		return r, fmt.Errorf("no Requests/sec in wrk's output")
	}
	var kinds []string
	if m := reSocket.FindStringSubmatch(out); m != nil {
		for i, name := range []string{"connect", "read", "write", "timeout"} {
			n, _ := strconv.ParseFloat(m[i+1], 64)
			if n > 0 {
				kinds = append(kinds, fmt.Sprintf("%s %.0f", name, n))
			}
			r.errors += n
		}
	}
	if m := reNon2xx.FindStringSubmatch(out); m != nil {
		n, _ := strconv.ParseFloat(m[1], 64)
		r.errors += n
		kinds = append(kinds, fmt.Sprintf("non-2xx/3xx %.0f", n))
	}
	r.errDetail = strings.Join(kinds, ", ")
	for _, m := range rePct.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		ms := v * map[string]float64{"us": 1e-3, "ms": 1, "s": 1e3, "m": 60e3, "h": 3600e3}[m[3]]
		if m[1] == "50" {
			r.p50 = ms
		} else {
			r.p99 = ms
		}
	}
	return r, nil
}

func appendLog(path, s string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(s)
}

// mergeSlices is one result of a path's slices: requests, errors and
// proxy CPU summed (rps is the requests over the slices' time, CPU per
// request the CPU over the requests), peak RSS the highest, and p50 and
// p99 the median of the slices' (wrk reports no histogram to merge).
func mergeSlices(rs []result) result {
	if len(rs) == 1 {
		return rs[0]
	}
	out := result{rssMiB: math.NaN(), cpuPerReq: math.NaN()}
	var secs, cpu, cpuReqs float64
	var p50s, p99s []float64
	var kinds []string
	for _, r := range rs {
		out.requests += r.requests
		if r.rps > 0 {
			secs += r.requests / r.rps
		}
		out.errors += r.errors
		if r.errDetail != "" {
			kinds = append(kinds, r.errDetail)
		}
		if !math.IsNaN(r.rssMiB) && (math.IsNaN(out.rssMiB) || r.rssMiB > out.rssMiB) {
			out.rssMiB = r.rssMiB
		}
		if !math.IsNaN(r.cpuPerReq) {
			cpu += r.cpuPerReq * r.requests
			cpuReqs += r.requests
		}
		p50s, p99s = append(p50s, r.p50), append(p99s, r.p99)
	}
	if secs > 0 {
		out.rps = out.requests / secs
	}
	if cpuReqs > 0 {
		out.cpuPerReq = cpu / cpuReqs
	}
	out.p50, out.p99 = median(p50s), median(p99s)
	out.errDetail = strings.Join(kinds, "; ")
	return out
}

// measure runs wrk against p while sampling its proxy's processes.
func measure(ctx context.Context, dir string, p *path, l load) (result, error) {
	var pids []int
	if p.pids != nil {
		pids = p.pids()
		for _, pid := range pids {
			if !alive(pid) {
				return result{}, fmt.Errorf("%s (pid %d) is not running", p.name, pid)
			}
		}
	}
	s := startSampler(pids)
	r, err := runWrk(ctx, dir, p.url(), l)
	rss, cpu, ok := s.finish()
	if err != nil {
		return r, err
	}
	if p.pids != nil {
		r.rssMiB = rss
		if ok && r.requests > 0 {
			r.cpuPerReq = cpu / r.requests
		}
	}
	return r, nil
}

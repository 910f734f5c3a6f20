package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// sampleEvery is how often a run samples its proxy's resident memory.
const sampleEvery = 100 * time.Millisecond

// sampler follows the processes of one proxy during one wrk run: the peak of
// their summed VmRSS, sampled every 100 ms, and their CPU time over the run.
type sampler struct {
	pids     []int
	cpuStart []uint64 // utime+stime in clock ticks, per pid
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	peakKiB  uint64
}

// startSampler begins sampling pids (none: a path without a proxy).
func startSampler(pids []int) *sampler {
	s := &sampler{pids: pids, stop: make(chan struct{}), done: make(chan struct{})}
	for _, pid := range pids {
		t, _ := cpuTicks(pid)
		s.cpuStart = append(s.cpuStart, t)
	}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(sampleEvery)
		defer tick.Stop()
		for {
			s.sample()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *sampler) sample() {
	var sum uint64
	for _, pid := range s.pids {
		kib, err := rssKiB(pid)
		if err != nil {
			continue
		}
		sum += kib
	}
	s.mu.Lock()
	s.peakKiB = max(s.peakKiB, sum)
	s.mu.Unlock()
}

// finish stops sampling; it returns the peak RSS in MiB and the CPU time used
// since startSampler in µs. ok is false when a process vanished meanwhile
// (its CPU time is then unknown).
func (s *sampler) finish() (peakMiB float64, cpuMicros float64, ok bool) {
	s.sample()
	close(s.stop)
	<-s.done
	ok = len(s.pids) > 0
	var ticks uint64
	for i, pid := range s.pids {
		t, err := cpuTicks(pid)
		if err != nil || t < s.cpuStart[i] {
			ok = false
			continue
		}
		ticks += t - s.cpuStart[i]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return float64(s.peakKiB) / 1024, float64(ticks) * 1e6 / float64(clockTicks()), ok
}

// rssKiB reads VmRSS from /proc/PID/status.
func rssKiB(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseUint(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// statFields returns the fields of /proc/PID/stat after the command name,
// so that field N of proc(5) is fields[N-3].
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	return f, nil
}

// cpuTicks is utime+stime (proc(5) fields 14 and 15) of every thread of pid.
func cpuTicks(pid int) (uint64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	u, err1 := strconv.ParseUint(f[14-3], 10, 64)
	s, err2 := strconv.ParseUint(f[15-3], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime or stime", pid)
	}
	return u + s, nil
}

// childPids lists the processes whose parent is pid (nginx's workers).
func childPids(pid int) []int {
	var out []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		p, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		f, err := statFields(p)
		if err != nil {
			continue
		}
		if pp, _ := strconv.Atoi(f[4-3]); pp == pid {
			out = append(out, p)
		}
	}
	return out
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	f, err := statFields(pid)
	return err == nil && f[0] != "Z"
}

// nofile reads the soft and hard "Max open files" of pid from /proc/PID/limits.
func nofile(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) >= 2 {
				return f[0] + ":" + f[1], nil
			}
		}
	}
	return "", fmt.Errorf("no Max open files in /proc/%d/limits", pid)
}

var clk struct {
	once  sync.Once
	ticks int
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times (getconf
// CLK_TCK; 100 on every Linux build that matters when getconf is missing).
func clockTicks() int {
	clk.once.Do(func() {
		clk.ticks = 100
		if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
			if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
				clk.ticks = n
			}
		}
	})
	return clk.ticks
}

// machine describes the host for the report: kernel, cores, CPU model.
func machine() string {
	kernel := "?"
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		kernel = strings.TrimSpace(string(out))
	}
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("kernel %s, nproc %d, CPU %s", kernel, nproc(), model)
}

func nproc() int {
	if out, err := exec.Command("nproc").Output(); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil {
			return n
		}
	}
	return 0
}

package core

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/golb/golb/core/state"
)

// crashAgent is an agent that is never prepared or run, holding one group
// "g" in its store, for the bookkeeping tests.
func crashAgent(t *testing.T, groups ...*state.Group) *testAgent {
	t.Helper()
	cfg := parseConfig(t, header(t.TempDir(), "")+groupHCL("g", 1, freePorts(t, 1), "1ms"))
	ta := newTestAgent(t, cfg)
	if len(groups) == 0 {
		groups = []*state.Group{{Name: "g", Driver: "process", Desired: 1, Max: 1000}}
	}
	for _, g := range groups {
		if err := ta.Store().UpsertGroup(g); err != nil {
			t.Fatal(err)
		}
	}
	return ta
}

// crash records one crash of group after uptime and returns the backoff it
// set: notTill minus the time of the call, within the call's duration.
func (ta *testAgent) crash(t *testing.T, group string, uptime time.Duration, reason string) (lo, hi time.Duration) {
	t.Helper()
	before := time.Now()
	ta.recordCrash(group, uptime, reason)
	after := time.Now()
	ta.mu.Lock()
	notTill := ta.crashes[group].notTill
	ta.mu.Unlock()
	return notTill.Sub(after), notTill.Sub(before)
}

func (ta *testAgent) group(t *testing.T, name string) *state.Group {
	t.Helper()
	g, err := ta.Store().Group(nil, name)
	if err != nil || g == nil {
		t.Fatalf("group %s: %v %v", name, g, err)
	}
	return g
}

// recordCrash: the first replacement is immediate, then 250ms, 500ms, ...
// doubling up to 30s; the group is failing from the 5th quick crash in a
// row, with "crash-looping: " and the last reason; a crash after minUptime
// starts a new streak.
func TestRecordCrashBackoff(t *testing.T) {
	ta := crashAgent(t)
	want := []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
		4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		reason := fmt.Sprintf("exit %d", i+1)
		lo, hi := ta.crash(t, "g", minUptime/2, reason)
		if w < lo || w > hi {
			t.Errorf("crash %d: backoff in [%v, %v], want %v", i+1, lo, hi, w)
		}
		g := ta.group(t, "g")
		if wantFailing := i+1 >= failingAfter; g.Failing != wantFailing {
			t.Errorf("crash %d: Failing = %v, want %v", i+1, g.Failing, wantFailing)
		}
		wantReason := "" // the group's note, shown while it is failing
		if g.Failing {
			wantReason = "crash-looping: " + reason
		}
		if g.Reason != wantReason {
			t.Errorf("crash %d: Reason = %q, want %q", i+1, g.Reason, wantReason)
		}
	}

	// A worker that ran minUptime before dying is a new streak: immediate
	// replacement, no longer failing.
	lo, hi := ta.crash(t, "g", minUptime, "exit after a long run")
	if lo > 0 || hi < 0 {
		t.Errorf("crash after minUptime: backoff in [%v, %v], want 0", lo, hi)
	}
	if g := ta.group(t, "g"); g.Failing {
		t.Errorf("crash after minUptime: group still failing: %+v", g)
	}
	if lo, hi := ta.crash(t, "g", 0, "quick again"); 250*time.Millisecond < lo || 250*time.Millisecond > hi {
		t.Errorf("second crash of the new streak: backoff in [%v, %v], want 250ms", lo, hi)
	}
}

// Crash streaks are per group: one group's crash loop does not delay another.
func TestRecordCrashPerGroup(t *testing.T) {
	ta := crashAgent(t,
		&state.Group{Name: "g", Driver: "process", Desired: 1, Max: 1000},
		&state.Group{Name: "h", Driver: "process", Desired: 1, Max: 1000})
	for range failingAfter {
		ta.crash(t, "g", 0, "boom")
	}
	if lo, hi := ta.crash(t, "h", 0, "first"); lo > 0 || hi < 0 {
		t.Errorf("first crash of h: backoff in [%v, %v], want 0", lo, hi)
	}
	if !ta.group(t, "g").Failing || ta.group(t, "h").Failing {
		t.Errorf("failing: g=%v h=%v, want g only", ta.group(t, "g").Failing, ta.group(t, "h").Failing)
	}
}

// TestRecordCrashBackoffNoOverflow: baseBackoff<<(streak-2) overflowed
// time.Duration after 37 quick crashes in a row, so a group crash-looping
// for a quarter of an hour lost its backoff (negative or zero delays) and
// restarted its workers in a hot loop.
func TestRecordCrashBackoffNoOverflow(t *testing.T) {
	ta := crashAgent(t)
	for i := 1; i <= 80; i++ {
		lo, hi := ta.crash(t, "g", 0, "boom")
		if i < 9 {
			continue
		}
		if maxBackoff < lo || maxBackoff > hi {
			t.Fatalf("crash %d in a row: backoff in [%v, %v], want the cap %v", i, lo, hi, maxBackoff)
		}
	}
}

func TestAllocPort(t *testing.T) {
	base := freePorts(t, 4)
	if p, ok := allocPort(base, nil); !ok || p != base {
		t.Errorf("allocPort(%d, none used) = %d, %v; want %d", base, p, ok, base)
	}
	if p, ok := allocPort(base, map[int]bool{base: true, base + 1: true}); !ok || p != base+2 {
		t.Errorf("allocPort with %d,%d used = %d, %v; want %d", base, base+1, p, ok, base+2)
	}
	// A port another program holds is skipped though no worker uses it.
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if p, ok := allocPort(base, nil); !ok || p != base+1 {
		t.Errorf("allocPort with %d bound elsewhere = %d, %v; want %d", base, p, ok, base+1)
	}
	if p, ok := allocPort(base, map[int]bool{base + 1: true}); !ok || p != base+2 {
		t.Errorf("allocPort with %d bound and %d used = %d, %v; want %d", base, base+1, p, ok, base+2)
	}
	if p, ok := allocPort(65535, map[int]bool{65535: true}); ok {
		t.Errorf("allocPort past the last port = %d, true; want not ok", p)
	}
}

func TestScale(t *testing.T) {
	ta := crashAgent(t, &state.Group{Name: "g", Driver: "process", Desired: 2, Min: 1, Max: 5})
	for _, n := range []int{1, 5, 3} {
		if err := ta.Scale("g", n); err != nil {
			t.Fatalf("Scale(g, %d) within [1, 5]: %v", n, err)
		}
		if got := ta.group(t, "g").Desired; got != n {
			t.Fatalf("Scale(g, %d): desired %d", n, got)
		}
	}
	for _, n := range []int{0, 6, -1} {
		if err := ta.Scale("g", n); !errors.Is(err, ErrScaleBounds) {
			t.Errorf("Scale(g, %d) outside [1, 5]: %v, want ErrScaleBounds", n, err)
		}
	}
	if got := ta.group(t, "g").Desired; got != 3 {
		t.Errorf("refused scales changed desired to %d", got)
	}
	if err := ta.Scale("nope", 1); !errors.Is(err, state.ErrNoGroup) {
		t.Errorf("Scale of an unknown group: %v, want state.ErrNoGroup", err)
	}
}

// TestAllocPortPastRangeSkipsClaimedPorts scales a group past its own port
// range: the next worker skips the ports the config gives to another group,
// a balancer and the admin API, though none of them is bound.
func TestAllocPortPastRangeSkipsClaimedPorts(t *testing.T) {
	p := freePorts(t, 8)
	cfg := parseConfig(t, header(t.TempDir(), fmt.Sprintf("127.0.0.1:%d", p+5))+
		groupHCL("a", 2, p, "1ms")+groupHCL("b", 1, p+2, "1ms")+
		fmt.Sprintf("balancer \"web\" {\n  group = \"a\"\n  port = %d\n  listeners = 2\n}\n", p+3))
	a := &Agent{cfg: cfg}
	used := a.foreignPorts("a")
	for q := p + 2; q <= p+5; q++ {
		if !used[q] {
			t.Errorf("foreignPorts(a) lacks %d (claimed by the config)", q)
		}
	}
	if used[p] || used[p+1] {
		t.Errorf("foreignPorts(a) holds a's own ports %d-%d: %v", p, p+1, used)
	}
	used[p], used[p+1] = true, true // a's two workers
	if got, ok := allocPort(p, used); !ok || got != p+6 {
		t.Errorf("third worker of a: allocPort = %d, %v; want %d, past b's, the listeners' and the admin port", got, ok, p+6)
	}
}

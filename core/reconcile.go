package core

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/golb/golb/core/state"
)

// Crash-loop handling: the first replacement is immediate; a worker that dies
// within minUptime of its start counts as a crash, and each further crash in a
// row doubles the delay before the next start, up to maxBackoff. After
// failingAfter crashes in a row the group is marked failing, with the
// reason "crash-looping: LAST EXIT", until settle sees it recovered.
const (
	minUptime    = 10 * time.Second
	baseBackoff  = 250 * time.Millisecond
	maxBackoff   = 30 * time.Second
	failingAfter = 5
)

// crashLoop tracks consecutive quick crashes of one group.
type crashLoop struct {
	streak  int
	notTill time.Time
	// lastErr is the last failed start's error logged for this streak (a
	// bad plugin reply, the driver's error): the same one again, start
	// after start, is logged at DEBUG only.
	lastErr string
}

// reconcileLoop converges actual on desired state whenever either changes.
func (a *Agent) reconcileLoop(ctx context.Context) {
	for ctx.Err() == nil {
		ws := memdb.NewWatchSet()
		next := a.reconcile(ctx, ws)
		wctx := ctx
		var cancel context.CancelFunc = func() {}
		if !next.IsZero() {
			wctx, cancel = context.WithDeadline(ctx, next)
		}
		_ = ws.WatchCtx(wctx)
		cancel()
	}
}

// reconcile makes one pass over every group. It returns when the next pass is
// due for a reason memdb cannot signal (a backoff ending), or zero.
func (a *Agent) reconcile(ctx context.Context, ws memdb.WatchSet) time.Time {
	groups, err := a.store.Groups(ws)
	if err != nil {
		a.logger.Error("reconcile: reading groups", "err", err)
		return time.Now().Add(time.Second)
	}
	all, err := a.store.Workers(ws)
	if err != nil {
		a.logger.Error("reconcile: reading workers", "err", err)
		return time.Now().Add(time.Second)
	}
	var next time.Time
	for _, g := range groups {
		if t := a.reconcileGroup(ctx, g, all); !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next
}

func (a *Agent) reconcileGroup(ctx context.Context, g *state.Group, all []*state.Worker) time.Time {
	var live, outdated []*state.Worker
	for _, w := range all {
		switch {
		case w.Group != g.Name || !w.Status.Live():
		case w.Outdated:
			outdated = append(outdated, w)
		default:
			live = append(live, w)
		}
	}
	next, stopped := a.rollOut(ctx, g, live, outdated)
	if stopped != "" { // in this pass: start no replacement in it
		cp := *g
		cp.RolloutStopped = stopped
		g = &cp
	}
	if len(outdated) > 0 {
		// A rollover: replacements start at most max_parallel at a time,
		// and once it stopped only to make up for outdated workers that
		// died (rollout.go).
		g = a.boundRollout(g, live, outdated)
	}
	if t := a.reconcileCount(ctx, g, all, live); !t.IsZero() && (next.IsZero() || t.Before(next)) {
		next = t
	}
	return next
}

// rollOut stops a group's outdated workers as their replacements become
// healthy, oldest first, so that the group never serves with fewer than its
// desired count while it changes over. Replacements that never get healthy
// (say, the new settings crash) leave the outdated workers serving. It
// returns when to look again, and the stopped rollover's note when this
// pass stopped it.
func (a *Agent) rollOut(ctx context.Context, g *state.Group, live, outdated []*state.Worker) (time.Time, string) {
	if len(outdated) == 0 {
		return time.Time{}, ""
	}
	serving := a.servingIn(g.Name)
	healthy := 0
	for _, w := range live {
		if w.Status == state.StatusRunning && serving(w.ID) {
			healthy++
		}
	}
	stopped := a.checkRollout(ctx, g, live, serving)
	sort.Slice(outdated, func(i, j int) bool { return outdated[i].StartedAt.Before(outdated[j].StartedAt) })
	n := min(healthy+len(outdated)-g.Desired, len(outdated))
	for _, w := range outdated[:max(n, 0)] {
		if !a.beginStop(w.ID, state.StatusRunning) {
			continue // not running (yet), or being stopped already
		}
		a.logger.Info("replacement healthy; stopping the worker with the old settings", "worker", w.ID, "group", g.Name)
		a.goWork(ctx, func(ctx context.Context) { a.stopWorker(ctx, w.ID, true) })
	}
	if n >= len(outdated) {
		return time.Time{}, stopped
	}
	return time.Now().Add(100 * time.Millisecond), stopped // health lives in the balancers, not the store
}

// servingIn returns whether every balancer of group counts a worker healthy
// (true for a group no balancer serves), from one read of each balancer.
func (a *Agent) servingIn(group string) func(id string) bool {
	bs := a.balancersOf(group)
	count := map[string]int{}
	for _, b := range bs {
		for _, s := range b.Stats() {
			if s.Healthy {
				count[s.ID]++
			}
		}
	}
	return func(id string) bool { return count[id] == len(bs) }
}

// reconcileCount starts missing workers and stops extra ones.
func (a *Agent) reconcileCount(ctx context.Context, g *state.Group, all, live []*state.Worker) time.Time {
	switch {
	case len(live) < g.Desired:
		a.mu.Lock()
		var notTill time.Time
		if cl := a.crashes[g.Name]; cl != nil {
			notTill = cl.notTill
		}
		adopted := a.adopted[g.Driver]
		a.mu.Unlock()
		if time.Now().Before(notTill) {
			return notTill
		}
		if !adopted {
			return time.Now().Add(time.Second) // its earlier workers are not known yet
		}
		used := a.foreignPorts(g.Name)
		for _, w := range all {
			used[w.Port] = true
		}
		spec := a.spec(g.Name)
		for i := len(live); i < g.Desired; i++ {
			port, ok := allocPort(spec.cfg.Port, used)
			if !ok {
				a.logger.Error("no free port for a worker", "group", g.Name, "from", spec.cfg.Port)
				return time.Now().Add(time.Second)
			}
			id, err := newWorkerID(rand.Reader, g.Name, a.workerIDTaken)
			if err != nil {
				a.logger.Error("no worker id to give a new worker", "group", g.Name, "err", err)
				return time.Now().Add(time.Second)
			}
			used[port] = true
			w := &state.Worker{ID: id, Group: g.Name, Driver: g.Driver, Port: port, Status: state.StatusPending, StartedAt: time.Now().UTC()}
			if err := a.store.UpsertWorker(w); err != nil {
				a.logger.Error("recording new worker", "err", err)
				continue
			}
			a.goWork(ctx, func(ctx context.Context) { a.startWorker(ctx, w) })
		}
	case len(live) > g.Desired:
		// Stop running workers, newest first: the oldest have warm caches and
		// proven health. A pending worker is left to finish starting; the
		// next pass sees it running.
		var running []*state.Worker
		for _, w := range live {
			if w.Status == state.StatusRunning {
				running = append(running, w)
			}
		}
		sort.Slice(running, func(i, j int) bool { return running[i].StartedAt.After(running[j].StartedAt) })
		for _, w := range running[:min(len(live)-g.Desired, len(running))] {
			if !a.beginStop(w.ID, state.StatusRunning) {
				continue // drained on request, or exited, since this pass read it
			}
			a.goWork(ctx, func(ctx context.Context) { a.stopWorker(ctx, w.ID, true) })
		}
	default:
		return a.settle(g, live)
	}
	return time.Time{}
}

// goWork runs fn in the background; shutdown waits for it.
func (a *Agent) goWork(ctx context.Context, fn func(context.Context)) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		fn(ctx)
	}()
}

// foreignPorts returns the ports the config gives to anything but group's
// workers: listeners, the admin API and other groups' worker ranges. A group
// scaled past its own range, or whose range holds another program's port,
// goes on to the next free port, but never into one of these.
func (a *Agent) foreignPorts(group string) map[int]bool {
	out := map[int]bool{}
	for _, c := range a.config().PortClaims() {
		if c.Group == group {
			continue
		}
		for p := c.First; p <= c.Last; p++ {
			out[p] = true
		}
	}
	return out
}

// allocPort returns the lowest port from first that is not in used and
// that can be bound on 127.0.0.1 right now.
func allocPort(first int, used map[int]bool) (int, bool) {
	for p := first; p <= 65535; p++ {
		if used[p] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		return p, true
	}
	return 0, false
}

// workerIDDraws bounds the draws of a new worker's id: with 32 random bits, 16
// taken in a row means billions of stored workers, or a broken random source.
const workerIDDraws = 16

// newWorkerID draws the id of a new worker of group, the group and 32 random
// bits read from r ("hello-3c470428"), drawing again while taken says the id
// is in use: a new worker given an old one's id would inherit its stored
// totals (after 10,000 workers ever, a 1% chance per new worker).
func newWorkerID(r io.Reader, group string, taken func(id string) bool) (string, error) {
	var b [4]byte
	for range workerIDDraws {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", fmt.Errorf("drawing a worker id: %w", err)
		}
		if id := group + "-" + hex.EncodeToString(b[:]); !taken(id) {
			return id, nil
		}
	}
	return "", fmt.Errorf("drawing a worker id for group %s: %d draws in a row were taken", group, workerIDDraws)
}

// workerIDTaken reports whether id names a worker of the state store or one
// with stored stats (the aggregator knows every stored worker id). A store
// that cannot answer counts as taken: draw another.
func (a *Agent) workerIDTaken(id string) bool {
	if w, err := a.store.Worker(nil, id); err != nil || w != nil {
		return true
	}
	return a.agg != nil && a.agg.Has(id)
}

// settle forgets a group's crash streak (and lifts its crash-looping mark)
// once every wanted worker has run for minUptime; until then it returns when
// to look again. A group failing for another reason (its driver's runtime is
// down: awaitRuntime) has no streak and is left alone.
func (a *Agent) settle(g *state.Group, live []*state.Worker) time.Time {
	a.mu.Lock()
	_, crashed := a.crashes[g.Name]
	a.mu.Unlock()
	if !crashed {
		return time.Time{}
	}
	var youngest time.Time
	for _, w := range live {
		if w.Status != state.StatusRunning {
			return time.Time{} // a start or stop will wake the reconciler
		}
		if w.StartedAt.After(youngest) {
			youngest = w.StartedAt
		}
	}
	if due := youngest.Add(minUptime); time.Now().Before(due) {
		return due
	}
	a.mu.Lock()
	delete(a.crashes, g.Name)
	a.mu.Unlock()
	if g.Failing && ownedByCrashLoop(g.Reason) {
		_ = a.store.UpdateGroup(g.Name, func(g *state.Group) error {
			if ownedByCrashLoop(g.Reason) {
				g.Failing, g.Reason = false, ""
			}
			return nil
		})
		a.logger.Info("group recovered", "group", g.Name)
	}
	return time.Time{}
}

// crashLoopingPrefix starts the NOTE of a crash-looping group.
const crashLoopingPrefix = "crash-looping: "

// ownedByCrashLoop reports whether a group's Reason is the crash loop's to
// set or lift: none, or its own.
func ownedByCrashLoop(reason string) bool {
	return reason == "" || strings.HasPrefix(reason, crashLoopingPrefix)
}

// recordCrash notes a worker that failed to start or died young (reason is
// its exit), and marks the group failing from the failingAfter-th quick
// crash in a row.
func (a *Agent) recordCrash(group string, uptime time.Duration, reason string) {
	a.mu.Lock()
	cl := a.crashes[group]
	if cl == nil {
		cl = &crashLoop{}
		a.crashes[group] = cl
	}
	if uptime >= minUptime {
		cl.streak, cl.lastErr = 0, ""
	}
	cl.streak++
	streak := cl.streak
	delay := time.Duration(0)
	if streak > 1 {
		// Shift at most 16 places: past that the cap applies anyway, and a
		// wider shift would overflow into a negative delay.
		delay = min(baseBackoff<<min(streak-2, 16), maxBackoff)
	}
	cl.notTill = time.Now().Add(delay)
	failing := streak >= failingAfter
	a.mu.Unlock()
	_ = a.store.UpdateGroup(group, func(g *state.Group) error {
		if !ownedByCrashLoop(g.Reason) {
			return nil // a note of another cause (a plugin crash) stays
		}
		g.Failing, g.Reason = failing, ""
		if failing {
			g.Reason = crashLoopingPrefix + reason
		}
		return nil
	})
	if failing {
		a.logger.Error("group is crash-looping; backing off", "group", group, "crashes_in_a_row", streak, "next_start_in", delay, "last_error", reason)
	}
}

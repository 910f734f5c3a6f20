package core

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"

	"github.com/golb/golb/core/state"
)

// A plugin that dies (a panic in one of its calls, an os.Exit, a signal) is
// restarted with the backoff of a crash-looping worker (reconcile.go): the
// first restart is immediate; an instance that dies within minUptime of its
// launch extends the streak, and each further death doubles the delay
// before the next launch, from baseBackoff up to maxBackoff. An instance that
// lives minUptime ends the streak (settle). So a plugin that panics at
// every Start is launched at most about 7 times in its first 10 s.
//
// Its panic is logged once per distinct message, with its stack trace;
// repeats are counted, and logged again only at the 2nd, 4th, 8th… time.
// The groups on the driver show "driver NAME crashed in CALL: PANIC" in
// their NOTE until the plugin settles.

// maxTraceLines bounds the stack trace kept (and logged once) of a panic.
const maxTraceLines = 40

// crashWatch reads one plugin instance's stderr lines, as go-plugin hands
// them to hclog: it keeps the first panic (or fatal error) and its trace
// instead of letting each trace line through as an ERROR of its own.
type crashWatch struct {
	driver string
	next   hclog.SinkAdapter // where the other lines go

	mu      sync.Mutex
	inPanic bool
	trace   []string // the panic's first line, then its trace (bounded)
	more    int      // trace lines past maxTraceLines
	exit    string   // how the process ended, e.g. "signal: killed"
}

// Accept is hclog's sink interface.
func (w *crashWatch) Accept(name string, level hclog.Level, msg string, args ...any) {
	w.mu.Lock()
	switch {
	case !w.inPanic && len(args) == 0 && (strings.HasPrefix(msg, "panic: ") || strings.HasPrefix(msg, "fatal error: ")):
		w.inPanic = true
		w.trace = append(w.trace, msg)
		w.mu.Unlock()
		return
	case w.inPanic && len(args) == 0:
		// The rest of a dying plugin's untagged output is its trace.
		if len(w.trace) < maxTraceLines {
			w.trace = append(w.trace, msg)
		} else {
			w.more++
		}
		w.mu.Unlock()
		return
	}
	if msg == "plugin process exited" {
		// go-plugin says so at every stop, at ERROR after a crash; golb
		// logs its own line about a crash (logCrash).
		level = hclog.Debug
		for i := 0; i+1 < len(args); i += 2 {
			if k, _ := args[i].(string); k == "error" {
				w.exit = fmt.Sprint(args[i+1])
			}
		}
	}
	w.mu.Unlock()
	w.next.Accept(name, level, msg, args...)
}

// crash is what one dead plugin instance left: its panic, if it had one.
type crash struct {
	panic string // the first line, e.g. "panic: runtime error: …"; "" if none
	call  string // the driver call it died in, from the trace; "" if unknown
	trace string // the first lines of the trace
	exit  string // how the process ended ("exit status 2"), if known
}

// serverCall finds the driver call in a trace: the SDK's gRPC handler
// frames name it (drivers.(*grpcServer).Start, proto._Driver_Start_Handler).
var serverCall = regexp.MustCompile(`\(\*grpcServer\)\.(\w+)\(|_Driver_(\w+)_Handler`)

// crashed returns what the instance left. Called once it has exited, when
// go-plugin has read all of its stderr.
func (w *crashWatch) crashed() crash {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.trace) == 0 {
		return crash{exit: w.exit}
	}
	c := crash{panic: oneLine(w.trace[0], 300), trace: strings.Join(w.trace, "\n"), exit: w.exit}
	if w.more > 0 {
		c.trace += fmt.Sprintf("\n… %d more lines", w.more)
	}
	for _, l := range w.trace {
		if m := serverCall.FindStringSubmatch(l); m != nil {
			c.call = m[1] + m[2]
			break
		}
	}
	return c
}

// note is the NOTE of the groups on driver after this crash.
func (c crash) note(driver string) string {
	switch {
	case c.panic != "" && c.call != "":
		return fmt.Sprintf("driver %s crashed in %s: %s", driver, c.call, c.panic)
	case c.panic != "":
		return fmt.Sprintf("driver %s crashed: %s", driver, c.panic)
	case c.exit != "":
		return fmt.Sprintf("driver %s exited: %s", driver, c.exit)
	}
	return fmt.Sprintf("driver %s exited", driver)
}

// oneLine is s's first line, trimmed, at most max bytes (cut at a rune
// boundary, with "…"): for table cells and notes.
func oneLine(s string, max int) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// crashLog is the plugin manager's memory of crashes: the streak of the
// current plugin instance per driver, and how often each distinct panic
// was seen.
type crashLog struct {
	mu     sync.Mutex
	streak map[string]int            // by driver: quick deaths in a row
	seen   map[string]map[string]int // by driver, then panic (or "exited"): count
}

// record counts a death of driver's instance that lived uptime, and returns
// how long to wait before the next launch, the streak, and how often this
// same crash was seen (1 the first time).
func (l *crashLog) record(driver string, uptime time.Duration, key string) (delay time.Duration, streak, times int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.streak == nil {
		l.streak, l.seen = map[string]int{}, map[string]map[string]int{}
	}
	if uptime >= minUptime {
		l.streak[driver] = 0
	}
	l.streak[driver]++
	streak = l.streak[driver]
	if streak > 1 {
		delay = min(baseBackoff<<min(streak-2, 16), maxBackoff)
	}
	if l.seen[driver] == nil {
		l.seen[driver] = map[string]int{}
	}
	l.seen[driver][key]++
	return delay, streak, l.seen[driver][key]
}

// settle ends driver's streak: its instance has lived minUptime.
func (l *crashLog) settle(driver string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.streak, driver)
}

// logCrash logs a dead instance: the first time a crash is seen at ERROR
// with its trace, then at WARN with its count at the 2nd, 4th, 8th… time,
// else at DEBUG.
func logCrash(logger *slog.Logger, driver string, c crash, streak, times int, delay time.Duration) {
	attrs := []any{"driver", driver, "crashes_in_a_row", streak, "restart_in", delay.String()}
	if c.exit != "" {
		attrs = append(attrs, "exit", c.exit)
	}
	if c.call != "" {
		attrs = append(attrs, "call", c.call)
	}
	if c.panic != "" {
		attrs = append(attrs, "panic", c.panic)
	}
	switch {
	case times == 1 && c.panic != "":
		logger.Error("driver plugin crashed; restarting it (its workers keep running)", append(attrs, "trace", c.trace)...)
	case times == 1:
		logger.Error("driver plugin exited; restarting it (its workers keep running)", attrs...)
	case times&(times-1) == 0:
		logger.Warn("driver plugin crashed again the same way; restarting it", append(attrs, "times", times)...)
	default:
		logger.Debug("driver plugin crashed again the same way; restarting it", append(attrs, "times", times)...)
	}
}

// wait sleeps d, or less: until ctx ends (false) or hurry is closed (a
// shutdown needs the plugin to stop workers).
func wait(ctx context.Context, d time.Duration, hurry <-chan struct{}) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-hurry:
	}
	return true
}

// notePluginCrash puts note ("" lifts it) in the NOTE of every group on
// driver, in place of the driver's previous crash note, no note, or a
// crash-loop's (the plugin's death explains the workers'). Another note
// (waiting for a runtime) is left alone.
func (a *Agent) notePluginCrash(driver, note string) {
	a.mu.Lock()
	old := a.pluginNotes[driver]
	if note == "" {
		delete(a.pluginNotes, driver)
	} else {
		a.pluginNotes[driver] = note
	}
	a.mu.Unlock()
	for _, g := range a.config().Groups {
		if g.Driver != driver {
			continue
		}
		_ = a.store.UpdateGroup(g.Name, func(sg *state.Group) error {
			if sg.Reason == old || (note != "" && ownedByCrashLoop(sg.Reason)) {
				sg.Failing, sg.Reason = note != "", note
			}
			return nil
		})
	}
}

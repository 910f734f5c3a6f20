package drivertest

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/golb/golb/drivers"
)

// testStopDeadline: golb gives each Stop a deadline; past it, golb calls
// Destroy. A Stop whose ctx ends returns at once, leaving the plugin free to
// Destroy the worker: a Stop that ignores ctx (it waits out its own timeout,
// or forever) is caught by the SDK's log of MsgOutlivedContext.
func testStopDeadline(s *suite) {
	if s.h.IgnoresTERM == nil {
		s.t.Skip("harness has no worker that ignores SIGTERM")
	}
	d := s.launch()
	spec := s.spec("deaf", s.h.IgnoresTERM)
	h := s.start(d, spec)
	s.waitServing(d, h) // SIGTERM is ignored by now
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	// A minute before SIGKILL: the ctx ends long before.
	err := d.Stop(ctx, spec.ID, "SIGTERM", time.Minute)
	cancel()
	if err == nil {
		s.t.Fatalf("Stop with a 1s ctx returned nil, with a worker that ignores SIGTERM and a 1m timeout: want the ctx's error")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		s.t.Fatalf("Stop past its deadline: %v, want an error matching context.DeadlineExceeded", err)
	}
	// golb's side of the call has returned; the plugin's must too.
	time.Sleep(drivers.ContextGrace + 5*time.Second) // a wide margin: the plugin logs at ContextGrace
	if line := outlived(d); line != "" {
		s.t.Fatalf("Stop ignored its ctx: the plugin still ran it %v after golb gave up (%s). "+
			"Stop must return when ctx ends, as golb then calls Destroy", drivers.ContextGrace, line)
	}
	dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Destroy(dctx, spec.ID); err != nil {
		s.t.Fatalf("Destroy after a Stop past its deadline: %v", err)
	}
	if httpOK("http://" + h.Address + "/healthz") {
		s.t.Fatal("worker still answers after Destroy")
	}
	if _, err := d.Inspect(s.ctx(), spec.ID); !errors.Is(err, drivers.ErrNotFound) {
		s.t.Fatalf("Inspect after Destroy: %v, want ErrNotFound", err)
	}
	s.noLeftovers(spec.ID, "after Destroy")
}

// outlived is the plugin's log line about a call that outlived its ctx, or
// "". Only a Client (a real plugin) has one.
func outlived(d drivers.Driver) string {
	c, ok := d.(*drivers.Client)
	if !ok {
		return ""
	}
	for _, line := range strings.Split(c.Stderr(), "\n") {
		if strings.Contains(line, drivers.MsgOutlivedContext) {
			return line
		}
	}
	return ""
}

// sweep removes the workers of the group that a failed case left behind
// (their plugin crashed before it could destroy them), through a fresh
// plugin instance, so that a broken driver's run leaks no process or
// container. It destroys the workers the case started, then those List
// finds, then tries Recover and Destroy on what List still finds; a plugin
// that dies on the way is launched again, so that a driver that panics in
// List or Recover still cleans up.
func (s *suite) sweep() {
	if !s.t.Failed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var c *drivers.Client
	defer func() {
		if c != nil {
			c.Kill()
		}
	}()
	// live returns a configured plugin instance, launching one if need be.
	live := func() *drivers.Client {
		if c != nil && !c.Exited() {
			return c
		}
		if c != nil {
			c.Kill()
		}
		c = s.h.Launch(s.t)
		if err := c.SetConfig(ctx, s.h.Plugin); err != nil {
			s.t.Logf("sweeping the group's workers: SetConfig: %v", err)
		}
		return c
	}
	// gone drops an instance that died in a call (go-plugin may not
	// have noticed its exit yet).
	gone := func(err error) error {
		if errors.Is(err, drivers.ErrPluginExited) {
			c.Kill()
			c = nil
		}
		return err
	}
	destroy := func(id string) {
		if err := gone(live().Destroy(ctx, id)); err != nil {
			s.t.Logf("sweeping worker %s: Destroy: %v", id, err)
		}
	}
	labels := map[string]string{drivers.LabelManaged: "true", drivers.LabelGroup: s.group}
	s.mu.Lock()
	started := append([]string(nil), s.started...)
	s.mu.Unlock()
	for _, id := range started {
		destroy(id)
	}
	hs, err := live().List(ctx, labels)
	_ = gone(err)
	for _, h := range hs {
		destroy(h.ID)
	}
	left, err := live().List(ctx, labels)
	if gone(err) != nil {
		s.t.Logf("sweeping the group's workers: List: %v", err)
	}
	for _, h := range left {
		if gone(live().Recover(ctx, h)) == nil && gone(live().Destroy(ctx, h.ID)) == nil {
			continue
		}
		s.t.Logf("worker %s is left running at %s: remove it by hand", h.ID, h.Address)
	}
}

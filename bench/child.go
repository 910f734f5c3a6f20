package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process the harness started, in its own process group, with
// stdout and stderr in a log file of the temp dir.
type child struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed once Wait returns
	err  error         // Wait's error, valid after done
}

// children are every child still to be stopped, oldest first, so that the
// cleanup (also on Ctrl-C) stops them newest first.
var children struct {
	sync.Mutex
	list []*child
}

// spec says how to start a child.
type spec struct {
	name string   // names its log, DIR/NAME.log, and its progress lines
	dir  string   // working directory and where the log goes
	cpu  string   // taskset's CPU list
	env  []string // added to the harness's environment
	args []string // the program (a path or a name in $PATH) and its arguments
	// deathSig reaches the child if the harness dies (SIGKILL when zero):
	// golb gets SIGTERM, so that it still stops its workers.
	deathSig syscall.Signal
}

// startChild runs s.args pinned to s.cpu with taskset, which execs it: the
// pid is the program's own.
func startChild(s spec) (*child, error) {
	name, dir := s.name, s.dir
	taskset, err := lookTool("taskset")
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s's log: %w", name, err)
	}
	defer f.Close()
	cmd := exec.Command(taskset, append([]string{"-c", s.cpu}, s.args...)...)
	cmd.Dir = dir
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = append(os.Environ(), s.env...)
	if s.deathSig == 0 {
		s.deathSig = syscall.SIGKILL
	}
	// Its own process group: a Ctrl-C reaches the harness alone, which stops
	// the children in order (golb must stop its workers before it exits).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: s.deathSig}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	children.Lock()
	children.list = append(children.list, c)
	children.Unlock()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the child is gone, and why.
func (c *child) exited() (bool, error) {
	select {
	case <-c.done:
		if c.err == nil {
			return true, fmt.Errorf("%s exited", c.name)
		}
		return true, fmt.Errorf("%s exited: %v", c.name, c.err)
	default:
		return false, nil
	}
}

// stop sends sig to the child's process group (to the child alone when
// groupSig is false), waits up to grace, then SIGKILLs the group.
func (c *child) stop(sig syscall.Signal, groupSig bool, grace time.Duration) {
	defer forget(c)
	if done, _ := c.exited(); done {
		_ = syscall.Kill(-c.pid(), syscall.SIGKILL) // leftovers of its group
		return
	}
	target := c.pid()
	if groupSig {
		target = -target
	}
	_ = syscall.Kill(target, sig)
	select {
	case <-c.done:
		_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
		return
	case <-time.After(grace):
	}
	progress("%s did not stop within %s after %s: killing it", c.name, grace, sig)
	_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
}

func forget(c *child) {
	children.Lock()
	defer children.Unlock()
	for i, x := range children.list {
		if x == c {
			children.list = append(children.list[:i], children.list[i+1:]...)
			return
		}
	}
}

// stopAll stops every child still running, newest first, each with its own
// stop function (golb's waits for its workers).
func stopAll() {
	for {
		children.Lock()
		n := len(children.list)
		var c *child
		if n > 0 {
			c = children.list[n-1]
		}
		children.Unlock()
		if c == nil {
			return
		}
		if s, ok := stoppers.Load(c); ok {
			s.(func())()
			forget(c)
		} else {
			c.stop(syscall.SIGTERM, true, 5*time.Second)
		}
	}
}

// stoppers holds a custom stop function per child (*child → func()).
var stoppers sync.Map

// tail returns the last n lines of the child's log, indented.
func (c *child) tail(n int) string {
	b, err := os.ReadFile(c.log)
	if err != nil {
		return "  (no log: " + err.Error() + ")"
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return "  (log " + c.log + " is empty)"
	}
	t := tailLines(string(b), n)
	return "  " + strings.ReplaceAll(t, "\n", "\n  ") + "\n  (log: " + c.log + ")"
}

// failed wraps err with the tail of the child's log.
func (c *child) failed(err error) error {
	return fmt.Errorf("%w\nlast lines of %s's log:\n%s", err, c.name, c.tail(15))
}

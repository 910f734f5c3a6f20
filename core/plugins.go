package core

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/hcl/v2"

	"github.com/golb/golb/core/config"
	"github.com/golb/golb/core/state"
	"github.com/golb/golb/drivers"
)

// ExternalPrefix is the file name prefix of external driver plugins.
const ExternalPrefix = config.PluginPrefix

// pluginManager launches the driver plugins the config uses and restarts them
// with backoff when they crash or stop answering; each new instance is handed
// to the agent, which recovers the workers (recoverAfterPluginCrash). The
// workers keep running meanwhile.
type pluginManager struct {
	cfg      *config.Config
	self     []string
	builtins []string // the drivers self serves (Options.Builtins)
	store    *state.Store
	logger   *slog.Logger
	level    hclog.Level // of the plugins' own log lines
	dataDir  string
	crashes  crashLog

	// hurry is closed at shutdown: a crashed plugin is relaunched without
	// its backoff, since stopping its workers needs it.
	hurry     chan struct{}
	hurryOnce sync.Once

	mu      sync.Mutex
	plugins map[string]*managedPlugin
}

// instance is one launched plugin process.
type instance struct {
	client   *drivers.Client
	info     drivers.Info
	watch    *crashWatch // its stderr: a panic, if it dies of one
	launched time.Time
}

// pluginHooks are what the agent does when a plugin restarts, crashes
// (note is the groups' NOTE) or settles (lives minUptime after a crash).
type pluginHooks struct {
	restarted func(ctx context.Context, driver string, c *drivers.Client)
	crashed   func(driver, note string)
	settled   func(driver string)
}

// managedPlugin is one driver's current plugin instance.
type managedPlugin struct {
	name     string
	settings []byte // the driver block as JSON, decoded against the schema

	mu       sync.Mutex
	client   *drivers.Client
	info     drivers.Info
	watch    *crashWatch
	launched time.Time
	replaced chan struct{} // closed when client is replaced by a new instance
	restarts int
	probing  bool   // a liveness probe is under way
	silent   int    // liveness probes in a row that got no answer
	killed   string // why golb killed the current instance, if it did
}

// A plugin process can be alive but not answering (stopped, deadlocked): its
// calls would hang and nothing would be restarted. The monitor asks each
// plugin for its Info every probeInterval; after probeFailures unanswered
// probes in a row it kills the plugin, and the crash path (restart) starts a
// new instance that recovers the workers, which keep running meanwhile.
const (
	probeInterval = time.Second
	probeTimeout  = 2 * time.Second
	probeFailures = 2
)

func newPluginManager(cfg *config.Config, self, builtins []string, store *state.Store, logger *slog.Logger, verbose bool) *pluginManager {
	level := hclog.Info
	if verbose {
		level = hclog.Debug
	}
	return &pluginManager{
		cfg:      cfg,
		self:     self,
		builtins: builtins,
		store:    store,
		logger:   logger,
		level:    level,
		dataDir:  cfg.DataDir,
		hurry:    make(chan struct{}),
		plugins:  map[string]*managedPlugin{},
	}
}

// hurryUp lifts the crash backoff for the rest of the agent's life.
func (m *pluginManager) hurryUp() { m.hurryOnce.Do(func() { close(m.hurry) }) }

// slogSink is an hclog sink that writes to a slog logger.
type slogSink struct {
	logger *slog.Logger
	level  hclog.Level
}

func (s slogSink) Accept(name string, level hclog.Level, msg string, args ...any) {
	if level < s.level {
		return
	}
	if msg == "plugin process exited" && level == hclog.Info {
		// go-plugin says so on every normal stop too; a crash gets golb's
		// own ERROR ("driver plugin exited; restarting it").
		level = hclog.Debug
		if level < s.level {
			return
		}
	}
	var l slog.Level
	switch {
	case level <= hclog.Debug:
		l = slog.LevelDebug
	case level == hclog.Info:
		l = slog.LevelInfo
	case level == hclog.Warn:
		l = slog.LevelWarn
	default:
		l = slog.LevelError
	}
	s.logger.Log(context.Background(), l, msg, append([]any{"component", name}, args...)...)
}

// builtin reports whether the golb binary itself serves driver name.
func (m *pluginManager) builtin(name string) bool { return slices.Contains(m.builtins, name) }

// command returns how to run driver name, with the SecureConfig of its pin
// if the config has one, or an error wrapping ErrDriverNotFound.
func (m *pluginManager) command(name string) (*exec.Cmd, *plugin.SecureConfig, error) {
	if m.builtin(name) {
		if _, err := os.Stat(filepath.Join(m.cfg.PluginDir, ExternalPrefix+name)); err == nil {
			m.logger.Warn("plugin_dir has a plugin named like a built-in driver; the built-in one is used", "driver", name, "plugin_dir", m.cfg.PluginDir)
		}
		args := append(append([]string{}, m.self[1:]...), "driver", name)
		return exec.Command(m.self[0], args...), nil, nil
	}
	path := filepath.Join(m.cfg.PluginDir, ExternalPrefix+name)
	st, err := os.Stat(path)
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, nil, fmt.Errorf("%w: %q is not built in (%v) and %s is not an executable file", ErrDriverNotFound, name, m.builtins, path)
	}
	var sc *plugin.SecureConfig
	for _, p := range m.cfg.Plugins {
		if p.Name == name {
			sum, err := hex.DecodeString(p.SHA256)
			if err != nil {
				return nil, nil, fmt.Errorf("plugin %s: sha256: %w", name, err)
			}
			// Checked here, to say which digest the file has; go-plugin
			// checks it again as it runs the file.
			if err := checkPin(p, path, sum); err != nil {
				return nil, nil, err
			}
			sc = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
		}
	}
	return exec.Command(path), sc, nil
}

// PinError is a plugin binary whose digest is not its pin's.
type PinError struct {
	Driver, Path string
	Want, Got    string     // hex SHA-256: the pin's, the file's
	Pin          *hcl.Range // the pin's sha256 attribute
}

func (e *PinError) Error() string {
	return fmt.Sprintf("%s: checksum mismatch: plugin %q pins sha256 %s, the file has %s", e.Path, e.Driver, e.Want, e.Got)
}

func (e *PinError) Unwrap() error { return ErrPinMismatch }

// checkPin compares the SHA-256 of the file at path with p's pin.
func checkPin(p *config.Plugin, path string, want []byte) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("checking plugin %s against its pin: %w", p.Name, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("checking plugin %s against its pin: reading %s: %w", p.Name, path, err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return &PinError{Driver: p.Name, Path: path, Want: hex.EncodeToString(want), Got: hex.EncodeToString(got), Pin: attrRangeOf(p.Body, "sha256").Ptr()}
	}
	return nil
}

// launch starts a new instance of driver name's plugin and asks it for its
// Info. The caller configures it (configure, with the driver block decoded
// against info's schema: see prepareDriver), then registers it (add).
func (m *pluginManager) launch(ctx context.Context, name string) (*instance, error) {
	cmd, sc, err := m.command(name)
	if err != nil {
		return nil, err
	}
	// go-plugin logs through hclog, including the lines it reads from the
	// plugin's stderr; they go into golb's slog logger (one log stream in
	// one format), except a panic's trace, which the watch keeps.
	watch := &crashWatch{driver: name, next: slogSink{logger: m.logger, level: m.level}}
	hl := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: "plugin." + name, Level: m.level, Output: io.Discard})
	hl.RegisterSink(watch)
	launched := time.Now()
	c, err := drivers.Launch(ctx, drivers.ClientConfig{Cmd: cmd, SecureConfig: sc, Logger: hl, Name: name})
	if err != nil {
		return nil, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		c.Kill()
		return nil, fmt.Errorf("asking driver %s for its info: %w", name, err)
	}
	if info.Name != name {
		m.logger.Warn("driver plugin reports another name", "driver", name, "reported", info.Name)
	}
	return &instance{client: c, info: info, watch: watch, launched: launched}, nil
}

// configure hands a plugin instance its data dir and settings.
func (m *pluginManager) configure(ctx context.Context, c *drivers.Client, name string, settings []byte) error {
	dir, err := filepath.Abs(filepath.Join(m.dataDir, "drivers", name))
	if err != nil {
		return fmt.Errorf("resolving driver data dir: %w", err)
	}
	// The driver creates what it needs there when it needs it, so that
	// `golb validate` and `golb drivers` write nothing.
	if err := c.SetConfig(ctx, drivers.PluginConfig{DataDir: dir, Settings: settings}); err != nil {
		return fmt.Errorf("configuring driver %s: %w", name, err)
	}
	return nil
}

// add registers a launched and configured plugin.
func (m *pluginManager) add(name string, in *instance, settings []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.plugins[name] = &managedPlugin{name: name, settings: settings, client: in.client, info: in.info, watch: in.watch, launched: in.launched, replaced: make(chan struct{})}
}

// managed returns the plugin record of driver name.
func (m *pluginManager) managed(name string) (*managedPlugin, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.plugins[name]
	if !ok {
		return nil, false, fmt.Errorf("%w: %s", ErrDriverNotFound, name)
	}
	return p, true, nil
}

// current returns the plugin's live client and a channel closed when it is
// replaced by a new instance.
func (m *pluginManager) current(name string) (*drivers.Client, <-chan struct{}, error) {
	m.mu.Lock()
	p := m.plugins[name]
	m.mu.Unlock()
	if p == nil {
		return nil, nil, fmt.Errorf("%w: %s", ErrDriverNotFound, name)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.client, p.replaced, nil
}

// all returns every registered plugin, in no particular order.
func (m *pluginManager) all() []*managedPlugin {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*managedPlugin, 0, len(m.plugins))
	for _, p := range m.plugins {
		out = append(out, p)
	}
	return out
}

// monitor watches every plugin and restarts the ones that exit, until ctx
// ends. Each restart runs on its own, so one driver's backoff never delays
// another's.
func (m *pluginManager) monitor(ctx context.Context, hooks pluginHooks) {
	var wg sync.WaitGroup
	defer wg.Wait()
	restarting := map[string]bool{}
	done := make(chan string)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	probe := time.NewTicker(probeInterval)
	defer probe.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case name := <-done:
			delete(restarting, name)
		case <-probe.C:
			// Also while a restart recovers the workers: a new instance
			// that hangs in its Recovers is killed and replaced too. (A
			// dead instance is not probed: probe skips an exited client.)
			for _, p := range m.all() {
				wg.Go(func() { m.probe(ctx, p) })
			}
		case <-t.C:
			for _, p := range m.all() {
				p.mu.Lock()
				exited := p.client.Exited()
				p.mu.Unlock()
				if exited && !restarting[p.name] {
					restarting[p.name] = true
					wg.Add(1)
					go func() {
						defer wg.Done()
						c := m.restart(ctx, p, hooks)
						select {
						case done <- p.name:
						case <-ctx.Done():
						}
						if c != nil {
							m.settleLater(ctx, p, c, hooks)
						}
					}()
				}
			}
		}
	}
}

// probe asks p's plugin for its Info, and kills a plugin that has not
// answered probeFailures times in a row.
func (m *pluginManager) probe(ctx context.Context, p *managedPlugin) {
	p.mu.Lock()
	c := p.client
	if p.probing || c.Exited() {
		p.mu.Unlock()
		return
	}
	p.probing = true
	p.mu.Unlock()

	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	_, err := c.Info(pctx)
	cancel()

	p.mu.Lock()
	defer p.mu.Unlock()
	p.probing = false
	switch {
	case ctx.Err() != nil || p.client != c || errors.Is(err, drivers.ErrPluginExited):
		return // shutting down, or already replaced, or the crash path has it
	case err == nil:
		p.silent = 0
		return
	}
	p.silent++
	m.logger.Warn("driver plugin did not answer", "driver", p.name, "pid", c.Pid(), "in_a_row", p.silent, "err", err)
	if p.silent < probeFailures {
		return
	}
	p.silent = 0
	m.logger.Error("driver plugin not answering; killing it so that a new instance takes over (its workers keep running)",
		"driver", p.name, "pid", c.Pid(), "unanswered", probeFailures, "timeout", probeTimeout.String())
	m.setDriverState(p.name, func(d *state.Driver) { d.Error = "plugin not answering" })
	p.killed = "stopped answering; golb killed it"
	// SIGKILL, not Kill(): go-plugin's graceful Kill asks the plugin to
	// shut down first, which a stopped plugin never answers.
	if pid := c.Pid(); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// restart relaunches a dead plugin: after the crash backoff (plugincrash.go),
// then with capped exponential backoff while launches fail. It returns the
// new instance's client, or nil when ctx ended first.
func (m *pluginManager) restart(ctx context.Context, p *managedPlugin, hooks pluginHooks) *drivers.Client {
	p.mu.Lock()
	watch, launched, killed := p.watch, p.launched, p.killed
	p.mu.Unlock()
	cr := crash{}
	if watch != nil {
		cr = watch.crashed()
	}
	key, note := cr.panic, cr.note(p.name)
	if key == "" {
		key = "exited"
	}
	if killed != "" {
		key, note = killed, "driver "+p.name+" "+killed
	}
	delay, streak, times := m.crashes.record(p.name, time.Since(launched), key)
	logCrash(m.logger, p.name, cr, streak, times, delay)
	m.setDriverState(p.name, func(d *state.Driver) { d.Running = false; d.Error = note })
	if hooks.crashed != nil {
		hooks.crashed(p.name, note)
	}
	if !wait(ctx, delay, m.hurry) {
		return nil
	}
	retry := 50 * time.Millisecond
	settings := p.currentSettings() // a reload may have changed them (driver_reload.go)
	for attempt := 1; ; attempt++ {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		in, err := m.launch(lctx, p.name)
		if err == nil {
			if err = m.configure(lctx, in.client, p.name, settings); err != nil {
				in.client.Kill()
			}
		}
		cancel()
		if err == nil {
			c := in.client
			p.mu.Lock()
			old := p.replaced
			p.client, p.info, p.replaced = c, in.info, make(chan struct{})
			p.watch, p.launched, p.killed = in.watch, in.launched, ""
			p.restarts++
			restarts := p.restarts
			p.mu.Unlock()
			// The workers are recovered before the old instance's users
			// (supervisors, stops) move to the new one; recovery is bounded
			// (recoverAfterPluginCrash), and the liveness probe watches the
			// new instance meanwhile.
			if hooks.restarted != nil {
				hooks.restarted(ctx, p.name, c)
			}
			close(old)
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			fp, ferr := c.Fingerprint(fctx)
			cancel()
			if ferr != nil {
				fp = drivers.Fingerprint{Detail: ferr.Error()}
			}
			m.setDriverState(p.name, func(d *state.Driver) {
				d.Running, d.PluginPID, d.Restarts, d.Fingerprint = true, c.Pid(), restarts, fp
			})
			level := slog.LevelInfo
			if times > 1 {
				level = slog.LevelDebug // the same crash again: logCrash said so
			}
			m.logger.Log(ctx, level, "driver plugin restarted", "driver", p.name, "restarts", restarts, "attempt", attempt, "pid", c.Pid())
			return c
		}
		if ctx.Err() != nil {
			return nil // shut down while it launched
		}
		m.logger.Error("restarting driver plugin failed", "driver", p.name, "attempt", attempt, "err", err, "retry_in", retry)
		if !wait(ctx, retry, nil) {
			return nil
		}
		retry = min(retry*2, 10*time.Second)
	}
}

// settleLater ends driver p's crash streak once its instance c has lived
// minUptime, and lifts the crash note it left; a c that dies first leaves
// them to the next restart.
func (m *pluginManager) settleLater(ctx context.Context, p *managedPlugin, c *drivers.Client, hooks pluginHooks) {
	if !wait(ctx, minUptime, nil) {
		return
	}
	p.mu.Lock()
	current := p.client == c && !c.Exited()
	p.mu.Unlock()
	if !current {
		return
	}
	m.crashes.settle(p.name)
	m.setDriverState(p.name, func(d *state.Driver) { d.Error = "" })
	if hooks.settled != nil {
		hooks.settled(p.name)
	}
}

// setDriverState applies fn to driver name's record, read and written in
// one transaction (a probe and a restart may update it at once). A driver
// with no record (not prepared) is left so.
func (m *pluginManager) setDriverState(name string, fn func(d *state.Driver)) {
	_ = m.store.UpdateDriver(name, func(d *state.Driver) error { fn(d); return nil })
}

// killAll stops every plugin process (not their workers).
func (m *pluginManager) killAll() {
	for _, p := range m.all() {
		p.mu.Lock()
		p.client.Kill()
		p.mu.Unlock()
	}
}

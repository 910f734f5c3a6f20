package core

import (
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

	"github.com/golb/golb/core/config"
	"github.com/golb/golb/core/state"
	"github.com/golb/golb/drivers"
)

// ExternalPrefix is the file name prefix of external driver plugins.
const ExternalPrefix = "golb-driver-"

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
	hclog    hclog.Logger
	dataDir  string

	mu      sync.Mutex
	plugins map[string]*managedPlugin
}

// managedPlugin is one driver's current plugin instance.
type managedPlugin struct {
	name     string
	settings []byte // the driver block as JSON, decoded against the schema

	mu       sync.Mutex
	client   *drivers.Client
	info     drivers.Info
	replaced chan struct{} // closed when client is replaced by a new instance
	restarts int
	probing  bool // a liveness probe is under way
	silent   int  // liveness probes in a row that got no answer
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
	// go-plugin logs through hclog, including the lines it reads from each
	// plugin's stderr; forward them into golb's slog logger so that golb
	// has one log stream in one format.
	hl := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: "plugin", Level: level, Output: io.Discard})
	hl.RegisterSink(slogSink{logger: logger, level: level})
	return &pluginManager{
		cfg:      cfg,
		self:     self,
		builtins: builtins,
		store:    store,
		logger:   logger,
		hclog:    hl,
		dataDir:  cfg.DataDir,
		plugins:  map[string]*managedPlugin{},
	}
}

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
			sc = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
		}
	}
	return exec.Command(path), sc, nil
}

// launch starts a new instance of driver name's plugin and asks it for its
// Info. The caller configures it (configure, with the driver block decoded
// against info's schema: see prepareDriver), then registers it (add).
func (m *pluginManager) launch(ctx context.Context, name string) (*drivers.Client, drivers.Info, error) {
	cmd, sc, err := m.command(name)
	if err != nil {
		return nil, drivers.Info{}, err
	}
	c, err := drivers.Launch(ctx, drivers.ClientConfig{Cmd: cmd, SecureConfig: sc, Logger: m.hclog.Named(name), Name: name})
	if err != nil {
		return nil, drivers.Info{}, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		c.Kill()
		return nil, drivers.Info{}, fmt.Errorf("asking driver %s for its info: %w", name, err)
	}
	if info.Name != name {
		m.logger.Warn("driver plugin reports another name", "driver", name, "reported", info.Name)
	}
	return c, info, nil
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
func (m *pluginManager) add(name string, c *drivers.Client, info drivers.Info, settings []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.plugins[name] = &managedPlugin{name: name, settings: settings, client: c, info: info, replaced: make(chan struct{})}
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
func (m *pluginManager) monitor(ctx context.Context, onRestart func(ctx context.Context, driver string, c *drivers.Client)) {
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
			for _, p := range m.all() {
				if !restarting[p.name] {
					wg.Go(func() { m.probe(ctx, p) })
				}
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
						m.restart(ctx, p, onRestart)
						select {
						case done <- p.name:
						case <-ctx.Done():
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
	// SIGKILL, not Kill(): go-plugin's graceful Kill asks the plugin to
	// shut down first, which a stopped plugin never answers.
	if pid := c.Pid(); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// restart relaunches a crashed plugin with capped exponential backoff.
func (m *pluginManager) restart(ctx context.Context, p *managedPlugin, onRestart func(context.Context, string, *drivers.Client)) {
	m.logger.Error("driver plugin exited; restarting it (its workers keep running)", "driver", p.name)
	m.setDriverState(p.name, func(d *state.Driver) { d.Running = false; d.Error = "plugin exited" })
	delay := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, info, err := m.launch(lctx, p.name)
		if err == nil {
			if err = m.configure(lctx, c, p.name, p.settings); err != nil {
				c.Kill()
			}
		}
		cancel()
		if err == nil {
			p.mu.Lock()
			old := p.replaced
			p.client, p.info, p.replaced = c, info, make(chan struct{})
			p.restarts++
			restarts := p.restarts
			p.mu.Unlock()
			onRestart(ctx, p.name, c)
			close(old)
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			fp, ferr := c.Fingerprint(fctx)
			cancel()
			if ferr != nil {
				fp = drivers.Fingerprint{Detail: ferr.Error()}
			}
			m.setDriverState(p.name, func(d *state.Driver) {
				d.Running, d.Error, d.PluginPID, d.Restarts, d.Fingerprint = true, "", c.Pid(), restarts, fp
			})
			m.logger.Info("driver plugin restarted", "driver", p.name, "attempt", attempt, "pid", c.Pid())
			return
		}
		m.logger.Error("restarting driver plugin failed", "driver", p.name, "attempt", attempt, "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
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

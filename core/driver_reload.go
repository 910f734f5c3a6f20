package core

import (
	"context"
	"time"
)

// A reload that changes a driver block restarts that driver's plugin with
// the new settings, through the crash path (plugins.go, restart): the new
// instance is configured with them and recovers every worker, which keeps
// running meanwhile. The settings are checked first on a scratch instance,
// so that a plugin that rejects them refuses the reload instead of
// crash-looping.

// currentSettings returns the settings the plugin is (or will be) run with.
func (p *managedPlugin) currentSettings() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.settings
}

// checkDriverSettings launches a scratch instance of driver name and hands
// it settings; the error is the plugin's refusal.
func (a *Agent) checkDriverSettings(ctx context.Context, name string, settings []byte) error {
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	in, err := a.plugins.launch(lctx, name)
	if err != nil {
		return err
	}
	defer in.client.Kill()
	return a.plugins.configure(lctx, in.client, name, settings)
}

// restartDriver gives driver name's plugin new settings and restarts it,
// waiting (within a minute) until the new instance has recovered the
// workers.
func (a *Agent) restartDriver(ctx context.Context, name string, settings []byte) {
	p, _, err := a.plugins.managed(name)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.settings, p.killed = settings, "restarted by a reload with new settings"
	c, replaced := p.client, p.replaced
	p.mu.Unlock()
	a.logger.Info("reload: restarting driver plugin with its new settings; its workers keep running", "driver", name, "pid", c.Pid())
	c.Kill()
	select {
	case <-replaced:
		a.logger.Info("reload: driver plugin restarted with its new settings", "driver", name)
	case <-ctx.Done():
	case <-a.controlCtx.Done(): // shutting down: Run waits for this reload
	case <-time.After(time.Minute):
		a.logger.Warn("reload: driver plugin not restarted within a minute", "driver", name)
	}
}

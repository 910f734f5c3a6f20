package docker

import (
	"context"
	"io"

	"github.com/docker/docker/client"
)

// Hooks for the external tests in docker_test.

// WorkerImage ensures the worker image and reports whether it had to be loaded.
func (d *Driver) WorkerImage(ctx context.Context) (ref string, loaded bool, err error) {
	return d.workerImage(ctx)
}

// LoadArchive sends a docker-archive tarball to the engine.
func LoadArchive(ctx context.Context, cli *client.Client, archive io.Reader) ([]string, error) {
	return loadArchive(ctx, cli, archive)
}

// SkipPortCheck turns off the check that the port is free before a container
// is created, so that the daemon's own port conflict is reached.
func (d *Driver) SkipPortCheck() {
	d.portCheck = func(string, int) error { return nil }
}

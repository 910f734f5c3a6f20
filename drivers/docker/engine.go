package docker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/golb/golb/drivers"
)

// newClient makes an Engine API client for host (default: $DOCKER_HOST and
// the other DOCKER_* variables, else the local socket). It negotiates the API
// version with the daemon on first use, so a 20.10 engine (API 1.41) works.
// No connection is made here.
func newClient(host string) (*client.Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: docker driver host %q: %v: use unix:///path/to/docker.sock or tcp://HOST:PORT", drivers.ErrBadConfig, host, err)
	}
	return cli, nil
}

// engineErr says what failed while doing op, mapping an unreachable daemon and
// a socket golb may not open to drivers.ErrRuntimeUnavailable with the fix.
func engineErr(cli *client.Client, op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	host := cli.DaemonHost()
	if errors.Is(err, fs.ErrPermission) || strings.Contains(err.Error(), "permission denied while trying to connect") {
		return fmt.Errorf("%w: %s: permission denied on the Docker socket %s: add this user to the docker group (usermod -aG docker USER, then log in again) or set driver \"docker\" { host = ... }", drivers.ErrRuntimeUnavailable, op, host)
	}
	if client.IsErrConnectionFailed(err) {
		return fmt.Errorf("%w: %s: cannot reach the Docker daemon at %s: start it (systemctl start docker) or set driver \"docker\" { host = ... } (or DOCKER_HOST)", drivers.ErrRuntimeUnavailable, op, host)
	}
	if cerrdefs.IsUnavailable(err) {
		return fmt.Errorf("%w: %s: %s", drivers.ErrRuntimeUnavailable, op, oneLine(err.Error()))
	}
	return fmt.Errorf("%s: %w", op, err)
}

// oneLine keeps the first line of a message.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return s
}

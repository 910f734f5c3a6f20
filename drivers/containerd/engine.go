package containerd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/golb/golb/drivers"
)

// minMajor.minMinor is the oldest containerd golb drives: 1.6, the first
// release of the v2 client's every call golb makes (Version, Import,
// containers, tasks, Wait, Kill, Delete, events).
const (
	minMajor = 1
	minMinor = 6
)

// newClient makes a client of the daemon at s.Address in s.Namespace. No
// connection is made here.
func newClient(s settings) (*client.Client, error) {
	cli, err := client.New(s.Address, client.WithDefaultNamespace(s.Namespace), client.WithTimeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("%w: containerd driver address %q: %v", drivers.ErrBadConfig, s.Address, err)
	}
	return cli, nil
}

// daemonVersion checks that the daemon answers and is recent enough, and
// says in one line what to fix when it is not: a missing socket, one golb
// may not open, nothing listening, an old daemon.
func daemonVersion(ctx context.Context, cli *client.Client, s settings) (client.Version, error) {
	if err := probeSocket(s.Address); err != nil {
		return client.Version{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := cli.Version(ctx)
	if err != nil {
		return client.Version{}, engineErr(s, "asking containerd its version", err)
	}
	major, minor, ok := parseVersion(v.Version)
	if ok && (major < minMajor || (major == minMajor && minor < minMinor)) {
		return v, fmt.Errorf("%w: containerd %s at %s is too old: golb needs %d.%d or newer", drivers.ErrRuntimeUnavailable, v.Version, s.Address, minMajor, minMinor)
	}
	return v, nil
}

// probeSocket dials the socket once, for a clear reason when gRPC would
// only say "connection error".
func probeSocket(addr string) error {
	conn, err := net.DialTimeout("unix", addr, 3*time.Second)
	if err == nil {
		return conn.Close()
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: containerd socket %s does not exist: start containerd (systemctl start containerd) or set driver \"containerd\" { address = ... }", drivers.ErrRuntimeUnavailable, addr)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: permission denied on containerd socket %s: run golb as root, or let its user open the socket (containerd's [grpc] uid/gid)", drivers.ErrRuntimeUnavailable, addr)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: nothing listens on containerd socket %s (a stale socket file): start containerd (systemctl start containerd)", drivers.ErrRuntimeUnavailable, addr)
	}
	return fmt.Errorf("%w: cannot reach containerd at %s: %v", drivers.ErrRuntimeUnavailable, addr, err)
}

// parseVersion reads "1.6.20~ds1" or "v2.0.0" as 1, 6.
func parseVersion(v string) (major, minor int, ok bool) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	return major, minor, err1 == nil && err2 == nil
}

// engineErr says what failed while doing op: an unreachable daemon is
// drivers.ErrRuntimeUnavailable with the fix, and a call the daemon does not
// implement (too old, or a plugin disabled) says so.
func engineErr(s settings, op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	code := status.Code(err)
	switch {
	case errdefs.IsNotImplemented(err) || code == codes.Unimplemented:
		return fmt.Errorf("%w: %s: containerd at %s does not implement it (%s): golb needs containerd %d.%d or newer with its tasks, images and snapshots services (see `ctr plugins ls`)",
			drivers.ErrRuntimeUnavailable, op, s.Address, oneLine(err.Error()), minMajor, minMinor)
	case errdefs.IsUnavailable(err) || code == codes.Unavailable:
		if perr := probeSocket(s.Address); perr != nil {
			return fmt.Errorf("%s: %w", op, perr)
		}
		return fmt.Errorf("%w: %s: containerd at %s: %s (is this containerd's gRPC socket? set driver \"containerd\" { address = ... })", drivers.ErrRuntimeUnavailable, op, s.Address, oneLine(err.Error()))
	}
	return fmt.Errorf("%s: %w", op, err)
}

// isBadConfig reports an error wrapping drivers.ErrBadConfig.
func isBadConfig(err error) bool { return errors.Is(err, drivers.ErrBadConfig) }

// oneLine keeps the first line of a message.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return s
}

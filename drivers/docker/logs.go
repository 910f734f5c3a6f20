package docker

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/golb/golb/drivers"
)

// Bounds of the log tail read for an ExitResult.Output: enough lines and
// bytes for drivers.TrimOutput's, with room for blank lines it drops.
const (
	logTailLines = 20
	logTailBytes = 4 << 10
)

// exitOutput is the end of a container's logs, stdout and stderr in the order
// they were written (as `docker logs` shows them), made an ExitResult.Output.
// The engine keeps the logs until the container is removed, which golb does
// only after Wait. A log driver the engine cannot read back gives "".
func (d *Driver) exitOutput(ctx context.Context, cli *client.Client, containerID string, tty bool) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rc, err := cli.ContainerLogs(ctx, containerID, container.LogsOptions{
		ShowStdout: true,
		ShowStderr: true,
		Tail:       strconv.Itoa(logTailLines),
	})
	if err != nil {
		d.logger.Debug("reading the logs of an exited worker", "container", shortID(containerID), "err", err)
		return ""
	}
	defer rc.Close()
	tail := &tailBuffer{max: logTailBytes}
	if tty {
		// One raw stream, no multiplexing headers.
		_, err = io.Copy(tail, rc)
	} else {
		_, err = stdcopy.StdCopy(tail, tail, rc)
	}
	if err != nil {
		d.logger.Debug("reading the logs of an exited worker", "container", shortID(containerID), "err", err)
	}
	return drivers.TrimOutput(tail.Bytes())
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf []byte
	max int
	cut bool // bytes were dropped at the front
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > b.max {
		p = p[len(p)-b.max:]
		b.cut = true
	}
	if over := len(b.buf) + len(p) - b.max; over > 0 {
		b.buf = b.buf[:copy(b.buf, b.buf[over:])]
		b.cut = true
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

// Bytes is what was kept, from a line start when bytes were dropped (unless
// it is all one line).
func (b *tailBuffer) Bytes() []byte {
	if !b.cut {
		return b.buf
	}
	if i := bytes.IndexByte(b.buf, '\n'); i >= 0 && i < len(b.buf)-1 {
		return b.buf[i+1:]
	}
	return b.buf
}

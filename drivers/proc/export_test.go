package proc

import (
	"context"
	"time"
)

// Internals exercised directly by the tests.
var ParseStartTime = parseStartTime

// PollWait is Identity.Wait's fallback for kernels without pidfds.
func PollWait(ctx context.Context, id Identity, interval time.Duration) error {
	return id.poll(ctx, interval)
}

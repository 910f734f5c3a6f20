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

// ParseStatPgrp is parseStat's process group and state, for the tests.
func ParseStatPgrp(raw []byte) (state byte, pgrp int, start uint64, err error) {
	st, err := parseStat(raw)
	return st.state, st.pgrp, st.startTime, err
}

package drivers

import (
	"context"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/golb/golb/drivers/proto"
)

// ContextGrace is how long a driver call may run on after its ctx has ended
// (golb gave up waiting, or its deadline passed) before the plugin logs
// MsgOutlivedContext. golb's side of the call has returned by then; the
// driver, still busy, may hold a lock or a worker that golb now believes
// stopped.
const ContextGrace = 2 * time.Second

// MsgOutlivedContext is the message of the ERROR line a plugin writes (to
// its stderr, which golb logs) about a driver call that ignored the end of
// its ctx for ContextGrace. Its attributes name the call ("call") and the
// worker, when the call has one ("worker"). The conformance suite looks
// for it.
const MsgOutlivedContext = "driver call outlived its context"

// driverService is the prefix of the gRPC methods of the Driver service, as
// opposed to go-plugin's own (controller, stdio, broker).
var driverService = "/" + proto.Driver_ServiceDesc.ServiceName + "/"

// outlivedContext is a unary interceptor that logs every Driver call still
// running ContextGrace after its ctx ended. It changes nothing of the call.
func outlivedContext(logger hclog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		call, ok := strings.CutPrefix(info.FullMethod, driverService)
		if !ok {
			return handler(ctx, req)
		}
		finished := make(chan struct{})
		defer close(finished)
		go func() {
			select {
			case <-finished:
				return
			case <-ctx.Done():
			}
			t := time.NewTimer(ContextGrace)
			defer t.Stop()
			select {
			case <-finished:
			case <-t.C:
				args := []any{"call", call, "grace", ContextGrace.String(), "ctx_err", context.Cause(ctx).Error()}
				if r, ok := req.(interface{ GetId() string }); ok && r.GetId() != "" {
					args = append(args, "worker", r.GetId())
				}
				logger.Error(MsgOutlivedContext, args...)
			}
		}()
		return handler(ctx, req)
	}
}

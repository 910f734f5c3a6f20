package drivers

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/golb/golb/drivers/proto"
)

// syncBuffer is a bytes.Buffer safe for a logger and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCallThatIgnoresItsContextIsLogged: a driver call that runs on after
// golb gave up on it (a Stop that ignores ctx) is logged by the SDK, naming
// the call and the worker, so that the driver's bug is seen.
func TestCallThatIgnoresItsContextIsLogged(t *testing.T) {
	var out syncBuffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &out, JSONFormat: true})
	intercept := outlivedContext(logger)
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		info := &grpc.UnaryServerInfo{FullMethod: driverService + "Stop"}
		_, _ = intercept(ctx, &proto.StopRequest{Id: "w1"}, info, func(context.Context, any) (any, error) {
			<-release // deaf to ctx
			return &proto.StopResponse{}, nil
		})
	}()
	cancel()
	deadline := time.Now().Add(ContextGrace + 10*time.Second)
	for !strings.Contains(out.String(), MsgOutlivedContext) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	<-returned
	got := out.String()
	if !strings.Contains(got, MsgOutlivedContext) || !strings.Contains(got, `"call":"Stop"`) || !strings.Contains(got, `"worker":"w1"`) {
		t.Fatalf("log %q: want %q with the call and the worker", got, MsgOutlivedContext)
	}
}

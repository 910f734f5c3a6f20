package drivers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/golb/golb/drivers/proto"
)

// TestErrorsSurviveTheWire: every sentinel a driver returns matches with
// errors.Is on the client side, with the driver's message intact, and a
// transport failure reads as ErrPluginExited.
func TestErrorsSurviveTheWire(t *testing.T) {
	ctx := context.Background()
	for _, m := range errorCodes {
		sent := fmt.Errorf("starting worker w1: %w", m.err)
		got := fromStatus(ctx, toStatus(sent))
		if !errors.Is(got, m.err) || got.Error() != sent.Error() {
			t.Errorf("%v came back as %v", sent, got)
		}
	}
	if got := fromStatus(ctx, status.Error(codes.Unavailable, "connection refused")); !errors.Is(got, ErrPluginExited) {
		t.Errorf("Unavailable came back as %v, want ErrPluginExited", got)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if got := fromStatus(cctx, toStatus(context.Canceled)); !errors.Is(got, context.Canceled) {
		t.Errorf("cancellation came back as %v", got)
	}
	if toStatus(nil) != nil || fromStatus(ctx, nil) != nil {
		t.Error("nil error did not stay nil")
	}
}

func TestSpecHelpers(t *testing.T) {
	s := WorkerSpec{ID: "g-1", Group: "g", Labels: map[string]string{"x": "y", LabelGroup: "spoofed"}, Config: json.RawMessage(`{"command":["a","b"]}`)}
	l := s.AllLabels()
	if l[LabelManaged] != "true" || l[LabelGroup] != "g" || l[LabelWorker] != "g-1" || l["x"] != "y" {
		t.Fatalf("AllLabels = %v", l)
	}
	var c struct {
		Command []string `json:"command"`
	}
	if err := s.DecodeConfig(&c); err != nil || len(c.Command) != 2 {
		t.Fatalf("DecodeConfig: %v %v", c, err)
	}
	if err := (WorkerSpec{Config: json.RawMessage(`{"command":1}`)}).DecodeConfig(&c); err == nil {
		t.Fatal("DecodeConfig accepted a number for a list")
	}
	if !MatchLabels(l, map[string]string{"x": "y"}) || MatchLabels(l, map[string]string{"x": "z"}) || !MatchLabels(l, nil) {
		t.Fatal("MatchLabels")
	}
	for in, want := range map[string]string{"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "127.0.0.1", "127.0.0.2": "127.0.0.2"} {
		if got := DialHost(in); got != want {
			t.Errorf("DialHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHandleRoundTrip(t *testing.T) {
	h := &Handle{ID: "a", Group: "g", Driver: "d", Address: "127.0.0.1:1", Labels: map[string]string{"k": "v"}, StateVersion: 3, State: []byte("blob")}
	got := handleFromProto(handleToProto(h))
	if got.ID != h.ID || got.Address != h.Address || got.StateVersion != 3 || string(got.State) != "blob" || got.Labels["k"] != "v" || !got.StartedAt.IsZero() {
		t.Fatalf("round trip: %+v", got)
	}
}

func TestWorkerSpecValidate(t *testing.T) {
	for _, tc := range []struct {
		id   string
		port int
		ok   bool
	}{
		{"hello-3f9c2a1b", 6000, true},
		{"a_b.c", 1, true},
		{"", 6000, false},
		{"../x", 6000, false},
		{"a b", 6000, false},
		{"-lead", 6000, false},
		{"ok", 0, false},
		{"ok", 65536, false},
	} {
		err := WorkerSpec{ID: tc.id, Port: tc.port}.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadConfig)) {
			t.Errorf("Validate(%q, %d) = %v", tc.id, tc.port, err)
		}
	}
}

func TestTracked(t *testing.T) {
	var tr Tracked[int]
	if _, err := tr.Get("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get on empty: %v", err)
	}
	if err := tr.Reserve("a"); err != nil {
		t.Fatal(err)
	}
	if err := tr.Reserve("a"); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("second Reserve of a starting id: %v", err)
	}
	tr.Commit("a", 1)
	if err := tr.Reserve("a"); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("Reserve of a tracked id: %v", err)
	}
	if tr.Adopt("a", func() int { t.Fatal("mk ran for a tracked id"); return 0 }) {
		t.Fatal("Adopt replaced a tracked worker")
	}
	if err := tr.Reserve("b"); err != nil {
		t.Fatal(err)
	}
	tr.Release("b")
	if !tr.Adopt("b", func() int { return 2 }) {
		t.Fatal("Adopt of a released id failed")
	}
	if h, err := tr.Get("b"); err != nil || h != 2 {
		t.Fatalf("Get b = %d, %v", h, err)
	}
	tr.Remove("a")
	if tr.Has("a") || !tr.Has("b") {
		t.Fatal("Remove")
	}
}

// specCatcher is a Driver whose Start records the spec it was given.
type specCatcher struct {
	badReplies
	got chan WorkerSpec
}

func (c specCatcher) Start(_ context.Context, spec WorkerSpec) (*Handle, error) {
	c.got <- spec
	return &Handle{ID: spec.ID, Address: "127.0.0.1:" + strconv.Itoa(spec.Port)}, nil
}

// startCatcher is a proto.DriverClient whose Start hands the request to the
// server in-process, as the wire would.
type startCatcher struct {
	proto.DriverClient
	srv *grpcServer
}

func (c startCatcher) Start(ctx context.Context, req *proto.StartRequest, _ ...grpc.CallOption) (*proto.StartResponse, error) {
	return c.srv.Start(ctx, req)
}

// TestWorkerCommandCrossesTheWire: the built-in worker's argv that core puts
// in a spec reaches the plugin's Start, with the rest of the spec.
func TestWorkerCommandCrossesTheWire(t *testing.T) {
	impl := specCatcher{got: make(chan WorkerSpec, 1)}
	c := &grpcClient{client: startCatcher{srv: &grpcServer{impl: impl}}}
	want := WorkerSpec{ID: "g-1", Group: "g", Port: 6000, BindAddr: "127.0.0.1",
		Env: map[string]string{"GOLB_AVG_DELAY": "1ms"}, WorkerCommand: []string{"/usr/bin/golb", "worker"}}
	if _, err := c.Start(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	got := <-impl.got
	if strings.Join(got.WorkerCommand, " ") != "/usr/bin/golb worker" || got.Env["GOLB_AVG_DELAY"] != "1ms" || got.Port != 6000 {
		t.Fatalf("plugin got %+v, want %+v", got, want)
	}
}

func TestSpecEnviron(t *testing.T) {
	s := WorkerSpec{ID: "g-1", Port: 6001, Env: map[string]string{"GOLB_AVG_DELAY": "1ms"}}
	if got, want := strings.Join(s.Environ(), " "), "BIND_ADDR=127.0.0.1 GOLB_AVG_DELAY=1ms GOLB_WORKER_ID=g-1 PORT=6001"; got != want {
		t.Fatalf("Environ() = %q, want %q", got, want)
	}
	// What core filled is kept as is.
	s.Env = map[string]string{"PORT": "6001", "BIND_ADDR": "0.0.0.0", "GOLB_WORKER_ID": "g-1"}
	if got, want := strings.Join(s.Environ(), " "), "BIND_ADDR=0.0.0.0 GOLB_WORKER_ID=g-1 PORT=6001"; got != want {
		t.Fatalf("Environ() = %q, want %q", got, want)
	}
}

// Regression: a Stop whose deadline the plugin saw pass a moment before the
// client did came back as "stream terminated by RST_STREAM with error code:
// CANCEL", matching neither context sentinel, so core's lost-worker reason
// did not say the deadline passed.
func TestCutStreamAtTheDeadlineIsTheDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	cut := status.Error(codes.Canceled, "stream terminated by RST_STREAM with error code: CANCEL")
	err := fromStatus(ctx, cut)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("fromStatus(cut stream, ctx at its deadline) = %v; want context.DeadlineExceeded", err)
	}
	// Far from its deadline, a cancel is the plugin's own.
	far, cancel2 := context.WithTimeout(context.Background(), time.Hour)
	defer cancel2()
	if err := fromStatus(far, cut); !errors.Is(err, context.Canceled) {
		t.Fatalf("fromStatus(cut stream, ctx far from its deadline) = %v; want context.Canceled", err)
	}
}

package drivers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/golb/golb/drivers/proto"
)

// grpcClient is the Driver that core holds: every call crosses into the plugin.
type grpcClient struct {
	client proto.DriverClient
	name   string // the driver's name, for bad-reply errors; may be ""
}

// badReply is the error for a reply of call that the client refuses.
func (c *grpcClient) badReply(call, problem string) error {
	return &BadReplyError{Driver: c.name, Call: call, Problem: problem}
}

// fromStatus turns a gRPC error back into an error that matches the SDK's
// sentinels with errors.Is. A transport failure becomes ErrPluginExited.
func fromStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := cutText(st.Message(), MaxErrorText)
	for _, m := range errorCodes {
		if st.Code() == m.code {
			return &remoteError{msg: msg, sentinel: m.err}
		}
	}
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if d, ok := ctx.Deadline(); ok && time.Until(d) < deadlineSlack {
			// The plugin's copy of the deadline passed a moment before
			// ours, and gRPC reports it as the stream it cut.
			return fmt.Errorf("%w (%s)", context.DeadlineExceeded, msg)
		}
		if st.Code() == codes.Canceled {
			return &remoteError{msg: msg, sentinel: context.Canceled}
		}
		return &remoteError{msg: msg, sentinel: context.DeadlineExceeded}
	case codes.Unavailable:
		return fmt.Errorf("%w: %s", ErrPluginExited, msg)
	}
	return errors.New(msg)
}

// fromStatus is the package's fromStatus, with a reply over its size
// limit (gRPC's ResourceExhausted on our side) refused as a bad reply.
func (c *grpcClient) fromStatus(ctx context.Context, call string, err error) error {
	if st, ok := status.FromError(err); ok && st.Code() == codes.ResourceExhausted {
		return c.badReply(call, "reply over the size limit: "+cutText(st.Message(), maxShortText))
	}
	return fromStatus(ctx, err)
}

// Per-call limits on a reply's size (MaxReplySize is the connection's).
var (
	smallReply = grpc.MaxCallRecvMsgSize(maxSmallReply)
	startReply = grpc.MaxCallRecvMsgSize(maxStartReply)
)

// deadlineSlack is how close to its deadline a call's ctx may be when the
// plugin's side of the deadline has already ended the call.
const deadlineSlack = 100 * time.Millisecond

// remoteError carries the plugin's message while matching a local sentinel.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// SetConfig is always available on the client side; the plugin answers it
// whether or not its implementation is a Configurer.
func (c *grpcClient) SetConfig(ctx context.Context, cfg PluginConfig) error {
	_, err := c.client.SetConfig(ctx, &proto.SetConfigRequest{DataDir: cfg.DataDir, SettingsJson: cfg.Settings}, smallReply)
	return c.fromStatus(ctx, "SetConfig", err)
}

func (c *grpcClient) Info(ctx context.Context) (Info, error) {
	r, err := c.client.Info(ctx, &proto.InfoRequest{}, smallReply)
	if err != nil {
		return Info{}, c.fromStatus(ctx, "Info", err)
	}
	info := Info{
		Name:            cutText(r.Name, maxShortText),
		Version:         cutText(r.Version, maxShortText),
		ProtocolVersion: int(r.ProtocolVersion),
		ConfigSchema:    attrsFromProto(r.ConfigSchema),
		SettingsSchema:  attrsFromProto(r.SettingsSchema),
	}
	if cp := r.Capabilities; cp != nil {
		info.Capabilities = Capabilities{Signals: cp.Signals, Recover: cp.Recover, Isolation: cp.Isolation}
	}
	return info, nil
}

func (c *grpcClient) Fingerprint(ctx context.Context) (Fingerprint, error) {
	r, err := c.client.Fingerprint(ctx, &proto.FingerprintRequest{}, smallReply)
	if err != nil {
		return Fingerprint{}, c.fromStatus(ctx, "Fingerprint", err)
	}
	return Fingerprint{Healthy: r.Healthy, Detail: cutText(r.Detail, maxDetailText), Attrs: cutMap(r.Attrs)}, nil
}

func (c *grpcClient) ValidateConfig(ctx context.Context, config json.RawMessage) ([]Diagnostic, error) {
	r, err := c.client.ValidateConfig(ctx, &proto.ValidateConfigRequest{ConfigJson: config}, smallReply)
	if err != nil {
		return nil, c.fromStatus(ctx, "ValidateConfig", err)
	}
	var out []Diagnostic
	for i, d := range r.Diagnostics {
		if i == maxDiagnostics {
			out = append(out, Diagnostic{Summary: fmt.Sprintf("%d more diagnostics from the driver not shown", len(r.Diagnostics)-i)})
			break
		}
		out = append(out, Diagnostic{
			Attribute: cutText(d.Attribute, maxShortText),
			Summary:   cutText(d.Summary, MaxErrorText),
			Detail:    cutText(d.Detail, maxDetailText),
		})
	}
	return out, nil
}

func (c *grpcClient) Start(ctx context.Context, spec WorkerSpec) (*Handle, error) {
	r, err := c.client.Start(ctx, &proto.StartRequest{Spec: &proto.WorkerSpec{
		Id:            spec.ID,
		Group:         spec.Group,
		Port:          int32(spec.Port),
		BindAddr:      spec.BindAddr,
		Env:           spec.Env,
		Labels:        spec.Labels,
		ConfigJson:    spec.Config,
		WorkerCommand: spec.WorkerCommand,
	}}, startReply)
	if err != nil {
		return nil, c.fromStatus(ctx, "Start", err)
	}
	// Checked here, not trusted: a plugin is someone else's code, and core
	// puts the address in a balancer and keeps the state blob.
	h := handleFromProto(r.Handle)
	if p := checkHandle(h, spec.ID, spec.Port); p != "" {
		return nil, c.badReply("Start", p)
	}
	return h, nil
}

func (c *grpcClient) Wait(ctx context.Context, id string) (ExitResult, error) {
	r, err := c.client.Wait(ctx, &proto.WaitRequest{Id: id}, smallReply)
	if err != nil {
		return ExitResult{}, c.fromStatus(ctx, "Wait", err)
	}
	if res := cutExit(exitFromProto(r.Result)); res != nil {
		return *res, nil
	}
	return ExitResult{ExitCode: -1}, nil
}

func (c *grpcClient) Inspect(ctx context.Context, id string) (Status, error) {
	r, err := c.client.Inspect(ctx, &proto.InspectRequest{Id: id}, smallReply)
	if err != nil {
		return Status{}, c.fromStatus(ctx, "Inspect", err)
	}
	return Status{
		ID:        r.Id,
		State:     WorkerState(r.State),
		StartedAt: fromUnixNano(r.StartedAtUnixNano),
		ExitedAt:  fromUnixNano(r.ExitedAtUnixNano),
		Exit:      cutExit(exitFromProto(r.Exit)),
		Details:   cutMap(r.Details),
	}, nil
}

func (c *grpcClient) Stop(ctx context.Context, id string, signal string, timeout time.Duration) error {
	_, err := c.client.Stop(ctx, &proto.StopRequest{Id: id, Signal: signal, TimeoutNanos: int64(timeout)}, smallReply)
	return c.fromStatus(ctx, "Stop", err)
}

func (c *grpcClient) Destroy(ctx context.Context, id string) error {
	_, err := c.client.Destroy(ctx, &proto.DestroyRequest{Id: id}, smallReply)
	return c.fromStatus(ctx, "Destroy", err)
}

func (c *grpcClient) Recover(ctx context.Context, h *Handle) error {
	_, err := c.client.Recover(ctx, &proto.RecoverRequest{Handle: handleToProto(h)}, smallReply)
	return c.fromStatus(ctx, "Recover", err)
}

func (c *grpcClient) List(ctx context.Context, labels map[string]string) ([]*Handle, error) {
	r, err := c.client.List(ctx, &proto.ListRequest{Labels: labels})
	if err != nil {
		return nil, c.fromStatus(ctx, "List", err)
	}
	out := make([]*Handle, 0, len(r.Handles))
	for i, ph := range r.Handles {
		h := handleFromProto(ph)
		if p := checkHandle(h, "", 0); p != "" {
			// The whole reply is refused: dropping the handle would
			// make golb forget a worker that may still run.
			return nil, c.badReply("List", fmt.Sprintf("handle %d of %d: %s", i+1, len(r.Handles), p))
		}
		out = append(out, h)
	}
	return out, nil
}

var (
	_ Driver     = (*grpcClient)(nil)
	_ Configurer = (*grpcClient)(nil)
)

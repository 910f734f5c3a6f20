package drivers

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/golb/golb/drivers/proto"
)

// grpcServer serves a Driver over gRPC inside the plugin process.
type grpcServer struct {
	proto.UnimplementedDriverServer
	impl Driver
}

// errorCodes maps the SDK's sentinel errors onto gRPC codes, both ways.
// Unavailable is kept for the transport: it means the plugin itself is gone.
var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{ErrNotFound, codes.NotFound},
	{ErrBadConfig, codes.InvalidArgument},
	{ErrRuntimeUnavailable, codes.FailedPrecondition},
	{ErrPortInUse, codes.AlreadyExists},
	{ErrStaleHandle, codes.OutOfRange},
}

func toStatus(err error) error {
	if err == nil {
		return nil
	}
	for _, m := range errorCodes {
		if errors.Is(err, m.err) {
			return status.Error(m.code, err.Error())
		}
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, err.Error())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

func (s *grpcServer) Info(ctx context.Context, _ *proto.InfoRequest) (*proto.InfoResponse, error) {
	info, err := s.impl.Info(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &proto.InfoResponse{
		Name:            info.Name,
		Version:         info.Version,
		ProtocolVersion: int32(info.ProtocolVersion),
		Capabilities: &proto.Capabilities{
			Signals:   info.Capabilities.Signals,
			Recover:   info.Capabilities.Recover,
			Isolation: info.Capabilities.Isolation,
		},
		ConfigSchema:   attrsToProto(info.ConfigSchema),
		SettingsSchema: attrsToProto(info.SettingsSchema),
	}, nil
}

func (s *grpcServer) SetConfig(ctx context.Context, req *proto.SetConfigRequest) (*proto.SetConfigResponse, error) {
	cfg := PluginConfig{DataDir: req.DataDir, Settings: json.RawMessage(req.SettingsJson)}
	c, ok := s.impl.(Configurer)
	if !ok {
		if len(req.SettingsJson) > 0 && string(req.SettingsJson) != "{}" && string(req.SettingsJson) != "null" {
			return nil, status.Error(codes.InvalidArgument, "this driver takes no settings")
		}
		return &proto.SetConfigResponse{}, nil
	}
	if err := c.SetConfig(ctx, cfg); err != nil {
		return nil, toStatus(err)
	}
	return &proto.SetConfigResponse{}, nil
}

func (s *grpcServer) Fingerprint(ctx context.Context, _ *proto.FingerprintRequest) (*proto.FingerprintResponse, error) {
	fp, err := s.impl.Fingerprint(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &proto.FingerprintResponse{Healthy: fp.Healthy, Detail: fp.Detail, Attrs: fp.Attrs}, nil
}

func (s *grpcServer) ValidateConfig(ctx context.Context, req *proto.ValidateConfigRequest) (*proto.ValidateConfigResponse, error) {
	diags, err := s.impl.ValidateConfig(ctx, json.RawMessage(req.ConfigJson))
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &proto.ValidateConfigResponse{}
	for _, d := range diags {
		resp.Diagnostics = append(resp.Diagnostics, &proto.Diagnostic{Attribute: d.Attribute, Summary: d.Summary, Detail: d.Detail})
	}
	return resp, nil
}

func (s *grpcServer) Start(ctx context.Context, req *proto.StartRequest) (*proto.StartResponse, error) {
	sp := req.GetSpec()
	if sp == nil {
		return nil, status.Error(codes.InvalidArgument, "start: no worker spec")
	}
	spec := WorkerSpec{
		ID:       sp.Id,
		Group:    sp.Group,
		Port:     int(sp.Port),
		BindAddr: sp.BindAddr,
		Env:      sp.Env,
		Labels:   sp.Labels,
		Config:   json.RawMessage(sp.ConfigJson),
		// WorkerCommand is set apart: gofmt would realign the block.
	}
	spec.WorkerCommand = sp.WorkerCommand
	if err := spec.Validate(); err != nil {
		return nil, toStatus(err)
	}
	h, err := s.impl.Start(ctx, spec)
	if err != nil {
		return nil, toStatus(err)
	}
	return &proto.StartResponse{Handle: handleToProto(h)}, nil
}

func (s *grpcServer) Wait(ctx context.Context, req *proto.WaitRequest) (*proto.WaitResponse, error) {
	res, err := s.impl.Wait(ctx, req.Id)
	if err != nil {
		return nil, toStatus(err)
	}
	return &proto.WaitResponse{Result: exitToProto(&res)}, nil
}

func (s *grpcServer) Inspect(ctx context.Context, req *proto.InspectRequest) (*proto.InspectResponse, error) {
	st, err := s.impl.Inspect(ctx, req.Id)
	if err != nil {
		return nil, toStatus(err)
	}
	return &proto.InspectResponse{
		Id:                st.ID,
		State:             string(st.State),
		StartedAtUnixNano: unixNano(st.StartedAt),
		ExitedAtUnixNano:  unixNano(st.ExitedAt),
		Exit:              exitToProto(st.Exit),
		Details:           st.Details,
	}, nil
}

func (s *grpcServer) Stop(ctx context.Context, req *proto.StopRequest) (*proto.StopResponse, error) {
	if err := s.impl.Stop(ctx, req.Id, req.Signal, time.Duration(req.TimeoutNanos)); err != nil {
		return nil, toStatus(err)
	}
	return &proto.StopResponse{}, nil
}

func (s *grpcServer) Destroy(ctx context.Context, req *proto.DestroyRequest) (*proto.DestroyResponse, error) {
	if err := s.impl.Destroy(ctx, req.Id); err != nil {
		return nil, toStatus(err)
	}
	return &proto.DestroyResponse{}, nil
}

func (s *grpcServer) Recover(ctx context.Context, req *proto.RecoverRequest) (*proto.RecoverResponse, error) {
	if req.Handle == nil {
		return nil, status.Error(codes.InvalidArgument, "recover: no handle")
	}
	if err := s.impl.Recover(ctx, handleFromProto(req.Handle)); err != nil {
		return nil, toStatus(err)
	}
	return &proto.RecoverResponse{}, nil
}

func (s *grpcServer) List(ctx context.Context, req *proto.ListRequest) (*proto.ListResponse, error) {
	hs, err := s.impl.List(ctx, req.Labels)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &proto.ListResponse{}
	for _, h := range hs {
		resp.Handles = append(resp.Handles, handleToProto(h))
	}
	return resp, nil
}

func attrsToProto(as []Attribute) []*proto.Attribute {
	out := make([]*proto.Attribute, 0, len(as))
	for _, a := range as {
		out = append(out, &proto.Attribute{Name: a.Name, Type: string(a.Type), Required: a.Required, Doc: a.Doc})
	}
	return out
}

func attrsFromProto(as []*proto.Attribute) []Attribute {
	out := make([]Attribute, 0, len(as))
	for _, a := range as {
		out = append(out, Attribute{Name: a.Name, Type: AttrType(a.Type), Required: a.Required, Doc: a.Doc})
	}
	return out
}

func handleToProto(h *Handle) *proto.Handle {
	if h == nil {
		return nil
	}
	return &proto.Handle{
		Id:                h.ID,
		Group:             h.Group,
		Driver:            h.Driver,
		Address:           h.Address,
		Labels:            h.Labels,
		StartedAtUnixNano: unixNano(h.StartedAt),
		StateVersion:      int32(h.StateVersion),
		State:             h.State,
	}
}

func handleFromProto(p *proto.Handle) *Handle {
	if p == nil {
		return nil
	}
	return &Handle{
		ID:           p.Id,
		Group:        p.Group,
		Driver:       p.Driver,
		Address:      p.Address,
		Labels:       p.Labels,
		StartedAt:    fromUnixNano(p.StartedAtUnixNano),
		StateVersion: int(p.StateVersion),
		State:        p.State,
	}
}

func exitToProto(r *ExitResult) *proto.ExitResult {
	if r == nil {
		return nil
	}
	// A proto3 string must be valid UTF-8, or the whole reply fails to marshal.
	return &proto.ExitResult{
		ExitCode: int32(r.ExitCode),
		Signal:   int32(r.Signal),
		Oom:      r.OOM,
		Err:      strings.ToValidUTF8(r.Err, "\uFFFD"),
		Output:   strings.ToValidUTF8(r.Output, "\uFFFD"),
	}
}

func exitFromProto(p *proto.ExitResult) *ExitResult {
	if p == nil {
		return nil
	}
	return &ExitResult{ExitCode: int(p.ExitCode), Signal: int(p.Signal), OOM: p.Oom, Err: p.Err, Output: p.Output}
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

var _ proto.DriverServer = (*grpcServer)(nil)

package drivers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/golb/golb/drivers/proto"
)

// Handshake is shared by golb and every driver plugin. It is not a security
// measure: it stops a user from running a plugin binary by hand by mistake.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "GOLB_DRIVER_PLUGIN",
	MagicCookieValue: "7c1d4f0e-golb-driver",
}

// pluginName is the single plugin a driver binary serves.
const pluginName = "driver"

// grpcPlugin adapts a Driver to go-plugin's gRPC transport.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl Driver
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	proto.RegisterDriverServer(s, &grpcServer{impl: p.impl})
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &grpcClient{client: proto.NewDriverClient(c)}, nil
}

// Serve runs impl as a golb driver plugin. It is the whole main() of an external
// driver: `func main() { drivers.Serve(mydriver.New()) }`. It returns when golb
// closes the connection.
//
// The SDK logs, as an ERROR with MsgOutlivedContext, every call that runs on
// ContextGrace after its ctx ended.
func Serve(impl Driver) {
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "driver",
		Level:      hclog.Info,
		Output:     os.Stderr,
		JSONFormat: true,
	})
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{pluginName: &grpcPlugin{impl: impl}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpc.ChainUnaryInterceptor(outlivedContext(logger)))...)
		},
		Logger: logger,
	})
}

// Client is a running plugin subprocess and the Driver that talks to it.
type Client struct {
	Driver
	pc     *plugin.Client
	stderr *stderrTail
}

// ClientConfig tells Launch how to start a plugin.
type ClientConfig struct {
	// Cmd runs the plugin binary. Launch sets Pdeathsig on it so that a plugin
	// never outlives golb, and puts it in its own process group; the workers it
	// starts are in their own process groups and survive both.
	Cmd *exec.Cmd
	// SecureConfig, when set, makes go-plugin check the binary's checksum
	// before running it.
	SecureConfig *plugin.SecureConfig
	// Logger receives the plugin's log lines. Default: discard.
	Logger hclog.Logger
	// Stderr, when set, receives a copy of the plugin's stderr as it is
	// written, line by line, whether or not Logger is set. The Client also
	// keeps its last lines (Client.Stderr). Default: nil.
	Stderr io.Writer
	// Name is the driver's name as the config writes it ("nice"). Errors
	// about the plugin's replies say it. Default: "" (they say "driver
	// plugin").
	Name string
}

// Launch starts a plugin subprocess, performs the handshake (gRPC with AutoMTLS)
// and returns a connected client.
func Launch(ctx context.Context, cfg ClientConfig) (*Client, error) {
	if cfg.Cmd == nil {
		return nil, errors.New("launching driver plugin: no command")
	}
	if cfg.Cmd.SysProcAttr == nil {
		cfg.Cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cfg.Cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	// Its own process group: a Ctrl-C or SIGTERM aimed at golb's group is
	// golb's to handle (drain, stop workers through this plugin), so it
	// must not kill the plugin first.
	cfg.Cmd.SysProcAttr.Setpgid = true
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	// The last lines of its stderr are kept whatever Logger does with
	// them: a plugin that dies of a panic leaves its stack trace there.
	tail := &stderrTail{}
	var stderr io.Writer = tail
	if cfg.Stderr != nil {
		stderr = io.MultiWriter(tail, cfg.Stderr)
	}
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          plugin.PluginSet{pluginName: &grpcPlugin{}},
		Cmd:              cfg.Cmd,
		SecureConfig:     cfg.SecureConfig,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           logger,
		Stderr:           stderr,
		// go-plugin lifts gRPC's 4 MiB receive limit to 2 GiB; a
		// plugin's reply is held in memory whole, so it is bounded
		// again (and per call in grpc_client.go).
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxReplySize))},
	})
	done := make(chan error, 1)
	var raw any
	go func() {
		rpc, err := pc.Client()
		if err == nil {
			raw, err = rpc.Dispense(pluginName)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			pc.Kill()
			return nil, launchError(cfg.Cmd.Path, err, tail)
		}
	case <-ctx.Done():
		pc.Kill()
		<-done
		return nil, fmt.Errorf("launching driver plugin %s: %w", cfg.Cmd.Path, ctx.Err())
	}
	gc := raw.(*grpcClient)
	gc.name = cfg.Name
	return &Client{Driver: gc, pc: pc, stderr: tail}, nil
}

// launchError is the error of a launch that failed: with the plugin's own
// last word on stderr (a panic, a missing library), when it said one.
func launchError(path string, err error, tail *stderrTail) error {
	if p := tail.Panic(); p != "" {
		return fmt.Errorf("launching driver plugin %s: %w (plugin stderr: %s)", path, err, p)
	}
	return fmt.Errorf("launching driver plugin %s: %w", path, err)
}

// Stderr returns the last lines the plugin wrote to its stderr: at most
// StderrTailLines lines, each cut to a few hundred bytes, oldest first,
// with the first line of its last panic kept in front when its trace has
// pushed it out. Once the plugin has exited (Exited), it holds all that the
// plugin wrote. Tests show it when a call fails; it is not a log.
func (c *Client) Stderr() string { return c.stderr.String() }

// Panic returns the first line of the last panic or fatal error the plugin
// wrote to its stderr ("panic: runtime error: …"), or "".
func (c *Client) Panic() string { return c.stderr.Panic() }

// Kill stops the plugin process (not its workers).
func (c *Client) Kill() { c.pc.Kill() }

// Exited reports whether the plugin process has exited.
func (c *Client) Exited() bool { return c.pc.Exited() }

// Pid returns the plugin process id, or 0 when unknown.
func (c *Client) Pid() int {
	if rc := c.pc.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

// SetConfig hands the plugin its settings and data directory. Core calls it on
// every new plugin instance before any other call but Info.
func (c *Client) SetConfig(ctx context.Context, cfg PluginConfig) error {
	return c.Driver.(Configurer).SetConfig(ctx, cfg)
}

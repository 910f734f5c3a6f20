package drivers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// badReplyPluginEnv makes the test binary serve badReplies as a plugin.
const badReplyPluginEnv = "GOLB_TEST_BADREPLY_PLUGIN"

// TestMain lets the test binary play a plugin that sends bad replies
// ($GOLB_TEST_BADREPLY_PLUGIN=1): the client is tested across the real wire.
func TestMain(m *testing.M) {
	switch os.Getenv(badReplyPluginEnv) {
	case "1":
		Serve(badReplies{})
		os.Exit(0)
	case "panic": // a plugin that dies before its handshake
		panic("broken driver: panic in main")
	}
	os.Exit(m.Run())
}

// badReplies is a broken plugin: Start's reply is chosen by the worker id,
// List's by the label "case".
type badReplies struct{}

func (badReplies) Info(context.Context) (Info, error) {
	return Info{Name: "nice", ProtocolVersion: ProtocolVersion}, nil
}
func (badReplies) Fingerprint(context.Context) (Fingerprint, error) {
	return Fingerprint{Healthy: true, Detail: strings.Repeat("f", 200<<10)}, nil
}
func (badReplies) ValidateConfig(context.Context, json.RawMessage) ([]Diagnostic, error) {
	return nil, nil
}

func (badReplies) Start(_ context.Context, spec WorkerSpec) (*Handle, error) {
	h := &Handle{ID: spec.ID, Group: spec.Group, Driver: "nice", Address: "127.0.0.1:8080"}
	switch spec.ID {
	case "nohandle":
		return nil, nil
	case "noaddr":
		h.Address = ""
	case "noport":
		h.Address = "127.0.0.1"
	case "nohost":
		h.Address = ":8080"
	case "namedport":
		h.Address = "127.0.0.1:http"
	case "port0":
		h.Address = "127.0.0.1:0"
	case "bigport":
		h.Address = "127.0.0.1:65536"
	case "otherid":
		h.ID = "someone-else"
	case "otherport":
		h.Address = "127.0.0.1:8081"
	case "longaddr":
		h.Address = strings.Repeat("a", 300) + ":8080"
	case "hugeerr":
		return nil, errors.New("no luck: " + strings.Repeat("x\n", 3<<19))
	case "hugetext":
		h.Group = strings.Repeat("g", 100<<10)
		h.Labels = map[string]string{}
		for i := range 500 {
			h.Labels[fmt.Sprint("k", i)] = strings.Repeat("v", 1000)
		}
	case "bigstate":
		h.State = make([]byte, MaxStateSize+1)
	case "fullstate": // at the limit: fine
		h.State = make([]byte, MaxStateSize)
	}
	return h, nil
}

func (badReplies) Wait(_ context.Context, id string) (ExitResult, error) {
	switch id {
	case "bigexit": // under the reply limit: cut
		return ExitResult{ExitCode: 1, Err: strings.Repeat("e", 100<<10), Output: strings.Repeat("line\x1b[31m\n", 10<<10)}, nil
	case "hugeexit": // over it: refused
		return ExitResult{ExitCode: 1, Err: strings.Repeat("e", 3<<20)}, nil
	}
	return ExitResult{}, nil
}

func (badReplies) Inspect(_ context.Context, id string) (Status, error) {
	if id == "hugedetails" {
		st := Status{ID: id, Details: map[string]string{}}
		for i := range 200 {
			st.Details[fmt.Sprint("k", i)] = strings.Repeat("d", 1000)
		}
		return st, nil
	}
	return Status{}, nil
}

func (badReplies) Stop(context.Context, string, string, time.Duration) error { return nil }
func (badReplies) Destroy(context.Context, string) error                     { return nil }
func (badReplies) Recover(context.Context, *Handle) error                    { return nil }

func (badReplies) List(_ context.Context, labels map[string]string) ([]*Handle, error) {
	good := &Handle{ID: "w1", Address: "127.0.0.1:8080"}
	switch labels["case"] {
	case "bad":
		return []*Handle{good, {ID: "w2", Address: ""}}, nil
	case "huge": // 20 MiB of state blobs, each within MaxStateSize
		var hs []*Handle
		for i := range 20 {
			hs = append(hs, &Handle{ID: fmt.Sprint("w", i), Address: "127.0.0.1:8080", State: make([]byte, MaxStateSize)})
		}
		return hs, nil
	}
	return []*Handle{good}, nil
}

// launchBadReplies launches the test binary as the badReplies plugin,
// killed when the test ends.
func launchBadReplies(t *testing.T) (context.Context, *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), badReplyPluginEnv+"=1")
	c, err := Launch(ctx, ClientConfig{Cmd: cmd, Name: "nice"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Kill)
	return ctx, c
}

// TestStartReplyWithEmptyAddressIsRefused pins issue 14's first bug: a
// plugin's Start reply with no handle (core read h.Address and panicked) or
// with an empty or unparsable address (golb ran a worker no balancer could
// reach) was accepted. The SDK client now refuses every such reply with
// ErrBadReply, naming the driver and what was wrong.
func TestStartReplyWithEmptyAddressIsRefused(t *testing.T) {
	ctx, c := launchBadReplies(t)
	for id, want := range map[string]string{
		"nohandle":  "driver nice: Start reply: no worker handle",
		"noaddr":    "driver nice: Start reply: empty worker address",
		"noport":    `driver nice: Start reply: worker address "127.0.0.1" is not host:port`,
		"nohost":    `driver nice: Start reply: worker address ":8080" is not host:port`,
		"namedport": `driver nice: Start reply: worker address "127.0.0.1:http" has no valid port (1-65535)`,
		"port0":     `driver nice: Start reply: worker address "127.0.0.1:0" has no valid port (1-65535)`,
		"bigport":   `driver nice: Start reply: worker address "127.0.0.1:65536" has no valid port (1-65535)`,
		"otherid":   `driver nice: Start reply: handle for worker "someone-else", want "otherid"`,
		"otherport": `driver nice: Start reply: worker address "127.0.0.1:8081" is not on the worker's port 8080`,
		"longaddr":  "driver nice: Start reply: worker address of 305 bytes, over the limit of 262",
		"bigstate":  "driver nice: Start reply: state of 1048577 bytes, over the limit of 1048576",
	} {
		h, err := c.Start(ctx, WorkerSpec{ID: id, Group: "g", Port: 8080})
		var bad *BadReplyError
		if h != nil || !errors.Is(err, ErrBadReply) || !errors.As(err, &bad) || err.Error() != want {
			t.Errorf("Start %s = %v, %v; want nil, %q", id, h, err, want)
		} else if bad.Driver != "nice" || bad.Call != "Start" {
			t.Errorf("Start %s: %+v", id, bad)
		}
	}
	for _, id := range []string{"good", "fullstate"} {
		if h, err := c.Start(ctx, WorkerSpec{ID: id, Group: "g", Port: 8080}); err != nil || h == nil || h.Address != "127.0.0.1:8080" {
			t.Errorf("Start %s = %+v, %v; want the handle", id, h, err)
		}
	}

	// List: one bad handle refuses the whole reply (dropping it would
	// forget a worker that may run).
	if hs, err := c.List(ctx, map[string]string{"case": "bad"}); hs != nil || !errors.Is(err, ErrBadReply) ||
		err.Error() != "driver nice: List reply: handle 2 of 2: empty worker address" {
		t.Errorf("List with a bad handle = %v, %v", hs, err)
	}
	if hs, err := c.List(ctx, nil); err != nil || len(hs) != 1 {
		t.Errorf("List = %v, %v", hs, err)
	}
}

// TestBadReplyErrorWithoutName: a client not told the driver's name still
// says whose reply it was.
func TestBadReplyErrorWithoutName(t *testing.T) {
	err := (&grpcClient{}).badReply("Start", "empty worker address")
	if !errors.Is(err, ErrBadReply) || !strings.HasPrefix(err.Error(), "driver plugin: Start reply: ") {
		t.Fatalf("got %v", err)
	}
}

// TestPluginTextIsBounded pins an unbounded log, NOTE and allocation: a
// plugin's reply was taken up to 2 GiB (go-plugin lifts gRPC's limit), and
// its error message, an exit's reason and output, a handle's group and
// labels, a status's details and a fingerprint's detail were kept whole:
// the agent logged a 3 MiB Start error on every retry and served it in
// every dashboard snapshot. A reply over its call's limit is refused; the
// client cuts each text to size.
func TestPluginTextIsBounded(t *testing.T) {
	ctx, c := launchBadReplies(t)
	if _, err := c.Start(ctx, WorkerSpec{ID: "hugeerr", Group: "g", Port: 8080}); err == nil ||
		len(err.Error()) > MaxErrorText+100 || !strings.HasPrefix(err.Error(), "no luck: x") || !strings.Contains(err.Error(), "bytes cut)") {
		t.Errorf("Start's 3 MiB error kept as %d bytes: %.80q", len(err.Error()), err)
	}
	h, err := c.Start(ctx, WorkerSpec{ID: "hugetext", Group: "g", Port: 8080})
	if err != nil {
		t.Fatalf("Start hugetext: %v", err)
	}
	if len(h.Group) > maxShortText || len(h.Labels) > maxEntries {
		t.Errorf("handle kept a %d-byte group and %d labels", len(h.Group), len(h.Labels))
	}
	for k, v := range h.Labels {
		if len(k) > maxShortText || len(v) > maxShortText {
			t.Errorf("label %d+%d bytes kept", len(k), len(v))
		}
	}
	if _, err := c.Wait(ctx, "hugeexit"); !errors.Is(err, ErrBadReply) || !strings.Contains(err.Error(), "driver nice: Wait reply: reply over the size limit") {
		t.Errorf("Wait with a 3 MiB reply: %v, want a bad reply over the size limit", err)
	}
	if hs, err := c.List(ctx, map[string]string{"case": "huge"}); !errors.Is(err, ErrBadReply) {
		t.Errorf("List with a 20 MiB reply: %d handles, %v; want a bad reply", len(hs), err)
	}
	res, err := c.Wait(ctx, "bigexit")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Err) > MaxErrorText || len(res.Output) > MaxOutputBytes || strings.Contains(res.Output, "\x1b") || res.ExitCode != 1 {
		t.Errorf("exit kept: code %d, %d-byte Err, %d-byte Output (escapes: %v)", res.ExitCode, len(res.Err), len(res.Output), strings.Contains(res.Output, "\x1b"))
	}
	st, err := c.Inspect(ctx, "hugedetails")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Details) > maxEntries {
		t.Errorf("status kept %d details", len(st.Details))
	}
	fp, err := c.Fingerprint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fp.Detail) > maxDetailText || !fp.Healthy {
		t.Errorf("fingerprint kept a %d-byte detail", len(fp.Detail))
	}
}

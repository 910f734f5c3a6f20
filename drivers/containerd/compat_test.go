package containerd_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/transfer/archive"
	transferimage "github.com/containerd/containerd/v2/core/transfer/image"
	"github.com/containerd/errdefs"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/containerd/ctrdtest"
	"github.com/golb/golb/drivers/drivertest"
	golbimage "github.com/golb/golb/drivers/internal/image"
)

// TestV2ClientAgainstDaemon pins what of the v2 client works against the
// daemon the tests run (containerd 1.6 here): the calls the driver makes
// and the event stream do; the Transfer service and the Sandbox store,
// newer than 1.6, answer NotImplemented, which is why the driver uses
// neither.
func TestV2ClientAgainstDaemon(t *testing.T) {
	env := ctrdtest.NewEnv(t)
	cli := env.Daemon.Client(t, env.Namespace)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	v, err := cli.Version(ctx)
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	t.Logf("containerd %s (%s)", v.Version, v.Revision)
	if _, err := cli.Server(ctx); err != nil {
		t.Errorf("Server (introspection): %v", err)
	}

	events, errs := cli.Subscribe(ctx, `topic~="/tasks/"`)
	c := launchIn(t, env, map[string]string{"worker_binary": staticWorker(t)})
	spec := drivers.WorkerSpec{ID: "compat", Group: "g", Port: drivertest.FreePort(t), BindAddr: "127.0.0.1"}
	if _, err := c.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx, spec.ID, "SIGTERM", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for !seen["/tasks/exit"] || !seen["/tasks/delete"] {
		select {
		case e := <-events:
			if e.Namespace == env.Namespace {
				seen[e.Topic] = true
			}
		case err := <-errs:
			t.Fatalf("Subscribe: %v", err)
		case <-ctx.Done():
			t.Fatalf("events seen %v: no /tasks/exit and /tasks/delete", seen)
		}
	}
	t.Logf("events: %v", seen)
	if err := c.Destroy(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}

	if _, err := cli.SandboxStore().List(ctx); !notImplemented(err) {
		t.Logf("Sandbox store: %v (implemented by this daemon)", err)
	} else {
		t.Logf("Sandbox store: %v", err)
	}
	img, err := golbimage.Build(staticWorker(t), golbimage.Options{Repository: "golb-transfer"})
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(img.WriteDockerArchive(pw)) }()
	err = cli.Transfer(ctx, archive.NewImageImportStream(pr, ""), transferimage.NewStore(img.Tag))
	pr.Close()
	if !notImplemented(err) {
		t.Logf("Transfer: %v (implemented by this daemon)", err)
	} else {
		t.Logf("Transfer: %v", err)
	}
}

func notImplemented(err error) bool {
	return errdefs.IsNotImplemented(err) || (err != nil && strings.Contains(err.Error(), "unknown service"))
}

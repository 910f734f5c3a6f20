package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/internal/image"
)

// builtImage is the worker image last ensured.
type builtImage struct {
	key       image.BinaryKey
	namespace string
	id        string // config digest: the image's identity across imports
	name      string // as containerd names it
	target    string // manifest digest after import
}

// workerImage makes sure the namespace has the worker image of the current
// worker binary, unpacked, and returns it. The image is built only when the
// binary changed since the last call, and imported only when the namespace
// lacks an image of its config digest: importing a docker-archive writes a
// manifest of its own, so only the config digest names the content.
func (d *Driver) workerImage(ctx context.Context, cli *client.Client, s settings) (img client.Image, imported bool, err error) {
	bin, err := d.workerBinary()
	if err != nil {
		return nil, false, err
	}
	key, err := image.KeyOf(bin)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v: set driver \"containerd\" { worker_binary = ... }", drivers.ErrBadConfig, err)
	}
	d.imgMu.Lock()
	defer d.imgMu.Unlock()
	if d.img.key == key && d.img.namespace == s.Namespace {
		img, err := cli.GetImage(ctx, d.img.name)
		if err == nil && img.Target().Digest.String() == d.img.target {
			if err := unpack(ctx, img, s); err != nil {
				return nil, false, err
			}
			return img, false, nil
		}
		if err != nil && !errdefs.IsNotFound(err) {
			return nil, false, engineErr(s, "looking up the worker image", err)
		}
	}
	begin := time.Now()
	built, err := image.Build(bin, image.Options{})
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v: set driver \"containerd\" { worker_binary = ... } to a Linux build of golb", drivers.ErrBadConfig, err)
	}
	name, err := normalizeRef(built.Tag)
	if err != nil {
		return nil, false, err
	}
	img, err = imageWithConfig(ctx, cli, name, built.ID)
	if err != nil {
		return nil, false, engineErr(s, "looking up the worker image", err)
	}
	imported = img == nil
	if imported {
		if img, err = importImage(ctx, cli, s, built); err != nil {
			return nil, false, err
		}
	}
	if err := unpack(ctx, img, s); err != nil {
		return nil, false, err
	}
	if imported {
		d.logger.Info("worker image imported", "name", img.Name(), "id", built.ID, "namespace", s.Namespace, "binary", bin,
			"dynamic", built.Dynamic, "files", len(built.Files), "took", time.Since(begin).Round(time.Millisecond).String())
	}
	d.img = builtImage{key: key, namespace: s.Namespace, id: built.ID, name: img.Name(), target: img.Target().Digest.String()}
	return img, imported, nil
}

// imageWithConfig returns the image called name if its config digest is
// id, and nil (no error) when there is none.
func imageWithConfig(ctx context.Context, cli *client.Client, name, id string) (client.Image, error) {
	img, err := cli.GetImage(ctx, name)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cfg, err := img.Config(ctx)
	if errdefs.IsNotFound(err) {
		return nil, nil // its content is gone: import again
	}
	if err != nil {
		return nil, err
	}
	if cfg.Digest.String() != id {
		return nil, nil
	}
	return img, nil
}

// importImage streams the image into the namespace as a docker-archive
// tarball, with the client's Import (the core images and content APIs; no
// Transfer service, which containerd 1.6 lacks).
func importImage(ctx context.Context, cli *client.Client, s settings, built *image.Image) (client.Image, error) {
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		err := built.WriteDockerArchive(pw)
		pw.CloseWithError(err)
		written <- err
	}()
	imgs, err := cli.Import(ctx, pr)
	pr.CloseWithError(errors.New("import finished"))
	werr := <-written
	if err != nil {
		return nil, engineErr(s, "importing worker image "+built.Tag, err)
	}
	if werr != nil {
		return nil, fmt.Errorf("importing worker image %s: %w", built.Tag, werr)
	}
	for _, i := range imgs {
		img := client.NewImage(cli, i)
		if cfg, err := img.Config(ctx); err == nil && cfg.Digest.String() == built.ID {
			return img, nil
		}
	}
	return nil, fmt.Errorf("importing worker image %s: containerd reports success but has no image of config %s", built.Tag, built.ID)
}

// unpack makes the image's layers a snapshot, once.
func unpack(ctx context.Context, img client.Image, s settings) error {
	ok, err := img.IsUnpacked(ctx, snapshotter)
	if err != nil {
		return engineErr(s, "checking image "+img.Name(), err)
	}
	if ok {
		return nil
	}
	if err := img.Unpack(ctx, snapshotter); err != nil {
		return engineErr(s, "unpacking image "+img.Name()+" on "+snapshotter, err)
	}
	return nil
}

// findImage returns the image a group's config names (raw as written, ref
// normalized), unpacked. A missing one is drivers.ErrBadConfig with the fix.
func findImage(ctx context.Context, cli *client.Client, s settings, raw, ref string) (client.Image, error) {
	img, err := cli.GetImage(ctx, ref)
	if errdefs.IsNotFound(err) && raw != ref {
		img, err = cli.GetImage(ctx, raw)
	}
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("%w: image %q is not in containerd namespace %s: %s", drivers.ErrBadConfig, raw, s.Namespace, missingImageFix(s.Namespace))
	}
	if err != nil {
		return nil, engineErr(s, "looking up image "+raw, err)
	}
	if err := unpack(ctx, img, s); err != nil {
		return nil, err
	}
	return img, nil
}

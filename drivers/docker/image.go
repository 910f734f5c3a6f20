package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/internal/image"
)

// binaryKey identifies one version of the worker binary on disk without
// reading it: a changed binary gets a new key, so the image is rebuilt.
type binaryKey struct {
	path  string
	size  int64
	mtime time.Time
	ino   uint64
}

// builtImage is the worker image last ensured, without its layer.
type builtImage struct {
	key binaryKey
	id  string
	tag string
}

// workerImage makes sure the engine has the worker image of the current
// worker binary and returns its tag. The image is built only when the binary
// changed since the last call, and loaded only when the engine lacks it: the
// build is reproducible, so the tag names the content.
func (d *Driver) workerImage(ctx context.Context) (ref string, loaded bool, err error) {
	bin, err := d.workerBinary()
	if err != nil {
		return "", false, err
	}
	cli, err := d.engine()
	if err != nil {
		return "", false, err
	}
	st, err := os.Stat(bin)
	if err != nil {
		return "", false, fmt.Errorf("%w: worker binary: %v: set driver \"docker\" { worker_binary = ... }", drivers.ErrBadConfig, err)
	}
	key := binaryKey{path: bin, size: st.Size(), mtime: st.ModTime()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		key.ino = sys.Ino
	}

	d.imgMu.Lock()
	defer d.imgMu.Unlock()
	if d.img.key == key {
		ok, err := present(ctx, cli, d.img.tag, d.img.id)
		if err != nil || ok {
			return d.img.tag, false, err
		}
	}
	begin := time.Now()
	img, err := image.Build(bin, image.Options{})
	if err != nil {
		return "", false, fmt.Errorf("%w: %v: set driver \"docker\" { worker_binary = ... } to a Linux build of golb", drivers.ErrBadConfig, err)
	}
	ok, err := present(ctx, cli, img.Tag, img.ID)
	if err != nil {
		return "", false, err
	}
	if !ok {
		if err := load(ctx, cli, img); err != nil {
			return "", false, err
		}
		if ok, err := present(ctx, cli, img.Tag, img.ID); err != nil || !ok {
			return "", false, fmt.Errorf("loading worker image %s: the engine reports success but does not have image %s (%v)", img.Tag, img.ID, err)
		}
		d.logger.Info("worker image loaded", "tag", img.Tag, "id", img.ID, "binary", bin, "dynamic", img.Dynamic, "files", len(img.Files), "took", time.Since(begin).Round(time.Millisecond).String())
		loaded = true
	}
	d.img = builtImage{key: key, id: img.ID, tag: img.Tag}
	return img.Tag, loaded, nil
}

// present reports whether the engine has ref as image id.
func present(ctx context.Context, cli *client.Client, ref, id string) (bool, error) {
	ins, err := cli.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, engineErr(cli, "inspecting image "+ref, err)
	}
	return ins.ID == id, nil
}

// load streams the image into the engine as a docker-archive tarball.
func load(ctx context.Context, cli *client.Client, img *image.Image) error {
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		err := img.WriteDockerArchive(pw)
		pw.CloseWithError(err)
		written <- err
	}()
	_, err := loadArchive(ctx, cli, pr)
	pr.CloseWithError(errors.New("load finished"))
	werr := <-written
	if err != nil {
		return fmt.Errorf("loading worker image %s: %w", img.Tag, err)
	}
	if werr != nil {
		return fmt.Errorf("loading worker image %s: %w", img.Tag, werr)
	}
	return nil
}

// loadArchive sends a docker-archive tarball to the engine (POST
// /images/load) and returns what it loaded. The engine answers 200 before it
// has read the archive, so a failure only shows in the JSON message stream:
// every message is read, and an error in it is returned.
func loadArchive(ctx context.Context, cli *client.Client, archive io.Reader) ([]string, error) {
	resp, err := cli.ImageLoad(ctx, archive)
	if err != nil {
		return nil, engineErr(cli, "loading image archive", err)
	}
	defer resp.Body.Close()
	var loaded, said []string
	if !resp.JSON {
		raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if err != nil {
			return nil, engineErr(cli, "loading image archive", err)
		}
		said = strings.Split(strings.TrimSpace(string(raw)), "\n")
	} else {
		dec := json.NewDecoder(resp.Body)
		for {
			var m jsonmessage.JSONMessage
			if err := dec.Decode(&m); err == io.EOF {
				break
			} else if err != nil {
				return nil, engineErr(cli, "loading image archive: reading the engine's answer", err)
			}
			if m.Error != nil {
				return nil, fmt.Errorf("loading image archive: the engine refused it: %s", oneLine(m.Error.Message))
			}
			if m.ErrorMessage != "" { // older engines fill only this
				return nil, fmt.Errorf("loading image archive: the engine refused it: %s", oneLine(m.ErrorMessage))
			}
			if s := strings.TrimSpace(m.Stream); s != "" {
				said = append(said, strings.Split(s, "\n")...)
			}
		}
	}
	for _, line := range said {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "Loaded image ID: "); ok {
			loaded = append(loaded, rest)
		} else if rest, ok := strings.CutPrefix(line, "Loaded image: "); ok {
			loaded = append(loaded, rest)
		}
	}
	if len(loaded) == 0 {
		return nil, fmt.Errorf("loading image archive: the engine loaded nothing (it said %q)", strings.Join(said, " "))
	}
	return loaded, nil
}

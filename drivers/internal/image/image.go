// Package image builds golb's worker image in-process, with no Dockerfile, base
// image, registry or Go toolchain: one uncompressed layer holding the worker
// binary (plus, for a dynamically linked binary, its loader and shared
// libraries), reproducible byte for byte, written as a docker-archive tarball
// that `docker load` and containerd's importer both accept.
package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Defaults of Options.
const (
	// Repository is the name part of the tag of every worker image.
	Repository = "golb-worker"
	// BinaryPath is where the worker binary sits in the image.
	BinaryPath = "/golb"
	// User runs the entrypoint: nobody, by number (the image has no /etc/passwd).
	User = "65534:65534"
)

// epoch is the only timestamp in the image: files, config and history.
var epoch = time.Unix(0, 0).UTC()

// Options change what Build makes. The zero value builds golb's worker image.
type Options struct {
	// Args follow the binary in the entrypoint. Default: ["worker"].
	Args []string
	// Repository names the tag. Default: Repository.
	Repository string
}

// Image is a built worker image, held in memory until written.
type Image struct {
	// ID is the digest of the image config, "sha256:<hex>": Docker's image ID.
	ID string
	// Tag is Repository:<first 12 hex digits of ID>, the name it is loaded as.
	Tag string
	// Binary is the host path the image was built from.
	Binary string
	// Files are the layer's regular files, sorted by path.
	Files []File
	// Dynamic is true when the binary needs a loader (its libraries are in Files).
	Dynamic bool
	// Arch is the image architecture, from the binary's ELF header.
	Arch string

	img v1.Image
}

// Build makes the worker image around binary. The result depends only on the
// content of the binary (and of its libraries): the same binary anywhere, at
// any time, gives the same ID. A dynamically linked binary gets its
// interpreter and the closure of its DT_NEEDED libraries at the paths the
// loader looks for them, and LD_LIBRARY_PATH naming those directories.
func Build(binary string, opts Options) (*Image, error) {
	if opts.Args == nil {
		opts.Args = []string{"worker"}
	}
	if opts.Repository == "" {
		opts.Repository = Repository
	}
	deps, err := Dependencies(binary)
	if err != nil {
		return nil, fmt.Errorf("building worker image: %w", err)
	}
	files := []File{{Path: BinaryPath, Source: binary}}
	if deps.Interp != nil {
		files = append(files, *deps.Interp)
	}
	files = append(files, deps.Libs...)
	files = dedupe(files)

	layerTar, binSum, err := writeLayer(files)
	if err != nil {
		return nil, fmt.Errorf("building worker image from %s: %w", binary, err)
	}
	layer := &rawLayer{data: layerTar, diffID: sha(layerTar)}

	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: epoch},
			CreatedBy: "golb image builder: worker binary sha256:" + binSum,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("building worker image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("building worker image: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = deps.Arch
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = append([]string{BinaryPath}, opts.Args...)
	cf.Config.Cmd = nil
	cf.Config.User = User
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if deps.Dynamic() {
		cf.Config.Env = append(cf.Config.Env, "LD_LIBRARY_PATH="+strings.Join(libDirs(deps.Libs), ":"))
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, fmt.Errorf("building worker image: %w", err)
	}
	id, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("building worker image: %w", err)
	}
	return &Image{
		ID:      id.String(),
		Tag:     opts.Repository + ":" + id.Hex[:12],
		Binary:  binary,
		Files:   files,
		Dynamic: deps.Dynamic(),
		Arch:    deps.Arch,
		img:     img,
	}, nil
}

// V1 returns the image for go-containerregistry (e.g. to write an OCI layout).
func (i *Image) V1() v1.Image { return i.img }

// WriteDockerArchive writes the image as a docker-archive tarball (the format
// of `docker save`, which `docker load` and `ctr images import` read), tagged
// i.Tag.
func (i *Image) WriteDockerArchive(w io.Writer) error {
	tag, err := name.NewTag(i.Tag)
	if err != nil {
		return fmt.Errorf("writing image archive: %w", err)
	}
	if err := tarball.Write(tag, i.img, w); err != nil {
		return fmt.Errorf("writing image archive %s: %w", i.Tag, err)
	}
	return nil
}

// writeLayer writes the layer tar: every parent directory, /tmp, then the
// files, sorted, with fixed owner, modes and times. It also returns the
// sha256 of the first file (the binary), for the image history.
func writeLayer(files []File) ([]byte, string, error) {
	dirs := map[string]bool{"/tmp": true}
	for _, f := range files {
		if !path.IsAbs(f.Path) {
			return nil, "", fmt.Errorf("%w: %q (from %s) has no place in the image", ErrRelativePath, f.Path, f.Source)
		}
		// path.Dir of an absolute path ends at "/"; "." too, should a
		// relative one ever get past the check above.
		for d := path.Dir(f.Path); d != "/" && d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	type entry struct {
		path string
		file *File
	}
	var entries []entry
	for d := range dirs {
		entries = append(entries, entry{path: d})
	}
	for i := range files {
		entries = append(entries, entry{path: files[i].Path, file: &files[i]})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].path < entries[j].path })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var binSum string
	for _, e := range entries {
		hdr := &tar.Header{
			Name:    strings.TrimPrefix(e.path, "/"),
			ModTime: epoch,
			Uid:     0,
			Gid:     0,
			Format:  tar.FormatPAX,
		}
		if e.file == nil {
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
			hdr.Mode = 0o755
			if e.path == "/tmp" {
				hdr.Mode = 0o1777
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, "", err
			}
			continue
		}
		data, err := os.ReadFile(e.file.Source)
		if err != nil {
			return nil, "", fmt.Errorf("reading %s: %w", e.file.Source, err)
		}
		if e.file.Path == BinaryPath {
			binSum = sha(data).Hex
		}
		hdr.Typeflag = tar.TypeReg
		hdr.Mode = 0o755
		hdr.Size = int64(len(data))
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, "", err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), binSum, nil
}

// dedupe keeps the first file for each image path.
func dedupe(files []File) []File {
	seen := map[string]bool{}
	out := files[:0]
	for _, f := range files {
		if !seen[f.Path] {
			seen[f.Path] = true
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// libDirs are the distinct directories of libs, in order of first use.
func libDirs(libs []File) []string {
	var dirs []string
	seen := map[string]bool{}
	for _, l := range libs {
		if d := path.Dir(l.Path); !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return dirs
}

func sha(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

// rawLayer is an uncompressed layer held in memory: its digest is its diff ID.
// Leaving it uncompressed saves a gzip pass on build and a gunzip on load, and
// the image ID (the config digest) does not depend on compression anyway.
type rawLayer struct {
	data   []byte
	diffID v1.Hash
}

func (l *rawLayer) Digest() (v1.Hash, error) { return l.diffID, nil }
func (l *rawLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *rawLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.data)), nil
}
func (l *rawLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.data)), nil
}
func (l *rawLayer) Size() (int64, error) { return int64(len(l.data)), nil }
func (l *rawLayer) MediaType() (types.MediaType, error) {
	return types.DockerUncompressedLayer, nil
}

var _ v1.Layer = (*rawLayer)(nil)

package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// staticBinary builds a tiny Go program with cgo off: a static ELF.
func staticBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := "package main\n\nfunc main() { println(\"static\") }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module static\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "static")
	cmd := exec.Command(goTool(t), "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOFLAGS=")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building a static test binary: %v\n%s", err, msg)
	}
	return out
}

func goTool(t *testing.T) string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no go command to build a static test binary: %v", err)
	}
	return p
}

// dynamicBinary returns a dynamically linked system binary, or skips.
func dynamicBinary(t *testing.T, path string) string {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Skipf("%s is not available: %v", path, err)
	}
	defer f.Close()
	if _, err := f.ImportedLibraries(); err != nil || len(f.Progs) == 0 {
		t.Skipf("%s is not dynamically linked", path)
	}
	return path
}

// layer reads the image's single layer back as tar headers and contents.
func layer(t *testing.T, img *Image) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	ls, err := img.V1().Layers()
	if err != nil || len(ls) != 1 {
		t.Fatalf("layers: %d, %v; want exactly one", len(ls), err)
	}
	rc, err := ls[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var hdrs []*tar.Header
	data := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
		b, _ := io.ReadAll(tr)
		data[h.Name] = b
	}
	return hdrs, data
}

func TestStaticBinaryGetsOnlyItself(t *testing.T) {
	bin := staticBinary(t)
	img, err := Build(bin, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if img.Dynamic || len(img.Files) != 1 || img.Files[0].Path != BinaryPath {
		t.Fatalf("static binary: dynamic=%v files=%v, want just %s", img.Dynamic, img.Files, BinaryPath)
	}
	hdrs, data := layer(t, img)
	var names []string
	for _, h := range hdrs {
		names = append(names, h.Name)
		if !h.ModTime.Equal(time.Unix(0, 0)) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: mtime %v uid %d gid %d %q/%q; want epoch and root by number", h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname)
		}
	}
	if want := []string{"golb", "tmp/"}; !slices.Equal(names, want) {
		t.Fatalf("layer entries %v, want %v", names, want)
	}
	if hdrs[0].Mode != 0o755 || hdrs[1].Mode != 0o1777 {
		t.Errorf("modes %o, %o; want 755 for the binary and 1777 for /tmp", hdrs[0].Mode, hdrs[1].Mode)
	}
	orig, _ := os.ReadFile(bin)
	if !bytes.Equal(data["golb"], orig) {
		t.Error("the binary in the layer differs from the source")
	}

	cf, err := img.V1().ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{BinaryPath, "worker"}) || cf.Config.Cmd != nil {
		t.Errorf("entrypoint %q cmd %q, want [%s worker] and no cmd", cf.Config.Entrypoint, cf.Config.Cmd, BinaryPath)
	}
	for _, e := range cf.Config.Env {
		if strings.HasPrefix(e, "LD_LIBRARY_PATH=") {
			t.Errorf("static image sets %s", e)
		}
	}
	if !cf.Created.Time.Equal(time.Unix(0, 0)) || len(cf.History) != 1 || !cf.History[0].Created.Time.Equal(time.Unix(0, 0)) {
		t.Errorf("config times: created %v history %+v; want the epoch everywhere", cf.Created, cf.History)
	}
	if !strings.HasPrefix(img.Tag, Repository+":") || !strings.HasPrefix(img.ID, "sha256:"+strings.TrimPrefix(img.Tag, Repository+":")) {
		t.Errorf("tag %s does not name id %s", img.Tag, img.ID)
	}
}

func TestDynamicBinaryGetsLoaderAndLibs(t *testing.T) {
	bin := dynamicBinary(t, "/bin/ls")
	img, err := Build(bin, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !img.Dynamic {
		t.Fatal("/bin/ls built as static")
	}
	deps, err := Dependencies(bin)
	if err != nil {
		t.Fatal(err)
	}
	_, data := layer(t, img)
	for _, f := range append([]File{*deps.Interp}, deps.Libs...) {
		want, err := os.ReadFile(f.Source)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data[strings.TrimPrefix(f.Path, "/")], want) {
			t.Errorf("layer lacks %s (from %s) or holds other content", f.Path, f.Source)
		}
	}
	cf, _ := img.V1().ConfigFile()
	if !slices.ContainsFunc(cf.Config.Env, func(e string) bool { return strings.HasPrefix(e, "LD_LIBRARY_PATH=/") }) {
		t.Errorf("env %v lacks LD_LIBRARY_PATH", cf.Config.Env)
	}
}

// TestDependenciesMatchLdd compares the closure with what the system loader
// itself resolves (ldd), including libraries needed only by other libraries
// (/bin/ls -> libselinux -> libpcre2 on Debian).
func TestDependenciesMatchLdd(t *testing.T) {
	ldd, err := exec.LookPath("ldd")
	if err != nil {
		t.Skip("no ldd to compare with")
	}
	for _, path := range []string{"/bin/true", "/bin/ls"} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			bin := dynamicBinary(t, path)
			out, err := exec.Command(ldd, bin).Output()
			if err != nil {
				t.Fatalf("ldd %s: %v", bin, err)
			}
			var wantLibs []string
			var wantInterp string
			for _, line := range strings.Split(string(out), "\n") {
				fields := strings.Fields(line)
				switch {
				case len(fields) >= 3 && fields[1] == "=>":
					wantLibs = append(wantLibs, fields[0])
				case len(fields) >= 1 && strings.HasPrefix(fields[0], "/"):
					wantInterp = fields[0]
				}
			}
			deps, err := Dependencies(bin)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range deps.Libs {
				if filepath.Base(l.Path) != filepath.Base(wantInterp) {
					got = append(got, filepath.Base(l.Path))
				}
			}
			slices.Sort(got)
			slices.Sort(wantLibs)
			if !slices.Equal(got, wantLibs) {
				t.Errorf("libraries %v, ldd says %v", got, wantLibs)
			}
			if deps.Interp == nil || deps.Interp.Path != wantInterp {
				t.Errorf("interpreter %+v, ldd says %s", deps.Interp, wantInterp)
			}
		})
	}
}

func archiveSum(t *testing.T, img *Image) [32]byte {
	t.Helper()
	var buf bytes.Buffer
	if err := img.WriteDockerArchive(&buf); err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(buf.Bytes())
}

// TestBuildReproducible: the same content at another path, with another
// mtime and mode, gives the same ID and a byte-identical archive; one changed
// byte gives another image.
func TestBuildReproducible(t *testing.T) {
	bin := staticBinary(t)
	orig, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "other-name")
	if err := os.WriteFile(copyPath, orig, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(copyPath, time.Now(), time.Now().Add(-48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	a, err := Build(bin, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(copyPath, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID || a.Tag != b.Tag {
		t.Fatalf("same binary, different images: %s %s vs %s %s", a.ID, a.Tag, b.ID, b.Tag)
	}
	if archiveSum(t, a) != archiveSum(t, b) {
		t.Fatal("same binary, different archive bytes")
	}
	t.Logf("image %s (%s)", a.Tag, a.ID)

	changed := filepath.Join(t.TempDir(), "changed")
	if err := os.WriteFile(changed, append(orig, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := Build(changed, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == a.ID || c.Tag == a.Tag {
		t.Fatalf("changed binary kept image %s", c.ID)
	}
}

func TestDockerArchiveLayout(t *testing.T) {
	img, err := Build(staticBinary(t), Options{Args: []string{"serve", "-v"}, Repository: "golb-test"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := img.WriteDockerArchive(&buf); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name], _ = io.ReadAll(tr)
	}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(manifest) != 1 || !slices.Equal(manifest[0].RepoTags, []string{img.Tag}) || len(manifest[0].Layers) != 1 {
		t.Fatalf("manifest %+v, want one image tagged %s with one layer", manifest, img.Tag)
	}
	cfg := files[manifest[0].Config]
	if sum := sha256.Sum256(cfg); "sha256:"+hex.EncodeToString(sum[:]) != img.ID {
		t.Fatalf("config digest differs from image ID %s", img.ID)
	}
	var cf struct {
		Config struct{ Entrypoint []string }
	}
	if err := json.Unmarshal(cfg, &cf); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{BinaryPath, "serve", "-v"}) {
		t.Fatalf("entrypoint %q", cf.Config.Entrypoint)
	}
	if _, ok := files[manifest[0].Layers[0]]; !ok || !strings.HasSuffix(manifest[0].Layers[0], ".tar") {
		t.Fatalf("layer %s missing or not an uncompressed tar", manifest[0].Layers[0])
	}
}

func TestNotELF(t *testing.T) {
	script := filepath.Join(t.TempDir(), "script.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(script, Options{}); !errors.Is(err, ErrNotELF) {
		t.Fatalf("Build(shell script): %v, want ErrNotELF", err)
	}
	if _, err := Build(filepath.Join(t.TempDir(), "missing"), Options{}); !errors.Is(err, ErrNotELF) {
		t.Fatalf("Build(missing file): %v, want ErrNotELF", err)
	}
}

package image

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// File is one file of the layer: where it goes in the image and where its
// content comes from on the host (symlinks already followed).
type File struct {
	Path   string // absolute path inside the image
	Source string // regular file on the host
}

// ErrNotELF: the binary is not a Linux ELF executable this builder can place in
// a Linux image.
var ErrNotELF = errors.New("not a Linux ELF executable")

// ErrRelativePath: the binary names its loader or a library by a relative
// path, which the kernel and the loader resolve from the working directory:
// there is no place for it in an image.
var ErrRelativePath = errors.New("relative path in ELF")

// maxInterp bounds a PT_INTERP segment: the loader's path, under PATH_MAX.
const maxInterp = 4096

// multiarch is Debian's library directory name per Go architecture.
var multiarch = map[string]string{
	"amd64":   "x86_64-linux-gnu",
	"arm64":   "aarch64-linux-gnu",
	"386":     "i386-linux-gnu",
	"arm":     "arm-linux-gnueabihf",
	"ppc64le": "powerpc64le-linux-gnu",
	"s390x":   "s390x-linux-gnu",
	"riscv64": "riscv64-linux-gnu",
}

// goarch maps an ELF machine to the Go (and OCI) architecture name.
var goarch = map[elf.Machine]string{
	elf.EM_X86_64:  "amd64",
	elf.EM_AARCH64: "arm64",
	elf.EM_386:     "386",
	elf.EM_ARM:     "arm",
	elf.EM_PPC64:   "ppc64le",
	elf.EM_S390:    "s390x",
	elf.EM_RISCV:   "riscv64",
}

// LibraryDirs are the host directories searched for a DT_NEEDED library, in
// order, after the object's own DT_RUNPATH/DT_RPATH.
func LibraryDirs(arch string) []string {
	var dirs []string
	if t := multiarch[arch]; t != "" {
		dirs = append(dirs, "/lib/"+t, "/usr/lib/"+t)
	}
	return append(dirs, "/lib64", "/usr/lib64", "/lib", "/usr/lib")
}

// Deps is what a binary needs from the host to run in an empty image.
type Deps struct {
	// Arch is the binary's architecture ("amd64").
	Arch string
	// Interp is the program interpreter (PT_INTERP), placed at the path the
	// kernel loads it from; empty for a static binary.
	Interp *File
	// Libs are the shared libraries named by DT_NEEDED, recursively, each at
	// the host directory where it was found.
	Libs []File
}

// Dynamic reports whether the binary needs a loader.
func (d Deps) Dynamic() bool { return d.Interp != nil || len(d.Libs) > 0 }

// Dependencies finds, with debug/elf, what a binary needs to run in an
// otherwise empty Linux image: its interpreter and the closure of its
// DT_NEEDED libraries, resolved from LibraryDirs (following symlinks). A
// static binary needs nothing.
func Dependencies(binary string) (Deps, error) {
	f, err := elf.Open(binary)
	if err != nil {
		return Deps{}, fmt.Errorf("%w: %s: %v", ErrNotELF, binary, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return Deps{}, fmt.Errorf("%w: %s is an ELF %v, not an executable", ErrNotELF, binary, f.Type)
	}
	arch, ok := goarch[f.Machine]
	if !ok {
		return Deps{}, fmt.Errorf("%w: %s is for machine %v, which this builder does not know", ErrNotELF, binary, f.Machine)
	}
	deps := Deps{Arch: arch}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		// The header's size is not trusted: a corrupt one says up to 2^64.
		if p.Filesz == 0 || p.Filesz > maxInterp {
			return Deps{}, fmt.Errorf("%w: %s: interpreter segment of %d bytes (want 1 to %d)", ErrNotELF, binary, p.Filesz, maxInterp)
		}
		raw := make([]byte, p.Filesz)
		if _, err := p.ReadAt(raw, 0); err != nil {
			return Deps{}, fmt.Errorf("%w: %s: reading its interpreter: %v", ErrNotELF, binary, err)
		}
		interp, _, _ := strings.Cut(string(raw), "\x00")
		if !filepath.IsAbs(interp) {
			return Deps{}, fmt.Errorf("%w: %s names its loader %q by a relative path: relink it with an absolute one (-Wl,--dynamic-linker=/lib64/ld-linux-x86-64.so.2)", ErrRelativePath, binary, interp)
		}
		src, err := regularFile(interp)
		if err != nil {
			return Deps{}, fmt.Errorf("%s needs the loader %s, which is missing on this host: %w", binary, interp, err)
		}
		deps.Interp = &File{Path: filepath.Clean(interp), Source: src}
	}

	r := resolver{class: f.Class, machine: f.Machine, dirs: LibraryDirs(arch), seen: map[string]bool{}}
	if err := r.walk(f, binary); err != nil {
		return Deps{}, err
	}
	sort.Slice(r.libs, func(i, j int) bool { return r.libs[i].Path < r.libs[j].Path })
	deps.Libs = r.libs
	return deps, nil
}

// resolver walks the DT_NEEDED graph.
type resolver struct {
	class   elf.Class
	machine elf.Machine
	dirs    []string
	seen    map[string]bool // sonames already resolved
	libs    []File
}

func (r *resolver) walk(f *elf.File, path string) error {
	// No dynamic section (a static binary) is no error, a corrupt one is.
	needed, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("%w: %s: reading its dynamic section: %v", ErrNotELF, path, err)
	}
	own := runPaths(f, path)
	for _, soname := range needed {
		if r.seen[soname] {
			continue
		}
		r.seen[soname] = true
		if strings.Contains(soname, "/") && !filepath.IsAbs(soname) {
			return fmt.Errorf("%w: %s needs %q by a relative path, which the loader resolves from the working directory: relink it with the library's soname (-Wl,-soname,NAME when building the library) or an absolute path", ErrRelativePath, path, soname)
		}
		full, lib, err := r.find(soname, own)
		if err != nil {
			return fmt.Errorf("%s needs %s: %w", path, soname, err)
		}
		src, err := regularFile(full)
		if err != nil {
			lib.Close()
			return fmt.Errorf("resolving %s: %w", soname, err)
		}
		r.libs = append(r.libs, File{Path: full, Source: src})
		err = r.walk(lib, src)
		lib.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// find returns the absolute path where the loader finds soname, opened: the
// path itself when soname is one (absolute, as walk checked), else the
// first directory holding soname as an ELF of the binary's class and
// machine (a 32-bit library of the same name is skipped).
func (r *resolver) find(soname string, own []string) (string, *elf.File, error) {
	if strings.Contains(soname, "/") {
		p := filepath.Clean(soname)
		lib, err := openELF(p)
		if err != nil {
			return "", nil, err
		}
		return p, lib, nil
	}
	for _, dir := range append(own, r.dirs...) {
		p := filepath.Join(dir, soname)
		lib, err := openELF(p)
		if err != nil {
			continue
		}
		if lib.Class == r.class && lib.Machine == r.machine {
			return p, lib, nil
		}
		lib.Close()
	}
	return "", nil, fmt.Errorf("not found in %s", strings.Join(append(own, r.dirs...), ", "))
}

// openELF opens a regular file as an ELF: a FIFO or device named by a
// corrupt or hostile DT_NEEDED would block the read, or never end.
func openELF(p string) (*elf.File, error) {
	if _, err := regularFile(p); err != nil {
		return nil, err
	}
	return elf.Open(p)
}

// regularFile is p with its symlinks followed, which must be a regular file.
func regularFile(p string) (string, error) {
	src, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", src)
	}
	return src, nil
}

// runPaths are the object's DT_RUNPATH (or DT_RPATH) directories, with $ORIGIN
// expanded to the directory of the object.
func runPaths(f *elf.File, path string) []string {
	var raw []string
	if rp, err := f.DynString(elf.DT_RUNPATH); err == nil && len(rp) > 0 {
		raw = rp
	} else if rp, err := f.DynString(elf.DT_RPATH); err == nil {
		raw = rp
	}
	origin := filepath.Dir(path)
	var dirs []string
	for _, s := range raw {
		for _, d := range strings.Split(s, ":") {
			d = strings.ReplaceAll(strings.ReplaceAll(d, "${ORIGIN}", origin), "$ORIGIN", origin)
			if filepath.IsAbs(d) {
				dirs = append(dirs, filepath.Clean(d))
			}
		}
	}
	return dirs
}

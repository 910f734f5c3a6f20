package image

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// craft describes a small x86-64 ELF for craftELF: enough of one for
// debug/elf and for Dependencies (PT_INTERP, .dynamic, .dynstr), nothing
// that runs.
type craft struct {
	typ     elf.Type // default ET_DYN
	interp  string   // "" for none
	filesz  uint64   // PT_INTERP size from the header; default len(interp)+1
	needed  []string // DT_NEEDED entries
	dynLink uint32   // .dynamic's sh_link; default its .dynstr
	dynSize uint64   // .dynamic's sh_size; default its real size
}

// craftELF builds c: header, program headers, interpreter, .dynstr,
// .dynamic, .shstrtab, then the section headers.
func craftELF(c craft) []byte {
	le := binary.LittleEndian
	var phnum uint16
	if c.interp != "" {
		phnum = 1
	}
	const ehsize, phsize, shsize = 64, 56, 64
	off := uint64(ehsize) + uint64(phnum)*phsize

	interpOff := off
	off += uint64(len(c.interp)) + 1

	dynstr := []byte{0}
	var dyn bytes.Buffer
	for _, n := range c.needed {
		binary.Write(&dyn, le, elf.Dyn64{Tag: int64(elf.DT_NEEDED), Val: uint64(len(dynstr))})
		dynstr = append(append(dynstr, n...), 0)
	}
	binary.Write(&dyn, le, elf.Dyn64{Tag: int64(elf.DT_NULL)})
	dynstrOff := off
	off += uint64(len(dynstr))
	off = (off + 7) &^ 7
	dynOff := off
	off += uint64(dyn.Len())
	shstr := []byte("\x00.dynstr\x00.dynamic\x00.shstrtab\x00")
	shstrOff := off
	off += uint64(len(shstr))
	off = (off + 7) &^ 7
	shOff := off

	typ := c.typ
	if typ == 0 {
		typ = elf.ET_DYN
	}
	var b bytes.Buffer
	var ident [elf.EI_NIDENT]byte
	copy(ident[:], elf.ELFMAG)
	ident[elf.EI_CLASS], ident[elf.EI_DATA], ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	binary.Write(&b, le, elf.Header64{
		Ident: ident, Type: uint16(typ), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Phoff: ehsize, Shoff: shOff, Ehsize: ehsize, Phentsize: phsize, Phnum: phnum,
		Shentsize: shsize, Shnum: 4, Shstrndx: 3,
	})
	if c.interp != "" {
		filesz := c.filesz
		if filesz == 0 {
			filesz = uint64(len(c.interp)) + 1
		}
		binary.Write(&b, le, elf.Prog64{Type: uint32(elf.PT_INTERP), Flags: uint32(elf.PF_R), Off: interpOff, Filesz: filesz, Memsz: filesz, Align: 1})
	}
	b.WriteString(c.interp)
	b.WriteByte(0)
	b.Write(dynstr)
	for uint64(b.Len()) < dynOff {
		b.WriteByte(0)
	}
	b.Write(dyn.Bytes())
	b.Write(shstr)
	for uint64(b.Len()) < shOff {
		b.WriteByte(0)
	}
	link, size := c.dynLink, c.dynSize
	if link == 0 {
		link = 1
	}
	if size == 0 {
		size = uint64(dyn.Len())
	}
	for _, sh := range []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_STRTAB), Off: dynstrOff, Size: uint64(len(dynstr)), Addralign: 1},
		{Name: 9, Type: uint32(elf.SHT_DYNAMIC), Off: dynOff, Size: size, Link: link, Addralign: 8, Entsize: 16},
		{Name: 18, Type: uint32(elf.SHT_STRTAB), Off: shstrOff, Size: uint64(len(shstr)), Addralign: 1},
	} {
		binary.Write(&b, le, sh)
	}
	return b.Bytes()
}

func writeExe(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// within runs f and fails the test if it has not returned after d: the bugs
// pinned here were endless loops.
func within[T any](t *testing.T, d time.Duration, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- f() }()
	select {
	case v := <-done:
		return v
	case <-time.After(d):
		t.Fatalf("still running after %v: an endless loop", d)
		panic("unreachable")
	}
}

// hostInterp is the loader of a dynamically linked system binary, or "".
func hostInterp() string {
	for _, p := range []string{"/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-x86-64.so.2"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// TestRelativeLibraryPathDoesNotHangBuild: a DT_NEEDED of "./libfoo.so"
// (what `gcc -o app main.c ./libfoo.so` records) became the image path
// "libfoo.so", whose parent-directory loop in writeLayer reached "." and
// never "/": Build spun for ever inside the driver's image lock. It is
// refused now, naming the binary and the path.
func TestRelativeLibraryPathDoesNotHangBuild(t *testing.T) {
	dir := t.TempDir()
	writeExe(t, dir, "libfoo.so", craftELF(craft{}))
	bin := writeExe(t, dir, "app", craftELF(craft{needed: []string{"./libfoo.so"}}))
	t.Chdir(dir) // where the loader, and the old resolver, found it
	err := within(t, 5*time.Second, func() error { _, err := Build(bin, Options{}); return err })
	if !errors.Is(err, ErrRelativePath) || !strings.Contains(err.Error(), bin) || !strings.Contains(err.Error(), `"./libfoo.so"`) {
		t.Fatalf("Build = %v, want ErrRelativePath naming %s and \"./libfoo.so\"", err, bin)
	}

	// The layer writer itself stops too, whatever it is given.
	err = within(t, 3*time.Second, func() error {
		_, _, err := writeLayer([]File{{Path: BinaryPath, Source: bin}, {Path: "libfoo.so", Source: bin}})
		return err
	})
	if !errors.Is(err, ErrRelativePath) {
		t.Fatalf("writeLayer(relative path) = %v, want ErrRelativePath", err)
	}
}

// TestRelativeLibraryPathFromGCC: the same with a real binary linked by gcc
// against ./libfoo.so (no soname), built in its own directory.
func TestRelativeLibraryPathFromGCC(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc to link a test binary against ./libfoo.so")
	}
	dir := t.TempDir()
	for name, src := range map[string]string{
		"foo.c":  "int foo(void) { return 1; }\n",
		"main.c": "int foo(void);\nint main(void) { return foo() - 1; }\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"-shared", "-fPIC", "-o", "libfoo.so", "foo.c"},
		{"-o", "app", "main.c", "./libfoo.so"},
	} {
		cmd := exec.Command(gcc, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Skipf("gcc %v: %v\n%s", args, err, out)
		}
	}
	t.Chdir(dir)
	bin := filepath.Join(dir, "app")
	err = within(t, 5*time.Second, func() error { _, err := Build(bin, Options{}); return err })
	if !errors.Is(err, ErrRelativePath) || !strings.Contains(err.Error(), "./libfoo.so") {
		t.Fatalf("Build = %v, want ErrRelativePath naming ./libfoo.so", err)
	}
}

// TestRelativeInterpreterRefused: a PT_INTERP of "lib/ld.so" is resolved by
// the kernel from the working directory; it had the same endless loop.
func TestRelativeInterpreterRefused(t *testing.T) {
	dir := t.TempDir()
	writeExe(t, dir, "ld.so", craftELF(craft{}))
	bin := writeExe(t, dir, "app", craftELF(craft{interp: "ld.so"}))
	t.Chdir(dir)
	err := within(t, 5*time.Second, func() error { _, err := Build(bin, Options{}); return err })
	if !errors.Is(err, ErrRelativePath) || !strings.Contains(err.Error(), bin) || !strings.Contains(err.Error(), `"ld.so"`) {
		t.Fatalf("Build = %v, want ErrRelativePath naming %s and \"ld.so\"", err, bin)
	}
}

// TestAbsoluteLibraryPathIsKept: a DT_NEEDED given as an absolute path was
// joined to its own directory ("/x/lib.so" became "/x/x/lib.so") and never
// found; it goes into the image at the path the loader opens.
func TestAbsoluteLibraryPathIsKept(t *testing.T) {
	dir := t.TempDir()
	lib := writeExe(t, dir, "libfoo.so", craftELF(craft{}))
	bin := writeExe(t, dir, "app", craftELF(craft{needed: []string{lib}}))
	deps, err := Dependencies(bin)
	if err != nil {
		t.Fatal(err)
	}
	if len(deps.Libs) != 1 || deps.Libs[0].Path != lib || deps.Libs[0].Source != lib {
		t.Fatalf("Libs = %+v, want just %s", deps.Libs, lib)
	}
}

// TestCorruptELFHeaders: the interpreter's size came from the header as is
// (up to 2^64): a corrupt worker_binary panicked the plugin in make or
// exhausted its memory. Every corrupt header is an error now.
func TestCorruptELFHeaders(t *testing.T) {
	interp := hostInterp()
	if interp == "" {
		t.Skip("no x86-64 loader on this host")
	}
	dir := t.TempDir()
	ok := craftELF(craft{interp: interp})
	if _, err := Dependencies(writeExe(t, dir, "ok", ok)); err != nil {
		t.Fatalf("the uncorrupted crafted binary: %v", err)
	}
	cases := map[string][]byte{
		"interpreter size 2^63":         craftELF(craft{interp: interp, filesz: 1 << 63}),
		"interpreter size 2^64-1":       craftELF(craft{interp: interp, filesz: ^uint64(0)}),
		"interpreter past end of file":  craftELF(craft{interp: interp, filesz: 4000}),
		"interpreter just over bound":   craftELF(craft{interp: interp, filesz: maxInterp + 1}),
		"dynamic links no string table": craftELF(craft{interp: interp, needed: []string{"libc.so.6"}, dynLink: 9}),
		"dynamic size 2^62":             craftELF(craft{interp: interp, needed: []string{"libc.so.6"}, dynSize: 1 << 62}),
		"needed a FIFO":                 nil, // filled below
		"truncated header":              ok[:40],
		"truncated program headers":     ok[:70],
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err == nil {
		cases["needed a FIFO"] = craftELF(craft{needed: []string{fifo}})
	} else {
		delete(cases, "needed a FIFO")
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			bin := writeExe(t, t.TempDir(), "bin", data)
			err := within(t, 5*time.Second, func() error { _, err := Dependencies(bin); return err })
			if err == nil {
				t.Fatal("Dependencies = nil error, want one")
			}
			t.Log(err)
		})
	}
}

// FuzzDependencies: whatever the file holds, Dependencies returns soon (an
// error, or paths that are absolute) without panicking.
func FuzzDependencies(f *testing.F) {
	interp := hostInterp()
	f.Add(craftELF(craft{}))
	f.Add(craftELF(craft{interp: interp}))
	f.Add(craftELF(craft{interp: interp, needed: []string{"libc.so.6"}}))
	f.Add(craftELF(craft{needed: []string{"./libfoo.so", "/lib/x.so"}}))
	f.Add(craftELF(craft{interp: "ld.so", filesz: 1 << 40}))
	f.Add(craftELF(craft{typ: elf.ET_EXEC, needed: []string{"a"}, dynLink: 7, dynSize: 1 << 20}))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		bin := filepath.Join(dir, "bin")
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
		stuck := time.AfterFunc(20*time.Second, func() { panic("Dependencies still running after 20s") })
		deps, err := Dependencies(bin)
		stuck.Stop()
		if err != nil {
			return
		}
		if deps.Interp != nil && !filepath.IsAbs(deps.Interp.Path) {
			t.Fatalf("interpreter path %q is relative", deps.Interp.Path)
		}
		for _, l := range deps.Libs {
			if !filepath.IsAbs(l.Path) {
				t.Fatalf("library path %q is relative", l.Path)
			}
		}
	})
}

package core

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockDataDir takes an exclusive lock on data_dir (flock on
// data_dir/golb.lock, which holds the owner's pid), so that two agents never
// manage (and adopt, and remove) the same workers. The kernel drops the lock
// when the agent dies, however it dies. The returned func releases it.
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, "golb.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking data_dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("%w: another golb (pid %s) is using %s; stop it, or give this config its own data_dir", ErrDataDirInUse, strings.TrimSpace(string(owner)), dir)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}
